"""Keys and uris as text: a name that is not UTF-8 shown readably, or exactly in base64."""

from __future__ import annotations

import re
from typing import Any

_SURROGATES = re.compile("[\udc80-\udcff]")


def is_text_key(key: str) -> bool:
    """Tell whether a key's name is UTF-8 (names that are not hold surrogate escapes, as
    Python decodes file names: `os.fsdecode`)."""
    return _SURROGATES.search(key) is None


def readable_text(text: str) -> str:
    """`text` with each undecodable byte (a surrogate escape) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def uri_text(uri: str) -> str:
    """A uri with each undecodable byte percent-encoded (`caf%E9`)."""
    return _SURROGATES.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", uri)


def key_b64(key: str) -> str:
    """The exact bytes of a key's name, base64-encoded."""
    import base64

    return base64.b64encode(key.encode("utf-8", "surrogateescape")).decode("ascii")


def decode_key_b64(encoded: Any) -> str:
    """The key named by base64 bytes (`key_b64`), undecodable bytes as surrogate escapes.

    Raises:
        ValueError: If `encoded` is not a base64 string
    """
    import base64
    import binascii

    if not isinstance(encoded, str):
        raise ValueError("`key_b64` must be a string")
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 in `key_b64` ({exc})") from None
