"""The store interface of the library: a pydantic model over a byte-level backend.

`BaseStore` is the original library's store class: a `StoreModel` (pydantic, validated,
serializable, picklable) with the methods `get`, `put`, `pop`, `delete`, `stream`, `exists`,
`info`, `checksum`, `open`, `touch`, `iterate_keys`, `iterate_values`. Each built-in store class
names the backend that does the work (`backend_target`, a `module:Class` of
`anystore_cli.backends`); the backend object is made on first use and rebuilt when the store's
uri, backend config or read-only flag change. A subclass without a `backend_target` that
implements the `AbstractBackend` primitives (`_read`, `_write`, ...) is a custom store, as in
the original library.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from pydantic import PrivateAttr

from anystore_cli.core.model import BaseStats, Stats, StoreModel
from anystore_cli.core.store.abstract import AbstractBackend
from anystore_cli.store.base import BaseStore as PlainStore
from anystore_cli.store.base import VirtualIOMixin as VirtualIOMixin  # noqa: PLC0414 - part of the API
from anystore_cli.store.base import check_readonly as check_readonly  # noqa: PLC0414 - part of the API

_OPTION_FIELDS = (
    "readonly",
    "serialization_mode",
    "serialization_func",
    "deserialization_func",
    "model",
    "raise_on_nonexist",
    "store_none_values",
    "default_ttl",
)
"""Fields the backend reads on every call: copied onto it before each call (a change of the
uri or the backend config makes a new backend instead)"""

_PRIMITIVES = ("_read", "_write", "_delete", "_exists", "_info", "_iterate_keys", "_open", "_stream")


def local_datetime(value: datetime | None) -> datetime | None:
    """A timestamp as the original library gives it: naive, in local time (compares with `datetime.now()`)."""
    if value is not None and value.tzinfo is not None:
        return value.astimezone().replace(tzinfo=None)
    return value


def to_stats(stats: Any) -> Any:
    """Turn a backend's plain stats into the library's pydantic `Stats` / `BaseStats`."""
    if isinstance(stats, BaseStats):
        return stats
    data = stats.model_dump()
    data["created_at"] = local_datetime(data.get("created_at"))
    data["updated_at"] = local_datetime(data.get("updated_at"))
    if "key" in data:
        return Stats(**data)
    return BaseStats(**data)


def load_target(target: str) -> type:
    """Import a backend class given as `module:Class`."""
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def _forward(name: str, convert: Callable[[Any], Any] | None = None, generator: bool = False) -> Any:
    """A method of the library's store that calls the backend's method `name` with the same
    arguments, and shows the backend's signature and documentation (`functools.wraps`);
    `convert` turns each result (each item, for a generator) into the library's type."""
    target = getattr(PlainStore, name)

    if generator:

        @functools.wraps(target)
        def forward_items(self: Any, *args: Any, **kwargs: Any) -> Any:
            for item in getattr(self._get_backend(), name)(*args, **kwargs):
                yield item if convert is None else convert(item)

        return forward_items

    @functools.wraps(target)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self._get_backend(), name)(*args, **kwargs)
        return result if convert is None else convert(result)

    return forward


