"""Backend registry: uri scheme -> backend class, imported only when used.

Like fsspec's `known_implementations`, each entry is a dotted import string plus the extra to
install when its packages are missing, so `get_store` imports only the backend it needs.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from anystore_cli.config.settings import Settings
from anystore_cli.errors import InvalidUri, MissingDependency
from anystore_cli.util.uri import BUCKET_SCHEMES, ensure_uri, get_scheme, mask_uri

_SQL = ("anystore_cli.backends.sql:SqlStore", "sql")
_REDIS = ("anystore_cli.backends.redis:RedisStore", "redis")

known_backends: dict[str, tuple[str, str | None]] = {
    "file": ("anystore_cli.backends.local:LocalStore", None),
    "memory": ("anystore_cli.backends.memory:MemoryStore", None),
    "zip": ("anystore_cli.backends.zip:ZipStore", None),
    "redis": _REDIS,
    "rediss": _REDIS,
    "sqlite": _SQL,
    "postgresql": _SQL,
    "postgres": _SQL,
    "mysql": _SQL,
    "mariadb": _SQL,
    "fsspec": ("anystore_cli.backends.fs:Store", "remote"),
    "anystore+http": ("anystore_cli.backends.http_client:ServedStore", "serve"),
    "anystore+https": ("anystore_cli.backends.http_client:ServedStore", "serve"),
}
"""Scheme -> (import string, extra of anystore-cli that brings its packages)"""


def register_backend(scheme: str, target: str, extra: str | None = None) -> None:
    """Register (or replace) the backend class for a uri scheme, as `module:Class`."""
    known_backends[scheme] = (target, extra)


def backend_name(uri: str) -> str:
    """The registry entry that serves `uri` (a normalised uri)."""
    scheme = get_scheme(uri)
    if "+" in scheme and scheme in known_backends:  # a whole scheme of its own (anystore+http)
        return scheme
    base = scheme.split("+", 1)[0]
    path = uri.split("?", 1)[0].lower()
    if (
        base not in ("redis", "rediss", "memory")
        and base not in _sql_schemes()
        and (path.endswith(".zip") or ".zip/" in path)
    ):
        return "zip"
    if base in known_backends:
        return base
    return "fsspec"


def _sql_schemes() -> set[str]:
    return {s for s, (target, _) in known_backends.items() if target == _SQL[0]}


def load_backend(name: str) -> type:
    """Import and return the backend class registered as `name`."""
    target, extra = known_backends[name]
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'anystore-cli[{extra}]'" if extra else "reinstall anystore-cli"
        raise MissingDependency(f"The `{name}` backend needs a missing package ({exc.name}): {hint}") from exc
    return getattr(module, class_name)


def check_fsspec_scheme(uri: str) -> None:
    """Raise `InvalidUri` if no backend and no fsspec implementation knows the uri's scheme."""
    scheme = get_scheme(uri)
    from fsspec.registry import known_implementations, registry

    if scheme not in known_implementations and scheme not in registry:
        raise InvalidUri(f"Unknown store scheme `{scheme}://` in `{mask_uri(uri)}`")


def check_bucket(uri: str) -> None:
    """Raise `InvalidUri` for an object store uri without a bucket (`s3://`, `s3:///x`)."""
    scheme = get_scheme(uri)
    if scheme not in BUCKET_SCHEMES:
        return
    rest = uri.split(":", 1)[1]
    rest = rest[2:] if rest.startswith("//") else rest
    if not rest.split("/", 1)[0].split("?", 1)[0]:
        raise InvalidUri(f"`{mask_uri(uri)}` names no bucket: give one, as in `{scheme}://BUCKET/prefix`")


_CACHE: dict[Any, Any] = {}
_CACHE_LOCK = threading.Lock()


def _cache_key(uri: str | None, kwargs: dict[str, Any], settings: Settings) -> Any:
    try:
        return (uri, repr(sorted(kwargs.items())), repr(settings.model_dump()))
    except Exception:  # noqa: BLE001 - unrepresentable options: do not cache
        return None


