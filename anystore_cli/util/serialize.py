"""Serialization of values to and from the bytes a backend stores.

Modes:

- "raw": bytes as they are (`str` is encoded as UTF-8 on the way in)
- "json": JSON through orjson
- "pickle": cloudpickle, as the original library (lambdas, local functions and classes pickle
  too; unpickling runs code from the store: only when asked for)
- "auto": on the way in bytes stay bytes, str is encoded, pydantic models are dumped to JSON,
  anything JSON can hold becomes JSON, the rest is cloudpickled; on the way out JSON is tried
  first, then unpickling for values that start with a pickle header (unless disabled by
  `ANYSTORE_ALLOW_PICKLE=false`), then UTF-8 text, else the bytes are returned unchanged.

cloudpickle is imported only when a value is pickled or unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeAlias

from anystore_cli.errors import InvalidData

Mode: TypeAlias = Literal["auto", "raw", "pickle", "json"]
MODES: tuple[str, ...] = ("auto", "raw", "pickle", "json")


class NotJsonSerializable(InvalidData, TypeError):
    """The value cannot be dumped to JSON (a `TypeError`, as orjson's own error)."""


def _pickle_dumps(value: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value)


def _pickle_loads(value: Any) -> Any:
    import cloudpickle

    return cloudpickle.loads(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _is_model(value: Any) -> bool:
    return hasattr(value, "model_dump_json") and not isinstance(value, type)


def check_mode(mode: str | None) -> str:
    """Return `mode` (default "auto") or raise `InvalidData` for an unknown one."""
    mode = mode or "auto"
    if mode not in MODES:
        raise InvalidData(f"Unknown serialization mode `{mode}` (one of: {', '.join(MODES)})")
    return mode


def to_store(
    value: Any,
    serialization_mode: Mode | None = "auto",
    serialization_func: Callable | None = None,
    model: Any | None = None,
) -> bytes:
    """Serialize `value` to bytes.

    Args:
        value: The value to store
        serialization_mode: "auto", "raw", "pickle" or "json"
        serialization_func: A function producing the value to store (used before the mode)
        model: A pydantic model class: the value is dumped to its JSON

    Returns:
        The bytes to store

    Raises:
        InvalidData: If the value cannot be serialized in the given mode
    """
    if model is not None and _is_model(value):
        return value.model_dump_json().encode()
    if serialization_func is not None:
        value = serialization_func(value)
    mode = check_mode(serialization_mode)
    if mode == "raw":
        if isinstance(value, bytes):
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        raise InvalidData(f"Raw mode stores bytes or str, not `{type(value).__name__}`")
    if mode == "pickle":
        return _pickle_dumps(value)
    import orjson

    if mode == "json":
        try:
            return orjson.dumps(value, default=_json_default)
        except TypeError as exc:
            raise NotJsonSerializable(f"Value is not JSON serializable: {exc}") from exc
    # auto
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if _is_model(value):
        return value.model_dump_json().encode()
    try:
        return orjson.dumps(value, default=_json_default)
    except TypeError:
        return _pickle_dumps(value)


def _pickle_allowed() -> bool:
    """`ANYSTORE_ALLOW_PICKLE` (default true), read here so that serialize imports no settings."""
    import os

    value = os.environ.get("ANYSTORE_ALLOW_PICKLE", "true").strip().lower()
    return value not in {"0", "false", "no", "off", "n", "f", ""}


def from_store(
    value: Any,
    serialization_mode: Mode | None = "auto",
    deserialization_func: Callable | None = None,
    model: Any | None = None,
) -> Any:
    """Deserialize bytes read from a backend.

    Args:
        value: The stored bytes (or text, when read in text mode)
        serialization_mode: "auto", "raw", "pickle" or "json"
        deserialization_func: A function taking the bytes (used instead of the mode)
        model: A pydantic model class to validate the JSON with

    Returns:
        The deserialized value

    Raises:
        InvalidData: If the value is not valid in the given mode (e.g. bad JSON)
    """
    if value is None:
        return None
    if model is not None:
        if hasattr(model, "model_validate_json"):
            return model.model_validate_json(value)
        import orjson

        return model(**orjson.loads(value))
    if deserialization_func is not None:
        return deserialization_func(value)
    mode = check_mode(serialization_mode)
    if mode == "raw":
        return value
    if mode == "pickle":
        return _pickle_loads(value)
    import orjson

    if mode == "json":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise InvalidData(f"Invalid JSON: {exc}") from exc
    # auto
    try:
        return orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        pass
    if isinstance(value, (bytes, bytearray)):
        if value[:1] == b"\x80" and _pickle_allowed():
            try:
                return _pickle_loads(value)
            except Exception:  # noqa: BLE001 - not a pickle after all
                pass
        try:
            return bytes(value).decode()
        except UnicodeDecodeError:
            return value
    return value
