"""Checksums of streams and data."""

from __future__ import annotations

from io import BytesIO
from typing import IO, Any

from anystore_cli.errors import InvalidData

DEFAULT_HASH_ALGORITHM = "sha1"
CHUNK_SIZE = 1024 * 1024


def get_hasher(algorithm: str | None = DEFAULT_HASH_ALGORITHM) -> Any:
    """Return a new `hashlib` object for `algorithm`, or raise `InvalidData` for an unknown one."""
    import hashlib  # here, not at the top: OpenSSL's start-up is not for commands that never hash

    name = (algorithm or DEFAULT_HASH_ALGORITHM).lower()
    try:
        return hashlib.new(name)
    except (ValueError, TypeError) as exc:
        known = ", ".join(sorted(hashlib.algorithms_guaranteed))
        raise InvalidData(f"Unknown hash algorithm `{algorithm}` (try one of: {known})") from exc


def _hexdigest(hasher: Any) -> str:
    if hasher.name.startswith("shake"):
        return hasher.hexdigest(32 if hasher.name == "shake_128" else 64)
    return hasher.hexdigest()


def make_checksum(io: IO[bytes], algorithm: str = DEFAULT_HASH_ALGORITHM) -> str:
    """Calculate the checksum of a binary stream, read in chunks.

    Example:
        ```python
        with open("data.pdf", "rb") as fh:
            make_checksum(fh, algorithm="md5")
        ```

    Args:
        io: File-like handle opened for binary reading
        algorithm: Any `hashlib` algorithm name (default "sha1")

    Returns:
        The hex digest
    """
    hasher = get_hasher(algorithm)
    while chunk := io.read(CHUNK_SIZE):
        hasher.update(chunk if isinstance(chunk, bytes) else chunk.encode())
    return _hexdigest(hasher)


def make_data_checksum(data: Any, algorithm: str = DEFAULT_HASH_ALGORITHM) -> str:
    """Checksum of arbitrary data (bytes and str as they are, anything else by its repr)."""
    if isinstance(data, str):
        data = data.encode()
    elif not isinstance(data, bytes):
        data = repr(data).encode()
    return make_checksum(BytesIO(data), algorithm)


def make_signature_key(*args: Any, **kwargs: Any) -> str:
    """A sha1 key for a function call's arguments (used by `anycache`).

    The same key as the original library (`make_signature_key(1, "foo", bar="baz") ==
    "c6b22da6bcf4bf7158ba600594cae404648acd41"`), so a cache it filled keeps its hits.
    """
    return make_data_checksum((args, kwargs))
