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


def normal_store_uri(value: Any) -> str:
    """A store's uri as both faces keep it: a path as `file://...`, no trailing slash (but a
    root, `file:///` or `s3://`, stays whole), `memory://NAME` however the slashes were given.
    """
    uri = ensure_uri(value)
    if get_scheme(uri) == SCHEME_MEMORY:
        return "memory://" + uri[len("memory:") :].strip("/")
    stripped = uri.rstrip("/")
    return uri if not stripped or stripped.endswith(":") else stripped


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

    _coerce = {"uri": normal_store_uri}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in masked_fields(self).items())
        return f"{type(self).__name__}({fields})"

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
        return cls._from_config(uri, "yaml", kwargs)

    @classmethod
    def from_json_uri(cls, uri: Any, **kwargs: Any) -> Any:
        """Load a store definition from a (remote) JSON file; `kwargs` override its fields."""
        return cls._from_config(uri, "json", kwargs)

    @classmethod
    def _from_config(cls, uri: Any, fmt: str, kwargs: dict[str, Any]) -> Any:
        return cls(**read_definition(uri, fmt, kwargs, cls.model_fields))


def masked_fields(model: Any) -> dict[str, Any]:
    """A store definition's fields as `repr()` shows them in both faces: the uri's password
    and the secrets of `backend_config` masked as `anystore settings` masks them."""
    from anystore_cli.store.options import mask_secrets
    from anystore_cli.util.uri import mask_uri

    fields = {name: getattr(model, name) for name in model.model_fields}
    fields["uri"] = mask_uri(fields["uri"])
    if isinstance(fields.get("backend_config"), dict):
        fields["backend_config"] = mask_secrets(fields["backend_config"])
    return fields


def read_definition(uri: Any, fmt: str, kwargs: dict[str, Any], fields: Any) -> dict[str, Any]:
    """The fields of the store defined in the YAML or JSON file at `uri`, `kwargs` merged over
    them: the one way both faces read a store config (see `anystore_cli.config.storedef`).

    Raises:
        InvalidData: A file too large, bad YAML/JSON, aliases, unknown fields, wrong types
    """
    from anystore_cli.config.storedef import parse_definition, store_definition
    from anystore_cli.store.io import smart_read

    data = parse_definition(smart_read(uri, "rb"), fmt, uri)
    return store_definition(data, kwargs, fields, uri)