def _primitive(name: str, convert: Callable[[Any], Any] | None = None, generator: bool = False) -> Any:
    """A primitive of the original library's `AbstractBackend`: a custom store (no
    `backend_target`) that does not implement it gets the `AbstractBackend` one, a built-in
    store the backend's."""
    fallback = getattr(AbstractBackend, name)

    def call(self: Any, args: Any, kwargs: Any) -> Any:
        if self.backend_target is None:
            return fallback(self, *args, **kwargs)
        return getattr(self._get_backend(), name)(*args, **kwargs)

    if generator:

        @functools.wraps(fallback)
        def primitive_items(self: Any, *args: Any, **kwargs: Any) -> Any:
            yield from call(self, args, kwargs)

        return primitive_items

    @functools.wraps(fallback)
    def primitive(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = call(self, args, kwargs)
        return result if convert is None or self.backend_target is None else convert(result)

    return primitive


class BaseStore(StoreModel, AbstractBackend):
    """The store interface, whatever the backend."""

    backend_target: ClassVar[str | None] = None
    """The backend class doing the work, as `module:Class`; None for a custom store"""

    _backend: Any = PrivateAttr(default=None)
    _backend_key: Any = PrivateAttr(default=None)

    # ---- the backend behind the model ---------------------------------------------------

    def _backend_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in StoreModel.model_fields}

    def _get_backend(self) -> Any:
        """The backend object for the store's current configuration."""
        key = (self.uri, repr(self.backend_config))
        backend = self._backend
        if backend is None or self._backend_key != key:
            backend = self._make_backend()
            self._backend, self._backend_key = backend, key
        for name in _OPTION_FIELDS:
            setattr(backend, name, getattr(self, name))
        return backend

    def _make_backend(self) -> Any:
        target = self.backend_target
        if target is None:
            from anystore_cli.core.store.custom import CustomBackend

            return CustomBackend(self, **self._backend_fields())
        backend = load_target(target)(**self._backend_fields())
        # as the library: a store nothing was written to yet lists as empty (the command line
        # refuses it, so a mistyped source cannot empty a mirror's target)
        backend.missing_is_empty = True
        return backend

    def _portable_backend(self) -> bool:
        """Whether the backend object carries the data (memory) and so travels with pickles and copies."""
        return bool(getattr(self._backend, "portable", False))

    def __getstate__(self) -> dict[Any, Any]:
        # connections, clients and locks stay behind: the unpickled store makes its own
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private and not self._portable_backend():
            state["__pydantic_private__"] = {**private, "_backend": None, "_backend_key": None}
        return state

    def __copy__(self) -> Any:
        # a copy shares the data and connections (as in the original library, where a copied
        # memory store shares its dict) but has options of its own: a shallow copy of the backend
        with contextlib.suppress(Exception):  # a backend that cannot be made now is made on use
            self._get_backend()
        copied = super().__copy__()
        if self._backend is not None:
            # a view of the same backend object: same data and connections, own option fields
            view = object.__new__(type(self._backend))
            view.__dict__.update(self._backend.__dict__)
            copied._backend = view
        return copied

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Any:
        if self._portable_backend():
            return super().__deepcopy__(memo)
        backend = self._backend
        self._backend = None
        try:
            copied = super().__deepcopy__(memo)
        finally:
            self._backend = backend
        copied._backend_key = None
        return copied

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            if name.startswith("__") or name in ("_backend", "_backend_key") or self.backend_target is None:
                raise
            return getattr(self._get_backend(), name)  # the backend's own attributes (`_client`, `root`, ...)

    def __repr__(self) -> str:
        """The store's fields, with the uri's password and secret-looking backend options masked."""
        backend = repr(self._get_backend())
        return type(self).__name__ + backend[backend.index("(") :]

    def __str__(self) -> str:
        return repr(self)

    # ---- the original library's primitives: a custom store's own, else the backend's -------

    _read = _primitive("_read")
    _delete = _primitive("_delete")
    _exists = _primitive("_exists")
    _info = _primitive("_info", to_stats)
    _iterate_keys = _primitive("_iterate_keys", generator=True)
    _open = _primitive("_open")
    _stream = _primitive("_stream", generator=True)
    _get_key_prefix = _primitive("_get_key_prefix")

    def _write(self, key: str, value: bytes | str, **kwargs: Any) -> None:
        if self.backend_target is None:
            return super()._write(key, value, **kwargs)
        data = value.encode() if isinstance(value, str) else value
        self._get_backend()._write(key, data, **kwargs)

    # ---- public api: the backend's, with its signature and documentation -------------------

    get = _forward("get")
    pop = _forward("pop")
    delete = _forward("delete")
    stream = _forward("stream", generator=True)
    put = _forward("put")
    put_stream = _forward("put_stream")
    put_many = _forward("put_many")
    get_many = _forward("get_many", generator=True)
    exists = _forward("exists")
    info = _forward("info", to_stats)
    iterate_infos = _forward("iterate_infos", to_stats, generator=True)
    info_many = _forward("info_many", lambda item: (item[0], None if item[1] is None else to_stats(item[1])), True)
    get_key = _forward("get_key")
    ensure_kwargs = _forward("ensure_kwargs")
    iterate_keys = _forward("iterate_keys", generator=True)
    iterate_values = _forward("iterate_values", generator=True)
    checksum = _forward("checksum")
    open = _forward("open")
    touch = _forward("touch")
