"""Keys and uris as text: a name that is not UTF-8 shown readably, or exactly in base64."""

from __future__ import annotations

import re

_SURROGATES = re.compile("[\udc80-\udcff]")


def readable_text(text: str) -> str:
    """`text` with each undecodable byte (a surrogate escape) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def uri_text(uri: str) -> str:
    """A uri with each undecodable byte percent-encoded (`caf%E9`)."""
    return _SURROGATES.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", uri)