def get_store(uri: Any = None, settings: Settings | None = None, **kwargs: Any) -> Any:
    """Short-hand initializer for a store. The call is cached while its input does not change.

    Example:
        ```python
        from anystore_cli.core import get_store

        store = get_store()  # from the environment (ANYSTORE_URI, ...)
        store = get_store("redis://localhost", backend_config={"redis_prefix": "foo"})
        ```

    Args:
        uri: Store base uri; a relative or absolute path is a local folder, otherwise the
            backend is chosen by the scheme. If omitted, the settings decide (taking the
            environment into account: `ANYSTORE_URI`, `ANYSTORE_YAML_URI`, ...).
        settings: Settings to take defaults from (default: from the environment)
        **kwargs: Store options (`serialization_mode`, `readonly`, `backend_config`, ...)

    Returns:
        A store instance

    Raises:
        InvalidUri: For an unknown scheme
        MissingDependency: When the backend's packages are not installed
    """
    settings = settings or Settings()
    key = _cache_key(None if uri is None else str(uri), kwargs, settings)
    if key is not None and settings.use_cache:
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
        if cached is not None:
            return cached
    store = _make_store(uri, settings, **kwargs)
    if key is not None and settings.use_cache:
        with _CACHE_LOCK:
            _CACHE[key] = store
    return store


def _cache_clear() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


get_store.cache_clear = _cache_clear  # type: ignore[attr-defined]


def _make_store(uri: Any, settings: Settings, **kwargs: Any) -> Any:
    uri, name, kwargs = resolve_store(uri, settings, **kwargs)
    cls = load_backend(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k == "backend_config"}
    return cls(uri=uri, **kwargs)


def resolve_store(uri: Any, settings: Any, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
    """What store `uri` and `kwargs` name under `settings`: both faces' `get_store` build
    their store from this, so the same environment, config file and options give the same store.

    The settings' `backend_config` (`ANYSTORE_BACKEND_CONFIG__*`) is merged under the one
    given; without a uri, the store comes from the settings' YAML or JSON config (its
    `backend_config` under both) or their `uri`. The options are checked and typed by the
    backend's declarations.

    Args:
        uri: The store uri, or None for the settings' store
        settings: Either face's `Settings`
        **kwargs: Store fields (`backend_config`, `readonly`, `serialization_mode`, ...)

    Returns:
        The store uri, the registry name of its backend and the store's fields

    Raises:
        InvalidUri: An empty uri, an unknown scheme, an object store uri without a bucket
        InvalidData: A bad config file, unknown backend options, values of a wrong type
    """
    backend_config = {**(settings.backend_config or {}), **(kwargs.pop("backend_config", None) or {})}
    kwargs["backend_config"] = backend_config or None
    if settings.readonly and kwargs.get("readonly") is None:
        kwargs["readonly"] = True
    if uri is None:
        config, fmt = (settings.yaml_uri, "yaml") if settings.yaml_uri is not None else (settings.json_uri, "json")
        if config is not None:
            from anystore_cli.store.model import StoreModel, read_definition

            kwargs = read_definition(config, fmt, kwargs, StoreModel.model_fields)
            uri = kwargs.pop("uri")
        else:
            uri = settings.uri
    uri = store_uri(uri)
    name = backend_name(uri)
    if name == "fsspec":
        check_fsspec_scheme(uri)
        check_bucket(uri)
    if kwargs.get("backend_config"):
        from anystore_cli.store.options import typed_config

        kwargs["backend_config"] = typed_config(uri, kwargs["backend_config"])
    return uri, name, kwargs


def store_uri(uri: Any) -> str:
    """`uri` as a store uri (a path becomes `file://...`).

    Raises:
        InvalidUri: For an empty uri, or `-` (stdin/stdout is no store)
    """
    if uri is None or (isinstance(uri, str) and not uri.strip()):
        raise InvalidUri("Empty store uri")
    uri = ensure_uri(uri)
    if uri == "-":
        raise InvalidUri("`-` is not a store uri")
    return uri


def unknown_backend_options(uri: str, config: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """The entries of `config` that the backend of `uri` does not declare (see `backend.options`).

    Returns:
        `(unknown, known, backend)`: the unknown names, the names the backend knows (sorted),
        and the backend's name; `([], [], name)` when the backend takes any option
    """
    from anystore_cli.store.options import unknown_options

    return unknown_options(uri, config)
