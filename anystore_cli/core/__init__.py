"""The anystore library API, importable from one place.

Attributes load lazily (PEP 562), so `import anystore_cli.core` costs nothing until a name is
used, and no backend package (fsspec, redis, sqlalchemy) is imported before a store needs it.

Example:
    ```python
    from anystore_cli.core import get_store

    store = get_store("s3://bucket/prefix")
    store.put("foo", {"a": 1})
    ```
"""

from __future__ import annotations

import importlib
import sys
import types as _types
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "__version__": "anystore_cli",
    "get_store": "anystore_cli.core.store",
    "get_store_for_uri": "anystore_cli.core.store",
    "register_backend": "anystore_cli.store.registry",
    "BaseStore": "anystore_cli.core.store.base",
    "VirtualIOMixin": "anystore_cli.core.store.base",
    "check_readonly": "anystore_cli.core.store.base",
    "AbstractBackend": "anystore_cli.core.store.abstract",
    "Store": "anystore_cli.core.store.fs",
    "LocalStore": "anystore_cli.core.store.fs",
    "MemoryStore": "anystore_cli.core.store.memory",
    "ZipStore": "anystore_cli.core.store.zip",
    "RedisStore": "anystore_cli.core.store.redis",
    "SqlStore": "anystore_cli.core.store.sql",
    "BaseStats": "anystore_cli.core.model",
    "Stats": "anystore_cli.core.model",
    "StoreModel": "anystore_cli.core.model",
    "Settings": "anystore_cli.core.settings",
    "AnystoreError": "anystore_cli.errors",
    "DoesNotExist": "anystore_cli.errors",
    "AlreadyExists": "anystore_cli.errors",
    "ReadOnlyError": "anystore_cli.errors",
    "InvalidKey": "anystore_cli.errors",
    "InvalidUri": "anystore_cli.errors",
    "InvalidData": "anystore_cli.errors",
    "StoreError": "anystore_cli.errors",
    "MissingDependency": "anystore_cli.errors",
    "ChecksumMismatch": "anystore_cli.errors",
    "to_store": "anystore_cli.util.serialize",
    "from_store": "anystore_cli.util.serialize",
    "Mode": "anystore_cli.util.serialize",
    "DEFAULT_HASH_ALGORITHM": "anystore_cli.util.checksum",
    "make_checksum": "anystore_cli.util.checksum",
    "make_data_checksum": "anystore_cli.util.checksum",
    "make_signature_key": "anystore_cli.util.checksum",
    "ensure_uri": "anystore_cli.util.uri",
    "join_uri": "anystore_cli.util.uri",
    "mask_uri": "anystore_cli.util.uri",
    "clean_dict": "anystore_cli.util.uri",
    "smart_open": "anystore_cli.store.io",
    "smart_read": "anystore_cli.store.io",
    "smart_write": "anystore_cli.store.io",
    "smart_stream": "anystore_cli.store.io",
    "anycache": "anystore_cli.core.decorators",
    "async_anycache": "anystore_cli.core.decorators",
    "mirror": "anystore_cli.core.mirror",
    "MirrorStatus": "anystore_cli.core.mirror",
    "check": "anystore_cli.core.mirror",
    "CheckStatus": "anystore_cli.core.mirror",
    "Lock": "anystore_cli.services.lock",
    "LockHeld": "anystore_cli.services.lock",
    "LeaseLost": "anystore_cli.services.lock",
    "LockUnsupported": "anystore_cli.services.lock",
    "Lease": "anystore_cli.services.lock",
    "SmartHandler": "anystore_cli.store.io",
    "smart_stream_json": "anystore_cli.store.io",
    "smart_write_json": "anystore_cli.store.io",
    "get_virtual": "anystore_cli.core.store.virtual",
    "open_virtual": "anystore_cli.core.store.virtual",
    "VirtualStore": "anystore_cli.core.store.virtual",
}

__all__ = sorted(_EXPORTS)


_SUBMODULES = frozenset(
    {
        "checksum",
        "cli",
        "decorators",
        "exceptions",
        "io",
        "keys",
        "logging",
        "mixins",
        "model",
        "serialize",
        "settings",
        "store",
        "types",
        "uri",
        "util",
        "worker",
    }
)
"""Modules of the package, reachable as attributes (`from anystore_cli.core import util`)"""


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        if name in _SUBMODULES:
            return importlib.import_module(f"{__name__}.{name}")
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _CoreModule(_types.ModuleType):
    """Keeps exported names pointing at the API when a submodule of the same name loads.

    Importing `anystore_cli.core.mirror` (the module) would otherwise replace the exported
    `mirror` function on this package with the module object.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, _types.ModuleType) and name in _EXPORTS:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _CoreModule


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from anystore_cli.core.decorators import anycache, async_anycache  # noqa: F401
    from anystore_cli.core.mirror import mirror  # noqa: F401
    from anystore_cli.core.model import BaseStats, Stats, StoreModel  # noqa: F401
    from anystore_cli.core.settings import Settings  # noqa: F401
    from anystore_cli.core.store import get_store, get_store_for_uri  # noqa: F401
    from anystore_cli.core.store.base import BaseStore, VirtualIOMixin, check_readonly  # noqa: F401
    from anystore_cli.core.store.fs import Store  # noqa: F401
    from anystore_cli.core.store.memory import MemoryStore  # noqa: F401
    from anystore_cli.core.store.virtual import get_virtual, open_virtual  # noqa: F401
    from anystore_cli.core.store.zip import ZipStore  # noqa: F401
    from anystore_cli.errors import DoesNotExist, ReadOnlyError  # noqa: F401
    from anystore_cli.store.io import smart_open, smart_read, smart_stream, smart_write  # noqa: F401
    from anystore_cli.util.checksum import DEFAULT_HASH_ALGORITHM, make_checksum  # noqa: F401
    from anystore_cli.util.serialize import Mode, from_store, to_store  # noqa: F401
    from anystore_cli.util.uri import ensure_uri, join_uri  # noqa: F401
