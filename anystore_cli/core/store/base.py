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
import importlib
from collections.abc import Callable, Generator, Iterable
from datetime import datetime
from typing import IO, Any, ClassVar

from pydantic import PrivateAttr

from anystore_cli.core.model import BaseStats, Stats, StoreModel
from anystore_cli.core.store.abstract import AbstractBackend
from anystore_cli.store.base import VirtualIOMixin as VirtualIOMixin  # noqa: PLC0414 - part of the API
from anystore_cli.store.base import check_readonly as check_readonly  # noqa: PLC0414 - part of the API
from anystore_cli.store.io import DEFAULT_MODE
from anystore_cli.util.checksum import DEFAULT_HASH_ALGORITHM
from anystore_cli.util.serialize import Mode

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

    # ---- the original library's primitives, for built-in stores ------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        if self.backend_target is None:
            return super()._read(key, raise_on_nonexist, **kwargs)
        return self._get_backend()._read(key, raise_on_nonexist=raise_on_nonexist, **kwargs)

    def _write(self, key: str, value: bytes | str, **kwargs: Any) -> None:
        if self.backend_target is None:
            return super()._write(key, value, **kwargs)
        data = value.encode() if isinstance(value, str) else value
        self._get_backend()._write(key, data, **kwargs)

    def _delete(self, key: str) -> None:
        if self.backend_target is None:
            return super()._delete(key)
        self._get_backend()._delete(key)

    def _exists(self, key: str) -> bool:
        if self.backend_target is None:
            return super()._exists(key)
        return self._get_backend()._exists(key)

    def _info(self, key: str) -> Any:
        if self.backend_target is None:
            return super()._info(key)
        return to_stats(self._get_backend()._info(key))

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Generator[str, None, None]:
        if self.backend_target is None:
            yield from super()._iterate_keys(prefix, exclude_prefix, glob)
            return
        yield from self._get_backend()._iterate_keys(prefix, exclude_prefix, glob)

    def _open(self, key: str, **kwargs: Any) -> Any:
        if self.backend_target is None:
            return super()._open(key, **kwargs)
        return self._get_backend()._open(key, **kwargs)

    def _stream(self, key: str, **kwargs: Any) -> Generator[Any, None, None]:
        if self.backend_target is None:
            yield from super()._stream(key, **kwargs)
            return
        yield from self._get_backend()._stream(key, **kwargs)

    def _get_key_prefix(self) -> str:
        if self.backend_target is None:
            return super()._get_key_prefix()
        return self._get_backend()._get_key_prefix()

    # ---- public api ------------------------------------------------------------------------

    def get(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: Mode | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Any:
        """Get a value from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent,
                overrides store settings
            serialization_mode: Serialize result ("auto", "raw", "pickle", "json"),
                overrides store settings
            deserialization_func: Specific function to use (ignores `serialization_mode`),
                overrides store settings
            model: Pydantic serialization model (ignores `serialization_mode` and
                `deserialization_func`), overrides store settings
            **kwargs: Passed to the backend (`mode="r"` reads text)

        Returns:
            The (optionally serialized) value for the key
        """
        return self._get_backend().get(
            key,
            raise_on_nonexist=raise_on_nonexist,
            serialization_mode=serialization_mode,
            deserialization_func=deserialization_func,
            model=model,
            **kwargs,
        )

    def pop(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        """Retrieve the value for the given key and remove it from the store (atomically where
        the backend can).

        Args:
            key: Key relative to store base uri
            *args: Any valid arguments for the store's `get` function
            **kwargs: Any valid arguments for the store's `get` function

        Returns:
            The (optionally serialized) value for the key
        """
        return self._get_backend().pop(key, *args, **kwargs)

    def delete(self, key: Any, ignore_errors: bool = False) -> bool:
        """Delete the content at the given key.

        Args:
            key: Key relative to store base uri
            ignore_errors: Ignore exceptions if deletion fails

        Returns:
            True if the key existed (the original returned None)
        """
        return self._get_backend().delete(key, ignore_errors=ignore_errors)

    def stream(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: Mode | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, None]:
        """Stream a value line by line from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent,
                overrides store settings
            serialization_mode: Serialize result ("auto", "raw", "pickle", "json"),
                overrides store settings
            deserialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic serialization model (ignores the two above)
            **kwargs: Passed to the backend (`mode="r"` yields text lines)

        Yields:
            The (optionally serialized) values line by line

        Raises:
            DoesNotExist: If key doesn't exist and raise_on_nonexist=True
        """
        yield from self._get_backend().stream(
            key,
            raise_on_nonexist=raise_on_nonexist,
            serialization_mode=serialization_mode,
            deserialization_func=deserialization_func,
            model=model,
            **kwargs,
        )

    def put(
        self,
        key: Any,
        value: Any,
        serialization_mode: Mode | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        ttl: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Store a value at the given key.

        Args:
            key: Key relative to store base uri
            value: The content
            serialization_mode: Serialize value prior to storing ("auto", "raw", "pickle",
                "json"), overrides store settings
            serialization_func: Specific function to use (ignores `serialization_mode`),
                overrides store settings
            model: Pydantic serialization model (ignores `serialization_mode` and
                `deserialization_func`), overrides store settings
            ttl: Time to live (in seconds) for that key if the backend supports it (e.g.
                memory, redis, sql)
            **kwargs: `no_clobber=True` raises `AlreadyExists` instead of overwriting
        """
        self._get_backend().put(
            key,
            value,
            serialization_mode=serialization_mode,
            serialization_func=serialization_func,
            model=model,
            ttl=ttl,
            no_clobber=bool(kwargs.get("no_clobber")),
        )

    def put_stream(self, key: Any, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        """Store the bytes of a binary stream at `key`, in chunks where the backend can.

        A failed or interrupted write leaves the old value (or no key).

        Returns:
            The number of bytes stored
        """
        return self._get_backend().put_stream(key, source, ttl=ttl, no_clobber=no_clobber)

    def put_many(
        self,
        items: Iterable[tuple[Any, Any]] | dict[Any, Any],
        ttl: int | None = None,
        serialization_mode: Mode | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Store many values: the bulk path (one pipeline or transaction per batch where possible).

        Returns:
            The number of values stored
        """
        return self._get_backend().put_many(
            items,
            ttl=ttl,
            serialization_mode=serialization_mode,
            serialization_func=serialization_func,
            model=model,
            batch_size=batch_size,
        )

    def get_many(
        self,
        keys: Iterable[Any],
        serialization_mode: Mode | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> Generator[tuple[str, Any], None, None]:
        """Read many keys: the bulk path. Yields `(key, value)`, value None for missing keys."""
        yield from self._get_backend().get_many(keys, serialization_mode, deserialization_func, model, batch_size)

    def exists(self, key: Any) -> bool:
        """Check if the given `key` exists"""
        return self._get_backend().exists(key)

    def info(self, key: Any) -> Stats:
        """Get metadata for the given `key` (never reads the value).

        Returns:
            Key metadata
        """
        return to_stats(self._get_backend().info(key))

    def iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, **filters: Any
    ) -> Generator[Stats, None, None]:
        """The metadata of every matching key, from one listing where the backend can (SQL,
        Redis, S3, local folders, zip), not a lookup per key; `filters` as `iterate_keys` takes them."""
        backend = self._get_backend()
        for stats in backend.iterate_infos(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob, **filters):
            yield to_stats(stats)

    def info_many(self, keys: Iterable[Any], batch_size: int = 1000) -> Generator[tuple[str, Stats | None], None, None]:
        """The metadata of many keys, a batch at a time: `(key, Stats)`, None for a missing key."""
        for key, stats in self._get_backend().info_many(keys, batch_size=batch_size):
            yield key, None if stats is None else to_stats(stats)

    def get_key(self, key: Any, http_quoted: bool | None = False) -> str:
        """Return the backend's full key for `key` (the full uri on file-like stores)."""
        return self._get_backend().get_key(key, http_quoted=http_quoted)

    def ensure_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Merge the store's `backend_config` with `kwargs` (which win), dropping empty values."""
        return self._get_backend().ensure_kwargs(**kwargs)

    def iterate_keys(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        **filters: Any,
    ) -> Generator[str, None, None]:
        """Iterate through all the keys in the store based on given criteria.

        Criteria can be combined (e.g. include but exclude a subset). Given with a prefix, the
        glob is relative to the prefix (taken as a folder).

        Example:
            ```python
            for key in store.iterate_keys(prefix="dataset1", glob="*.pdf"):
                data = store.get(key, serialization_mode="raw")
                parse(data)
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            **filters: Further filters the backend layer knows (include, exclude, shard)

        Returns:
            The matching keys as a generator of strings
        """
        yield from self._get_backend().iterate_keys(prefix, exclude_prefix, glob, **filters)

    def iterate_values(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        serialization_mode: Mode | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, None]:
        """Iterate through all the values in the store based on given criteria.

        Example:
            ```python
            yield from store.iterate_values(prefix="dataset1", glob="*.pdf", model=MyModel)
            ```

        Returns:
            The matching values as a generator of any (serialized) type
        """
        yield from self._get_backend().iterate_values(
            prefix, exclude_prefix, glob, serialization_mode, deserialization_func, model, **kwargs
        )

    def checksum(self, key: Any, algorithm: str | None = DEFAULT_HASH_ALGORITHM, **kwargs: Any) -> str:
        """Get the checksum for the value at the given key, streaming the value.

        Args:
            key: Key relative to store base uri
            algorithm: Checksum algorithm from `hashlib` (default: "sha1")
            **kwargs: Pass through arguments to content retrieval

        Returns:
            The computed checksum
        """
        return self._get_backend().checksum(key, algorithm, **kwargs)

    def open(self, key: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Any:
        """Open the given key similar to built-in `open()`.

        Example:
            ```python
            store = get_store()
            with store.open("foo/bar.txt") as fh:
                return fh.read()
            ```

        Args:
            key: Key relative to store base uri
            mode: Open mode ("rb", "wb", "r", "w")
            **kwargs: Pass through arguments to backend

        Returns:
            The open handler
        """
        return self._get_backend().open(key, mode, **kwargs)

    def touch(self, key: Any, **kwargs: Any) -> datetime:
        """Store the current timestamp at the given key.

        Returns:
            The timestamp
        """
        return self._get_backend().touch(key, **kwargs)
