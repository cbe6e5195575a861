"""Models: store definitions (the key metadata, `BaseStats` and `Stats`, live in `store.entry`).

These classes offer the pydantic-style surface of the original library (`model_dump`,
`model_dump_json`, `model_copy`, `model_validate`, `model_fields`) without importing
pydantic, which would cost more than the whole command line's start-up budget.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from anystore_cli.errors import InvalidData
from anystore_cli.util.uri import (
    SCHEME_FILE,
    SCHEME_MEMORY,
    SCHEME_REDIS,
    SCHEME_REDISS,
    ensure_uri,
    get_scheme,
)

_MISSING = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return getattr(value, "__qualname__", repr(value))
    return value


class Model:
    """A small declarative model: fields are the class annotations, defaults class values.

    Subclasses may map field names to coercion functions in `_coerce`.
    """

    model_fields: ClassVar[dict[str, Any]] = {}
    _coerce: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in klass.__dict__.get("__annotations__", {}).items():
                if name.startswith("_") or "ClassVar" in str(annotation):
                    continue
                fields[name] = klass.__dict__.get(name, fields.get(name, _MISSING))
        cls.model_fields = fields

    def __init__(self, **data: Any) -> None:
        for name, default in self.model_fields.items():
            if name in data:
                value = data.pop(name)
            elif default is _MISSING:
                raise InvalidData(f"{type(self).__name__}: field `{name}` is required")
            else:
                value = copy.copy(default)
            coerce = self._coerce.get(name)
            if coerce is not None:
                value = coerce(value)
            object.__setattr__(self, name, value)
        self._extra = data

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """Build an instance from a dict (or return an instance unchanged)."""
        if isinstance(data, cls):
            return data
        return cls(**dict(data))

    def model_dump(self, mode: str = "python", exclude_none: bool = False, **_: Any) -> dict[str, Any]:
        """Return the fields as a dict (`mode="json"` turns datetimes into ISO strings)."""
        data = {name: getattr(self, name) for name in self.model_fields}
        if exclude_none:
            data = {k: v for k, v in data.items() if v is not None}
        if mode == "json":
            data = _jsonable(data)
        return data

    def model_dump_json(self, **kwargs: Any) -> str:
        """Return the fields as a JSON string."""
        import orjson

        return orjson.dumps(self.model_dump(mode="json", **kwargs)).decode()

    def model_copy(self, update: dict[str, Any] | None = None, deep: bool = False) -> Any:
        """Return a copy, with the fields in `update` replaced."""
        data = self.model_dump()
        if deep:
            data = copy.deepcopy(data)
        data.update(update or {})
        return type(self)(**data, **self._extra)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.model_dump() == other.model_dump()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.model_fields)
        return f"{type(self).__name__}({fields})"


def _store_uri(value: Any) -> str:
    uri = ensure_uri(value)
    if get_scheme(uri) == SCHEME_MEMORY:
        return "memory://" + uri[len("memory:") :].lstrip("/").rstrip("/")
    return uri.rstrip("/") or uri


class UriProperties:
    """What a store's `uri` tells: its scheme and parts, and which kind of store it names.

    Shared by the plain `StoreModel` here and the library's pydantic one; `uri` is the host
    class's field.
    """

    uri: Any

    @cached_property
    def scheme(self) -> str:
        """The uri scheme (`file`, `s3`, `redis`, `sqlite`, ...)"""
        return get_scheme(self.uri)

    @cached_property
    def path(self) -> str:
        """The uri path, without leading and trailing slashes"""
        from urllib.parse import urlsplit

        return urlsplit(self.uri).path.strip("/")

    @cached_property
    def netloc(self) -> str:
        """The uri network location (host, port, credentials)"""
        from urllib.parse import urlsplit

        return urlsplit(self.uri).netloc

    @cached_property
    def is_local(self) -> bool:
        """Check if it is a local file store"""
        return self.scheme == SCHEME_FILE

    @cached_property
    def is_fslike(self) -> bool:
        """Check if it is a file-like store usable with `fsspec`"""
        return not self.is_sql and self.scheme not in (SCHEME_REDIS, SCHEME_REDISS, SCHEME_MEMORY)

    @cached_property
    def is_http(self) -> bool:
        """Check if it is a http(s) remote store"""
        return self.scheme.startswith("http")

    @cached_property
    def is_sql(self) -> bool:
        """Check if it is a sql-like store (sqlite, postgres, ...)"""
        return "sql" in self.scheme or self.scheme.split("+", 1)[0] in ("postgres", "mariadb")


class StoreModel(Model, UriProperties):
    """Store model to initialize a store from configuration"""

    uri: str
    """Store base uri"""
    serialization_mode: str | None = None
    """Default serialization (auto, raw, pickle, json); None takes it from the settings"""
    serialization_func: Callable | None = None
    """Default serialization function"""
    deserialization_func: Callable | None = None
    """Default deserialization function"""
    model: Any | None = None
    """Default pydantic model for serialization"""
    raise_on_nonexist: bool | None = None
    """Raise `DoesNotExist` if key doesn't exist; None takes it from the settings"""
    store_none_values: bool | None = True
    """Store `None` as value in store"""
    default_ttl: int | None = None
    """Default ttl for keys (only backends that support it: memory, redis, sql)"""
    backend_config: dict[str, Any] | None = None
    """Backend-specific configuration to pass through for initialization"""
    readonly: bool | None = False
    """Consider this store as a read-only store, writing will raise an exception"""

    _coerce = {"uri": _store_uri}

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.serialization_mode is None or self.raise_on_nonexist is None or self.default_ttl is None:
            from anystore_cli.config.settings import Settings

            settings = Settings()
            if self.serialization_mode is None:
                self.serialization_mode = settings.serialization_mode
            if self.raise_on_nonexist is None:
                self.raise_on_nonexist = settings.raise_on_nonexist
            if self.default_ttl is None:
                self.default_ttl = settings.default_ttl
        if self.serialization_mode is not None:
            from anystore_cli.util.serialize import check_mode

            self.serialization_mode = check_mode(self.serialization_mode)

    @classmethod
    def from_yaml_uri(cls, uri: Any, **kwargs: Any) -> Any:
        """Load a store definition from a (remote) YAML file; `kwargs` override its fields."""
        import yaml

        from anystore_cli.store.io import smart_read

        text = smart_read(uri, "rb")
        if len(text) > MAX_CONFIG_BYTES:
            raise InvalidData(f"Store config `{uri}` is larger than {MAX_CONFIG_BYTES} bytes")
        data = yaml.load(text, Loader=_no_alias_loader()) or {}
        return cls._from_config(data, uri, **kwargs)

    @classmethod
    def from_json_uri(cls, uri: Any, **kwargs: Any) -> Any:
        """Load a store definition from a (remote) JSON file; `kwargs` override its fields."""
        import orjson

        from anystore_cli.store.io import smart_read

        try:
            data = orjson.loads(smart_read(uri, "rb"))
        except orjson.JSONDecodeError as exc:
            raise InvalidData(f"Invalid JSON in store config `{uri}`: {exc}") from exc
        return cls._from_config(data, uri, **kwargs)

    @classmethod
    def _from_config(cls, data: Any, uri: Any, **kwargs: Any) -> Any:
        if not isinstance(data, dict) or "uri" not in data:
            raise InvalidData(f"Store config `{uri}` must be a mapping with a `uri`")
        return cls(**merge_config(data, kwargs, cls.model_fields, uri))


