"""Pydantic models of the library: store definitions and key metadata.

These are the original library's models: `StoreModel` initializes a store from configuration
(validated, serializable, usable as a field of another model), `BaseStats`/`Stats` describe a
key. The command line never imports this module: it uses the plain models of
`anystore_cli.store.model`, which load no pydantic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel as _PydanticModel
from pydantic import ConfigDict, Field, WithJsonSchema, field_validator

from anystore_cli.store.model import UriProperties
from anystore_cli.util.serialize import Mode
from anystore_cli.util.uri import join_uri

_Function = Annotated[Callable | None, WithJsonSchema({"type": "null", "description": "a Python callable"})]
_ModelClass = Annotated[
    type[_PydanticModel] | None, WithJsonSchema({"type": "null", "description": "a pydantic model class"})
]


def _settings() -> Any:
    from anystore_cli.core.settings import Settings

    return Settings()


class _Model(_PydanticModel):
    """Common base: hashable by content, loadable from a JSON or YAML uri."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __hash__(self) -> int:
        return hash(repr(self.model_dump()))

    @classmethod
    def from_json_str(cls, data: str | bytes, **kwargs: Any) -> Any:
        """Build an instance from a JSON string; `kwargs` that are not None override its fields."""
        return cls._from_text(data, "json", kwargs, cls.__name__)

    @classmethod
    def from_yaml_str(cls, data: str | bytes, **kwargs: Any) -> Any:
        """Build an instance from a YAML string; `kwargs` that are not None override its fields."""
        return cls._from_text(data, "yaml", kwargs, cls.__name__)

    @classmethod
    def from_json_uri(cls, uri: Any, **kwargs: Any) -> Any:
        """Build an instance from a (remote) JSON file."""
        from anystore_cli.store.io import smart_read

        return cls._from_text(smart_read(uri, "rb"), "json", kwargs, uri)

    @classmethod
    def from_yaml_uri(cls, uri: Any, **kwargs: Any) -> Any:
        """Build an instance from a (remote) YAML file."""
        from anystore_cli.store.io import smart_read

        return cls._from_text(smart_read(uri, "rb"), "yaml", kwargs, uri)

    @classmethod
    def _from_text(cls, text: str | bytes, fmt: str, kwargs: dict[str, Any], where: Any) -> Any:
        """Store definitions through the command line's loader (`config.storedef`: unknown
        fields refused, `backend_config` merged, the same limits and messages); other models:
        `kwargs` that are not None override fields."""
        from anystore_cli.config.storedef import parse_definition, store_definition

        data = parse_definition(text, fmt, where)
        if "backend_config" in cls.model_fields:
            return cls(**store_definition(data, kwargs, cls.model_fields, where))
        return cls(**{**data, **{k: v for k, v in kwargs.items() if v is not None}})


class BaseStats(_Model):
    """Shared base metadata object"""

    created_at: datetime | None = None
    """Created at timestamp"""
    updated_at: datetime | None = None
    """Last updated timestamp"""
    size: int
    """Size (content length) in bytes"""


class Stats(BaseStats):
    """Meta information for a store key"""

    name: str
    """Key name: last part of the key (aka file name without path)"""
    store: str
    """Store base uri"""
    key: str
    """Full path of key"""

    @property
    def uri(self) -> str:
        """The key's uri: absolute for file-like stores (`file:///tmp/foo.txt`), the key itself for others."""
        if StoreModel(uri=self.store).is_fslike:
            return join_uri(self.store, self.key)
        return self.key


class StoreModel(_Model, UriProperties):
    """Store model to initialize a store from configuration"""

    uri: str
    """Store base uri"""
    serialization_mode: Mode | None = Field(default_factory=lambda: _settings().serialization_mode)
    """Default serialization (auto, raw, pickle, json)"""
    serialization_func: _Function = None
    """Default serialization function"""
    deserialization_func: _Function = None
    """Default deserialization function"""
    model: _ModelClass = None
    """Default pydantic model for serialization"""
    raise_on_nonexist: bool | None = Field(default_factory=lambda: _settings().raise_on_nonexist)
    """Raise `DoesNotExist` if key doesn't exist"""
    store_none_values: bool | None = True
    """Store `None` as value in store"""
    default_ttl: int | None = Field(default_factory=lambda: _settings().default_ttl)
    """Default ttl for keys (only backends that support it: memory, redis, sql)"""
    backend_config: dict[str, Any] | None = None
    """Backend-specific configuration to pass through for initialization"""
    readonly: bool | None = False
    """Consider this store as a read-only store, writing will raise an exception"""

    def __repr_args__(self) -> Any:
        from anystore_cli.store.model import masked_fields

        yield from masked_fields(self).items()

    @field_validator("uri", mode="before")
    @classmethod
    def ensure_uri(cls, value: Any) -> str:
        """Turn a path into a uri; no trailing slash (as the command line's model keeps it)."""
        from anystore_cli.store.model import normal_store_uri

        return normal_store_uri(value)

    @field_validator("backend_config", mode="before")
    @classmethod
    def empty_backend_config(cls, value: Any) -> Any:
        """An empty string (from an environment variable) means no backend config."""
        return None if value == "" else value
