"""A pydantic `BaseModel` that loads itself from JSON or YAML at any uri (anystore's `mixins`).

Example:
    ```python
    from anystore_cli.core.mixins import BaseModel

    class Config(BaseModel):
        name: str

    config = Config.from_yaml_uri("s3://bucket/config.yml", name="override")
    ```
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel as _BaseModel
from pydantic import field_validator

from anystore_cli.core.logging import get_logger
from anystore_cli.store.io import smart_read
from anystore_cli.util.uri import clean_dict

try:
    from typing import Self
except ImportError:  # Python 3.10
    from typing_extensions import Self

log = get_logger(__name__)

__all__ = ["BaseModel", "JsonMixin", "RemoteMixin", "YamlMixin", "cached_from_uri"]


@lru_cache(128)
def cached_from_uri(uri: Any) -> bytes:
    """Read `uri` once per process (remote configuration is read again only after a restart)."""
    log.info(f"Loading `{uri}` ...")
    return smart_read(uri)


class JsonMixin:
    """Load a model from JSON, in a string or at a (local or remote) uri."""

    @classmethod
    def from_json_str(cls, data: str | bytes, **kwargs: Any) -> Self:
        """Build the model from a JSON object; `kwargs` (that are not empty) override its fields."""
        import orjson

        return cls(**clean_dict({**orjson.loads(data), **clean_dict(kwargs)}))

    @classmethod
    def from_json_uri(cls, uri: Any, **kwargs: Any) -> Self:
        """Build the model from the JSON object at `uri`; `kwargs` override its fields."""
        return cls.from_json_str(cached_from_uri(uri), **kwargs)


class YamlMixin:
    """Load a model from YAML, in a string or at a (local or remote) uri."""

    @classmethod
    def from_yaml_str(cls, data: str | bytes, **kwargs: Any) -> Self:
        """Build the model from a YAML mapping; `kwargs` (that are not empty) override its fields."""
        from anystore_cli.config.storedef import load_yaml

        loaded = load_yaml(data)  # the one safe loader: no aliases
        return cls(**clean_dict({**loaded, **clean_dict(kwargs)}))

    @classmethod
    def from_yaml_uri(cls, uri: Any, **kwargs: Any) -> Self:
        """Build the model from the YAML mapping at `uri`; `kwargs` override its fields."""
        return cls.from_yaml_str(cached_from_uri(uri), **kwargs)


class RemoteMixin(JsonMixin, YamlMixin):
    """Load a model from JSON or YAML at a uri, whichever it holds."""

    @classmethod
    def _from_uri(cls, uri: Any, **kwargs: Any) -> Self:
        import orjson

        try:
            return cls.from_json_uri(uri, **kwargs)
        except orjson.JSONDecodeError:
            return cls.from_yaml_uri(uri, **kwargs)


class BaseModel(_BaseModel, RemoteMixin):
    """A pydantic model that is hashable, loads from uris and takes `""` for `None`."""

    def __hash__(self) -> int:
        return hash(repr(self.model_dump()))

    @field_validator("*", mode="before")
    @classmethod
    def empty_str_to_none(cls, value: Any) -> Any:
        """An empty string given for any field counts as `None`."""
        if isinstance(value, str) and value == "":
            return None
        return value