def merge_config(data: dict[str, Any], kwargs: dict[str, Any], fields: Any, where: Any) -> dict[str, Any]:
    """A store definition read from a file, with `kwargs` (not None) over it; `backend_config`
    entries merge (the file's, then the caller's). Both faces build stores through this.

    Raises:
        InvalidData: The file holds a field no store has (`readonyl`, `backend_confg`)
    """
    unknown = [str(k) for k in data if k not in fields]
    if unknown:
        names = ", ".join(f"`{name}`" for name in unknown)
        raise InvalidData(f"Store config `{where}`: unknown field {names} (known: {', '.join(fields)})")
    config = {name: _config_value(name, value, where) for name, value in data.items()}
    for key, value in kwargs.items():
        if key == "backend_config" and value:
            config["backend_config"] = {**(config.get("backend_config") or {}), **value}
        elif value is not None and key != "backend_config":
            config[key] = value
    return config


def _config_value(name: str, value: Any, where: Any) -> Any:
    """Check the type of one field read from a store config file: a wrong type is bad input,
    never taken for something else (`readonly: notbool` is no read-only store)."""
    from anystore_cli.config.settings import parse_bool

    if value is None:
        return value
    try:
        if name in ("readonly", "raise_on_nonexist", "store_none_values"):
            return parse_bool(value) if isinstance(value, bool | str) else parse_bool(_refuse(value))
        if name == "default_ttl":
            if isinstance(value, bool) or not isinstance(value, int | str):
                _refuse(value)
            return int(value)
        if name in ("uri", "serialization_mode") and not isinstance(value, str):
            _refuse(value)
        if name == "backend_config" and not isinstance(value, dict):
            _refuse(value)
    except (InvalidData, ValueError):
        raise InvalidData(f"Store config `{where}`: field `{name}` has a bad value `{value}`") from None
    return value


def _refuse(value: Any) -> Any:
    raise InvalidData(f"bad value `{value}`")


MAX_CONFIG_BYTES = 1024 * 1024
"""A store config file larger than this is refused (a definition takes a few hundred bytes)"""


def _no_alias_loader() -> Any:
    """yaml's safe loader without anchors and aliases: a few hundred bytes of nested aliases
    (a "billion laughs") would otherwise expand to gigabytes, and a store definition needs none."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases (`*name`) are not allowed in a store config", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def __getattr__(name: str) -> Any:
    """`BaseStats`, `Stats` and `to_datetime` where they were imported from before `store.entry`."""
    if name in ("BaseStats", "Stats", "to_datetime"):
        from anystore_cli.store import entry

        return getattr(entry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
