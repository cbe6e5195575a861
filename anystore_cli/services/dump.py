"""The dump side of the JSON lines: one record a key, a large value written in pieces.

A large value's line is written in pieces: the value is read twice in chunks, once to learn
whether it is UTF-8 text (`"value"`) or not (`"value_b64"`), and once to write it, JSON-escaped
or base64-encoded piece by piece.
"""

from __future__ import annotations

import base64
import codecs
from collections.abc import Callable
from typing import IO, Any

import orjson

from anystore_cli.errors import DoesNotExist, StoreError
from anystore_cli.services import jsonl
from anystore_cli.util.keys import is_text_key, key_b64

DUMP_INLINE_BYTES = 4 * 1024 * 1024
"""A value up to this size is read whole, in batches; a larger one in chunks"""


def dump_record(key: str, value: bytes) -> dict[str, str]:
    """The dump line of one key: its text, or base64 when the bytes are not UTF-8; the same for
    the key's name (`key_b64` instead of `key`)."""
    record = {"key": key} if is_text_key(key) else {"key_b64": key_b64(key)}
    try:
        record["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        record["value_b64"] = base64.b64encode(value).decode("ascii")
    return record


def write_value_line(out: IO[bytes], record: dict[str, Any], open_value: Callable[[], Any]) -> None:
    """Write the dump line of a large value to `out` in pieces.

    Args:
        out: The binary output
        record: The line's fields before the value (`dump_record(key, b"")` without its `value`)
        open_value: Opens the value for reading (called twice: a context manager giving a binary handle)

    Raises:
        StoreError: If the value changed between the two readings so that its line broke
    """
    text = _is_utf8(open_value)
    field = "value" if text else "value_b64"
    head = orjson.dumps({**record, field: ""})
    out.write(head[:-2])  # up to the value's opening quote
    with open_value() as handle:
        if text:
            decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                while chunk := handle.read(jsonl.CHUNK):
                    if piece := decoder.decode(chunk):
                        out.write(orjson.dumps(piece)[1:-1])  # escaping is per character
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise StoreError(f"Key `{record.get('key')}`: the value changed while it was dumped") from None
        else:
            rest = b""
            while chunk := handle.read(jsonl.CHUNK):
                data = rest + chunk
                cut = len(data) - len(data) % 3
                out.write(base64.b64encode(data[:cut]))
                rest = data[cut:]
            out.write(base64.b64encode(rest))
    out.write(b'"}\n')


def _is_utf8(open_value: Callable[[], Any]) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open_value() as handle:
        try:
            while chunk := handle.read(jsonl.CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def write_large_value(store: Any, key: str, out: Any) -> bool:
    """Write the dump line of `key`'s large value to `out` in chunks; False if the key is gone."""
    record = dump_record(key, b"")
    record.pop("value", None)
    if store.is_fslike:

        def open_value() -> Any:
            return store.open(key, "rb")

    else:  # the backend reads a value whole anyway: read it once, write it in pieces
        import contextlib
        import io

        value = store.get(key, serialization_mode="raw", raise_on_nonexist=False)
        if value is None:
            return False

        def open_value() -> Any:
            return contextlib.closing(io.BytesIO(value))

    try:
        write_value_line(out, record, open_value)
    except DoesNotExist:
        return False
    return True
