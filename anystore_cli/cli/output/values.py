"""Stored values as the commands print them (`--mode`), and the JSON they read and write."""

from __future__ import annotations

import re
from typing import Any

from anystore_cli.errors import InvalidData

_LONG_NUMBER = re.compile(rb"\d{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"`{name}` is not JSON")


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON, or raise `InvalidData` naming `what`.

    orjson is used unless the text holds a number of 19 or more digits: orjson reads integers
    beyond 64 bits as floats, the standard library keeps them exact.
    """
    import orjson

    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise InvalidData(f"Invalid JSON in {what}: {exc}") from None
    import json

    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidData(f"Invalid JSON in {what}: {exc}") from None


def dump_json(value: Any) -> bytes:
    """Compact JSON bytes (without a newline)."""
    import orjson

    try:
        return orjson.dumps(value, default=_json_default)
    except (TypeError, orjson.JSONEncodeError):
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def render_value(data: bytes, mode: str, what: str) -> bytes:
    """The output bytes of a stored value under `mode` (a `Mode`, or its name).

    raw: unchanged. json: compact JSON and a newline (bad JSON is `InvalidData`). auto: JSON
    like json where it parses, else the bytes unchanged (never unpickled). pickle: unpickled
    (runs code from the store, only when asked for by name), printed as text or JSON.
    """
    if mode == "raw":
        return data
    if mode == "json":
        return dump_json(load_json(data, what)) + b"\n"
    if mode == "auto":
        try:
            value = load_json(data, what)
        except InvalidData:
            return data
        return dump_json(value) + b"\n"
    import pickle

    try:
        value = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad data
        raise InvalidData(f"Not a pickle: {what} ({exc})") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return dump_json(value) + b"\n"
