"""The library's stores and `get_store`, the top-level store entry point.

`get_store` picks the store class by the uri's scheme (through the backend registry of
`anystore_cli.store.registry`, which imports only the backend it needs) and returns a new
store object on every call, as the original library does.
"""

from __future__ import annotations

from typing import Any

from anystore_cli.core.settings import Settings
from anystore_cli.core.store.base import BaseStore, VirtualIOMixin, check_readonly
from anystore_cli.core.store.fs import LocalStore, Store
from anystore_cli.core.store.memory import MemoryStore
from anystore_cli.core.store.zip import ZipStore
from anystore_cli.util.uri import ensure_uri, get_scheme

_FACES: dict[str, str] = {
    "file": "anystore_cli.core.store.fs:LocalStore",
    "fsspec": "anystore_cli.core.store.fs:Store",
    "memory": "anystore_cli.core.store.memory:MemoryStore",
    "zip": "anystore_cli.core.store.zip:ZipStore",
    "redis": "anystore_cli.core.store.redis:RedisStore",
    "rediss": "anystore_cli.core.store.redis:RedisStore",
}
"""Backend registry name -> library store class; SQL schemes and other backends below"""

_GENERIC: dict[str, type[BaseStore]] = {}


def store_class(uri: str) -> type[BaseStore]:
    """The library store class serving `uri` (a normalised uri).

    Raises:
        InvalidUri: For an unknown scheme
        MissingDependency: When the backend's packages are not installed
    """
    from anystore_cli.core.store.base import load_target
    from anystore_cli.store import registry

    name = registry.backend_name(uri)
    if name == "fsspec":
        registry.check_fsspec_scheme(uri)
        from anystore_cli.backends.fs import _check_protocol

        _check_protocol(get_scheme(uri), uri)  # a missing package (gcsfs, adlfs, ...) is named now
    target, _ = registry.known_backends[name]
    if target == registry.known_backends["sqlite"][0]:
        registry.load_backend(name)  # a missing package names the extra to install
        return load_target("anystore_cli.core.store.sql:SqlStore")
    face = _FACES.get(name)
    if face is not None:
        if name in ("redis", "rediss"):
            registry.load_backend(name)
        return load_target(face)
    if target not in _GENERIC:
        registry.load_backend(name)
        _GENERIC[target] = type(f"{target.rsplit(':', 1)[-1]}", (BaseStore,), {"backend_target": target})
    return _GENERIC[target]


def get_store(uri: Any = None, settings: Settings | None = None, **kwargs: Any) -> BaseStore:
    """Short-hand initializer for a new store.

    Example:
        ```python
        from anystore_cli.core import get_store

        # initialize from current configuration
        store = get_store()
        # get a redis store with custom prefix
        store = get_store("redis://localhost", backend_config={"redis_prefix": "foo"})
        ```

    Args:
        uri: Store base uri, if relative it is considered as a local file store, otherwise the
            store backend is inferred from the scheme. If omitted, store is derived from
            settings defaults (taking current environment into account: `ANYSTORE_URI`,
            `ANYSTORE_YAML_URI`, `ANYSTORE_JSON_URI`, ...).
        settings: Settings to take the defaults from (default: from the environment)
        **kwargs: pass through storage-specific options

    Returns:
        A new store object

    Raises:
        InvalidUri: For an empty uri or an unknown scheme
        MissingDependency: When the backend's packages are not installed
    """
    from anystore_cli.store.registry import resolve_store

    uri, _name, kwargs = resolve_store(uri, settings or Settings(), **kwargs)  # as the command line
    cls = store_class(uri)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return cls(uri=uri, **kwargs)


def get_store_for_uri(uri: Any, **kwargs: Any) -> tuple[BaseStore, str]:
    """Split a file uri into the store of its folder and its name.

    Example:
        ```python
        store, key = get_store_for_uri("s3://bucket/data/file.json")
        # get_store("s3://bucket/data"), "file.json"
        ```

    Raises:
        NotImplementedError: For redis, memory and sql uris, which have no folders
    """
    uri = ensure_uri(uri)
    scheme = get_scheme(uri)
    if scheme in ("redis", "rediss", "memory") or "sql" in scheme:
        raise NotImplementedError(f"Cannot parse `{uri}` with scheme `{scheme}`")
    base_uri, path = str(uri).rsplit("/", 1)
    return get_store(base_uri, **kwargs), path


__all__ = [
    "BaseStore",
    "LocalStore",
    "MemoryStore",
    "Store",
    "VirtualIOMixin",
    "ZipStore",
    "check_readonly",
    "get_store",
    "get_store_for_uri",
    "store_class",
]
