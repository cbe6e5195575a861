"""The store interface every backend implements.

Public methods (`get`, `put`, `open`, ...) validate keys, apply serialization and readonly
rules, and translate backend errors into the core's exception types. Backends implement the
underscore primitives, which always receive normalised relative keys (see `core.keys`):

- `_read(key, raise_on_nonexist=True, **kwargs)`, `_write(key, value, ttl=None, no_clobber=False)`
- `_delete(key) -> bool`, `_exists(key)`, `_info(key) -> BaseStats`
- `_iterate_keys(prefix, exclude_prefix, glob)`, `_open(key, mode)`
- optional faster paths: `_stream`, `_pop`, `_write_stream`, `_put_many`, `_get_many`,
  `_iterate_entries` (keys with size and time from one listing), `_server_copy` (a copy that
  stays on the server), and for metadata in bulk `_iterate_infos(prefix, exclude_prefix, glob)`
  (the listing with sizes and timestamps) and `_info_many(keys)`

The filters beyond prefix, exclude_prefix and glob (`include`, `exclude`, `shard`, `filters`)
are applied here, once for every backend, by `core.keys.make_key_filter`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from io import BytesIO, StringIO
from typing import IO, Any, ClassVar, NamedTuple, TypeVar

from anystore_cli.errors import (
    AlreadyExists,
    AnystoreError,
    DoesNotExist,
    ErrorText,
    InvalidData,
    ReadOnlyError,
    StoreError,
)
from anystore_cli.store.io import DEFAULT_MODE, copy_stream
from anystore_cli.store.model import BaseStats, Stats, StoreModel
from anystore_cli.util.checksum import DEFAULT_HASH_ALGORITHM, make_checksum
from anystore_cli.util.keys import all_canonical, has_extra_filters, make_key_filter, normalize_key, normalize_prefix
from anystore_cli.util.serialize import from_store, to_store
from anystore_cli.util.uri import clean_dict, mask_uri

F = TypeVar("F", bound=Callable[..., Any])

INFO_BATCH = 1000
"""Keys whose metadata the generic bulk paths ask for at once"""
KEY_BATCH = 4096
"""Keys a listing hands over at once where the backend does not read them in pages itself"""


def check_readonly(func: F) -> F:
    """Guard for read-only stores: decorate write methods with it."""

    @functools.wraps(func)
    def _check(store: BaseStore, *args: Any, **kwargs: Any) -> Any:
        if store.readonly:
            raise ReadOnlyError(f"Store `{mask_uri(store.uri)}` is configured readonly")
        return func(store, *args, **kwargs)

    return _check  # type: ignore[return-value]


def _secret_name(name: Any) -> bool:
    """Tell whether a backend option holds a secret (its declaration, else its name)."""
    from anystore_cli.store.options import is_secret_name

    return is_secret_name(name)


class KeyEntry(NamedTuple):
    """A key with what a listing knows about its value (None: the store does not say)."""

    key: str
    size: int | None = None
    """Bytes"""
    mtime: float | None = None
    """Last change, epoch seconds"""
    md5: str | None = None
    """Hex MD5 of the value, where the store keeps one (an S3 ETag of one part) or computes it
    on the server (PostgreSQL, MySQL) when asked for"""


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class VirtualIOMixin:
    """`open()` for backends that are not file-like: values are buffered in memory."""

    @contextlib.contextmanager
    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Generator[IO[Any], None, None]:
        writer = "w" in mode or "a" in mode
        handler: BytesIO | StringIO
        if not writer:
            content = self._read(key, raise_on_nonexist=True)  # type: ignore[attr-defined]
            if "b" in mode:
                handler = BytesIO(content if isinstance(content, bytes) else content.encode())
            else:
                handler = StringIO(content.decode() if isinstance(content, bytes) else content)
        else:
            handler = BytesIO() if "b" in mode else StringIO()
        try:
            yield handler
        except BaseException:
            handler.close()
            raise
        if writer:
            value = handler.getvalue()
            self._write(key, value if isinstance(value, bytes) else value.encode(), **kwargs)  # type: ignore[attr-defined]
        handler.close()


class BaseStore(StoreModel):
    """The store interface, whatever the backend."""

    supports_ttl: ClassVar[bool] = False
    """The backend expires keys after a ttl"""
    append_only: ClassVar[bool] = False
    """Keys can be added but never changed or deleted (zip)"""
    bulk_batch_keys: ClassVar[int] = 1000
    """Keys the bulk loader hands to one `put_many` call (one transaction, pipeline or request)"""
    writes_wait: ClassVar[bool] = True
    """Writes wait on a server or the disk: the bulk loader overlaps them with parsing its input
    (for a store in this process's memory, a second thread only adds switching)"""
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)
    """Exception types of the backend's client that mean the store failed"""
    mtime_precision: ClassVar[float] = 0.0
    """Seconds by which a stored modification time may lag the true one (S3: 1, zip: 2)"""
    missing_is_empty: ClassVar[bool] = False
    """A store that is not there lists as empty instead of raising `StoreNotFound`: the library
    face's rule (anystore lists a folder nothing was written to as empty); the command line
    keeps it off, so a mistyped store is an error"""

    def check_ttl(self, ttl: int | None = None, what: str = "`--ttl`") -> None:
        """Refuse an expiry this store cannot honour: the command line's rule. (The library face
        writes without expiry there, as anystore's does.)

        Args:
            ttl: The ttl asked for (0 or None: none, then the store's own `default_ttl` is checked)
            what: What asked for it, for the message

        Raises:
            InvalidData: If a ttl is asked for or configured and the backend cannot expire keys
        """
        if self.supports_ttl:
            return
        if not ttl and self.default_ttl:
            ttl, what = self.default_ttl, "`default_ttl`"
        if ttl:
            raise InvalidData(f"{what} on store `{mask_uri(self.uri)}`: it cannot expire keys (refused, not ignored)")

    def __repr__(self) -> str:
        """The store's fields, with the uri's password and secret-looking backend options masked."""
        fields = []
        for name in self.model_fields:
            value = getattr(self, name)
            if name == "uri":
                value = mask_uri(value)
            elif name == "backend_config" and isinstance(value, dict):
                value = {k: "***" if value[k] not in (None, "") and _secret_name(k) else v for k, v in value.items()}
            fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    # ---- key handling -------------------------------------------------------------------

    def _key(self, key: Any) -> str:
        return normalize_key(key)

    def _get_key_prefix(self) -> str:
        return ""

    def get_key(self, key: Any, http_quoted: bool | None = False) -> str:
        """Return the backend's full key for `key` (the full uri on file-like stores)."""
        prefix = self._get_key_prefix()
        key = self._key(key)
        return f"{prefix}/{key}" if prefix else key

    def ensure_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Merge the store's `backend_config` with `kwargs` (which win), dropping empty values."""
        return {**clean_dict(self.backend_config), **clean_dict(kwargs)}

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Generator[None, None, None]:
        """Translate backend exceptions into the core's types, naming key and store."""
        try:
            yield
        except AnystoreError:
            raise
        except FileNotFoundError as exc:
            raise DoesNotExist(self._describe(key, "does not exist")) from exc
        except PermissionError as exc:
            raise StoreError(self._describe(key, f"permission denied ({exc.strerror or exc})")) from exc
        except self.backend_errors as exc:
            raise StoreError(self._describe(key, f"store failed: {mask_uri(exc)}")) from exc

    def _describe(self, key: str | None, what: str) -> str:
        # an ErrorText: the error raised with it carries key and store as attributes
        store = mask_uri(self.uri)
        if key is None:
            return ErrorText(f"Store `{store}`: {what}", None, store)
        return ErrorText(f"Key `{key}` in store `{store}`: {what}", key, store)

    def _missing(self, key: str) -> DoesNotExist:
        return DoesNotExist(self._describe(key, "does not exist"))

    # ---- primitives (backends override) -----------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", DEFAULT_MODE)
        try:
            with self._open(key, mode=mode) as handle:
                return handle.read()
        except (FileNotFoundError, DoesNotExist):
            if raise_on_nonexist:
                raise self._missing(key) from None
            return None

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        raise NotImplementedError

    def _delete(self, key: str) -> bool:
        raise NotImplementedError

    def _exists(self, key: str) -> bool:
        raise NotImplementedError

    def _info(self, key: str) -> BaseStats:
        raise NotImplementedError

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        raise NotImplementedError

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _iterate_key_batches(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[list[str]]:
        """The listing in lists of keys (backends that read a folder or a page at a time hand
        those over as they are); this fallback cuts `_iterate_keys` into lists."""
        keys = self._iterate_keys(prefix, exclude_prefix, glob)
        while batch := list(itertools.islice(keys, KEY_BATCH)):
            yield batch

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        """Keys with size and time; this fallback asks `_info` about each listed key."""
        for key in self._iterate_keys(prefix, exclude_prefix, glob):
            entry = self._entry(key)
            if entry is not None:
                yield entry

    def _entry(self, key: str) -> KeyEntry | None:
        try:
            stats = self._info(key)
        except (DoesNotExist, FileNotFoundError):
            return None  # gone between listing and asking
        return KeyEntry(key, stats.size, _epoch(stats.updated_at or stats.created_at))

    def _server_copy(self, source: BaseStore, key: str, size: int | None, ttl: int | None) -> int | None:
        """Copy `key` from `source` without its bytes passing through this process; the bytes
        copied, or None where the backend cannot (then the value is streamed)."""
        return None

    def _stream(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Iterator[Any]:
        with self._open(key, mode=mode) as handle:
            yield from handle

    def _pop(self, key: str) -> bytes:
        value = self._read(key, raise_on_nonexist=True)
        if not self._delete(key):
            raise self._missing(key)
        return value

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        data = source.read()
        self._write(key, data, ttl=ttl, no_clobber=no_clobber)
        return len(data)

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        for key, value in items:
            self._write(key, value, ttl=ttl)

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        for key in keys:
            yield key, self._read(key, raise_on_nonexist=False)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """The metadata of `keys`, in their order, None for a missing key (one `_info` each here;
        backends answer a batch in one round trip)."""
        for key in keys:
            try:
                yield key, self._info(key)
            except (DoesNotExist, FileNotFoundError):
                yield key, None

    def _iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[tuple[str, BaseStats]]:
        """The listing with each key's metadata: the keys, asked about in batches (backends whose
        listing carries sizes and timestamps answer from it)."""
        keys = self._iterate_keys(prefix, exclude_prefix, glob)
        while batch := list(itertools.islice(keys, INFO_BATCH)):
            for key, stats in self._info_many(batch):
                if stats is not None:  # gone between listing and asking
                    yield key, stats

    def _checksum(self, key: str, algorithm: str) -> str:
        with self._open(key, mode="rb") as handle:
            return make_checksum(handle, algorithm)

    def _no_clobber_check(self, key: str, no_clobber: bool) -> None:
        if no_clobber and self._exists(key):
            raise AlreadyExists(self._describe(key, "already exists"))

    # ---- public api -----------------------------------------------------------------------

    def get(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Any:
        """Get a value from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent,
                overrides store settings
            serialization_mode: Deserialize the result ("auto", "raw", "pickle", "json"),
                overrides store settings
            deserialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic model to validate with (ignores the two above)
            **kwargs: Passed to the backend (`mode="r"` reads text)

        Returns:
            The (deserialized) value, or None for a missing key when not raising
        """
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        key = self._key(key)
        # per-call options only: backend_config configures the backend, not each read
        kwargs = clean_dict(kwargs)
        with self._errors(key):
            value = self._read(key, raise_on_nonexist=raise_on_nonexist, **kwargs)
        if value is None:
            return None
        return from_store(
            value,
            serialization_mode or self.serialization_mode,
            deserialization_func=deserialization_func or self.deserialization_func,
            model=model or self.model,
        )

    @check_readonly
    def pop(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        """Retrieve the value for the given key and remove it (atomically where the backend can).

        Args:
            key: Key relative to store base uri
            *args: Any valid arguments for the store's `get` function
            **kwargs: Any valid arguments for the store's `get` function

        Returns:
            The (deserialized) value
        """
        names = ("raise_on_nonexist", "serialization_mode", "deserialization_func", "model")
        options = dict(zip(names, args, strict=False))
        options.update({k: v for k, v in kwargs.items() if k in names})
        raise_on_nonexist = options.get("raise_on_nonexist")
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        try:
            value = self.pop_bytes(key)
        except DoesNotExist:
            if raise_on_nonexist:
                raise
            return None
        return from_store(
            value,
            options.get("serialization_mode") or self.serialization_mode,
            deserialization_func=options.get("deserialization_func") or self.deserialization_func,
            model=options.get("model") or self.model,
        )

    @check_readonly
    def pop_bytes(self, key: Any) -> bytes:
        """Remove a key and return its stored bytes as they are (no serialization mode, function
        or model applied), atomically where the backend can.

        Raises:
            DoesNotExist: The key is not there
        """
        if self.append_only:
            raise ReadOnlyError(self._describe(str(key), "cannot delete from an append-only store"))
        key = self._key(key)
        with self._errors(key):
            return self._pop(key)

    @check_readonly
    def delete(self, key: Any, ignore_errors: bool = False) -> bool:
        """Delete the content at the given key.

        Args:
            key: Key relative to store base uri
            ignore_errors: Ignore exceptions if deletion fails

        Returns:
            True if the key existed
        """
        try:
            key = self._key(key)
            if self.append_only:
                raise ReadOnlyError(self._describe(key, "cannot delete from an append-only store"))
            with self._errors(key):
                return bool(self._delete(key))
        except Exception:
            if not ignore_errors:
                raise
            return False

    def stream(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, None]:
        """Stream a value line by line from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent
            serialization_mode: Deserialize each line ("auto", "raw", "pickle", "json")
            deserialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic model to validate each line with
            **kwargs: Passed to the backend (`mode="r"` yields text lines)

        Yields:
            The (deserialized) values line by line

        Raises:
            DoesNotExist: If key doesn't exist and raise_on_nonexist=True
        """
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        key = self._key(key)
        mode = serialization_mode or self.serialization_mode
        deserialize = deserialization_func or self.deserialization_func
        model = model or self.model
        try:
            with self._errors(key):
                for line in self._stream(key, mode=kwargs.get("mode", DEFAULT_MODE)):
                    yield from_store(line, mode, deserialization_func=deserialize, model=model)
        except DoesNotExist:
            if raise_on_nonexist:
                raise
            return

    @check_readonly
    def put(
        self,
        key: Any,
        value: Any,
        serialization_mode: str | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        ttl: int | None = None,
        no_clobber: bool = False,
        **kwargs: Any,
    ) -> None:
        """Store a value at the given key.

        Args:
            key: Key relative to store base uri
            value: The content
            serialization_mode: Serialize value prior to storing ("auto", "raw", "pickle",
                "json"), overrides store settings
            serialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic serialization model
            ttl: Time to live (in seconds) for that key if the backend supports it
            no_clobber: Raise `AlreadyExists` instead of overwriting an existing key
        """
        if value is None and not self.store_none_values:
            return
        key = self._key(key)
        data = to_store(
            value,
            serialization_mode or self.serialization_mode,
            serialization_func=serialization_func or self.serialization_func,
            model=model or self.model,
        )
        ttl = ttl or self.default_ttl or None
        self._check_append(key, no_clobber)
        with self._errors(key):
            self._write(key, data, ttl=ttl, no_clobber=no_clobber)

    def _check_append(self, key: str, no_clobber: bool) -> None:
        if self.append_only and not no_clobber and self._exists(key):
            raise ReadOnlyError(self._describe(key, "already exists in an append-only store"))

    def _check_appends(self, keys: list[str]) -> None:
        """Refuse a batch of an append-only store that would overwrite a key (a backend whose
        `_put_many` checks under its own lock overrides this with nothing)."""
        for key in keys:
            self._check_append(key, False)

    @check_readonly
    def put_stream(self, key: Any, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        """Store the bytes of a binary stream at `key`, in chunks where the backend can.

        A failed or interrupted write leaves the old value (or no key).

        Args:
            key: Key relative to store base uri
            source: Binary file-like object to read from
            ttl: Time to live (in seconds) if the backend supports it
            no_clobber: Raise `AlreadyExists` instead of overwriting an existing key

        Returns:
            The number of bytes stored
        """
        key = self._key(key)
        self._check_append(key, no_clobber)
        with self._errors(key):
            return self._write_stream(key, source, ttl=ttl or self.default_ttl or None, no_clobber=no_clobber)

    @check_readonly
    def put_many(
        self,
        items: Iterable[tuple[Any, Any]] | dict[Any, Any],
        ttl: int | None = None,
        serialization_mode: str | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Store many values: the bulk path (one pipeline or transaction per batch where possible).

        Args:
            items: (key, value) pairs or a dict
            ttl: Time to live (in seconds) if the backend supports it
            serialization_mode: Serialize values prior to storing
            serialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic serialization model
            batch_size: Number of values written per batch

        Returns:
            The number of values stored
        """
        pairs = items.items() if isinstance(items, dict) else items
        mode = serialization_mode or self.serialization_mode
        func = serialization_func or self.serialization_func
        model = model or self.model
        ttl = ttl or self.default_ttl or None
        raw = mode == "raw" and func is None and model is None
        if raw and type(pairs) is list and type(self)._key is BaseStore._key:
            # the bulk loader's case, a list of (canonical key, bytes): each batch is checked in
            # a few C-level scans and handed on as it is; a batch that needs converting or
            # normalising takes the per-key path
            count, step = 0, max(batch_size, 1)
            for start in range(0, len(pairs), step):
                chunk = pairs[start : start + step]
                try:
                    keys = [key for key, _ in chunk]
                    values = [value for _, value in chunk]
                except (TypeError, ValueError):  # not pairs: the per-key path says what is wrong
                    keys = values = []
                if keys and set(map(type, values)) == {bytes} and all_canonical(keys):
                    count += self._flush_batch(chunk, ttl)
                else:
                    count += self._put_pairs(chunk, ttl, raw, mode, func, model, batch_size)
            return count
        return self._put_pairs(pairs, ttl, raw, mode, func, model, batch_size)

    def _put_pairs(
        self,
        pairs: Iterable[tuple[Any, Any]],
        ttl: int | None,
        raw: bool,
        mode: str | None,
        func: Callable | None,
        model: Any | None,
        batch_size: int,
    ) -> int:
        """`put_many`'s per-key path: normalise each key and convert each value, in batches."""
        count = 0
        batch: list[tuple[str, bytes]] = []
        for key, value in pairs:
            if value is None and not self.store_none_values:
                continue
            if raw and type(value) is bytes:  # nothing to convert
                batch.append((self._key(key), value))
            else:
                batch.append((self._key(key), to_store(value, mode, serialization_func=func, model=model)))
            if len(batch) >= batch_size:
                count += self._flush_batch(batch, ttl)
                batch = []
        if batch:
            count += self._flush_batch(batch, ttl)
        return count

    def _flush_batch(self, batch: list[tuple[str, bytes]], ttl: int | None) -> int:
        if self.append_only:
            self._check_appends([key for key, _ in batch])
        with self._errors(batch[0][0] if len(batch) == 1 else None):
            self._put_many(batch, ttl=ttl)
        return len(batch)

    def get_many(
        self,
        keys: Iterable[Any],
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> Generator[tuple[str, Any], None, None]:
        """Read many keys: the bulk path. Yields `(key, value)`, value None for missing keys."""
        mode = serialization_mode or self.serialization_mode
        func = deserialization_func or self.deserialization_func
        model = model or self.model
        batch: list[str] = []

        def _flush() -> Generator[tuple[str, Any], None, None]:
            with self._errors(None):
                results = list(self._get_many(batch))
            for key, value in results:
                yield key, None if value is None else from_store(value, mode, deserialization_func=func, model=model)

        for key in keys:
            batch.append(self._key(key))
            if len(batch) >= batch_size:
                yield from _flush()
                batch = []
        if batch:
            yield from _flush()

    def exists(self, key: Any) -> bool:
        """Check if the given `key` exists"""
        key = self._key(key)
        with self._errors(key):
            return bool(self._exists(key))

    def info(self, key: Any) -> Stats:
        """Get metadata for the given `key` (never reads the value).

        Returns:
            Key metadata

        Raises:
            DoesNotExist: If the key does not exist
        """
        key = self._key(key)
        with self._errors(key):
            stats = self._info(key)
        return self._stats(key, stats)

    def _stats(self, key: str, stats: BaseStats) -> Stats:
        """The public metadata of `key` from the backend's `BaseStats`."""
        return Stats.build(key, str(self.uri), stats)

    def info_many(
        self, keys: Iterable[Any], batch_size: int = INFO_BATCH
    ) -> Generator[tuple[str, Stats | None], None, None]:
        """Get the metadata of many keys: the bulk path (one query or pipeline a batch where the
        backend can). Never reads the values.

        Args:
            keys: Keys relative to store base uri
            batch_size: Number of keys asked about at once

        Yields:
            `(key, Stats)` in the order of `keys`, `(key, None)` for a key that does not exist
        """
        checked = (self._key(key) for key in keys)
        while batch := list(itertools.islice(checked, batch_size)):
            with self._errors(batch[0] if len(batch) == 1 else None):
                found = list(self._info_many(batch))
            for key, stats in found:
                yield key, None if stats is None else self._stats(key, stats)

    def iterate_infos(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        shard: str | tuple[int, int] | None = None,
        filters: Iterable[str] | None = None,
    ) -> Generator[Stats, None, None]:
        """Iterate through the metadata of the keys matching the criteria of `iterate_keys`.

        The listing's own metadata where the backend has it (S3, SQL, zip, local folders),
        else the keys' metadata asked for in batches: far fewer round trips than `info` per key.

        Example:
            ```python
            total = sum(stats.size for stats in store.iterate_infos(prefix="logs/"))
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as `iterate_keys` takes them
            exclude: Globs of keys to leave out
            shard: Only the keys of shard `"I/N"`
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"`

        Yields:
            The metadata (`Stats`) of each matching key, in listing order
        """
        extra = self._extra_filter(include, exclude, shard, filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            for key, stats in self._iterate_infos(prefix or None, exclude_prefix or None, glob or None):
                if extra is None or extra(key):
                    yield self._stats(key, stats)

    def iterate_keys(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        shard: str | tuple[int, int] | None = None,
        filters: Iterable[str] | None = None,
    ) -> Generator[str, None, None]:
        """Iterate through all the keys in the store based on given criteria.

        Criteria can be combined (e.g. include but exclude a subset). `prefix` is a literal
        string prefix, `glob` a path glob matched against the whole key (`*` within one
        segment, `**` across segments).

        Example:
            ```python
            for key in store.iterate_keys(prefix="dataset1/", glob="**/*.pdf"):
                data = store.get(key, serialization_mode="raw")
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as rclone's `--include` (see `core.keys`)
            exclude: Globs of keys to leave out, as rclone's `--exclude`
            shard: Only the keys of shard `"I/N"` (or `(I, N)`): a stable hash of the key
                modulo N, so N callers with shards 0..N-1 see every key exactly once
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"` (the first that matches decides),
                tried before `include` and `exclude`

        Returns:
            The matching keys as a generator of strings
        """
        extra = self._extra_filter(include, exclude, shard, filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            keys = self._iterate_keys(prefix or None, exclude_prefix or None, glob or None)
            yield from keys if extra is None else (key for key in keys if extra(key))

    def iterate_key_batches(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        shard: str | tuple[int, int] | None = None,
        filters: Iterable[str] | None = None,
    ) -> Generator[list[str], None, None]:
        """The keys of `iterate_keys`, in the same order, as lists (one folder or one page of the
        listing each, never empty): the fast way to move many keys along.

        Example:
            ```python
            for batch in store.iterate_key_batches(prefix="logs/"):
                sys.stdout.write("\\n".join(batch) + "\\n")
            ```

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as `iterate_keys` takes them
            exclude: Globs of keys to leave out
            shard: Only the keys of shard `"I/N"`
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"`

        Yields:
            Lists of matching keys
        """
        extra = self._extra_filter(include, exclude, shard, filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            for batch in self._iterate_key_batches(prefix or None, exclude_prefix or None, glob or None):
                if extra is not None:
                    batch = [key for key in batch if extra(key)]
                if batch:
                    yield batch

    def _extra_filter(
        self, include: Any = None, exclude: Any = None, shard: Any = None, filters: Any = None
    ) -> Callable[[str], bool] | None:
        if not has_extra_filters(include, exclude, shard, filters):
            return None
        return make_key_filter(include=include, exclude=exclude, shard=shard, filters=filters)

    def iterate_entries(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        shard: str | tuple[int, int] | None = None,
        filters: Iterable[str] | None = None,
        md5: bool = False,
    ) -> Generator[KeyEntry, None, None]:
        """Iterate through the matching keys with their size and modification time.

        One listing where the backend gives both (local folders, S3, SQL, zip, memory; Redis
        asks in pipelined batches); the criteria are those of `iterate_keys`.

        Args:
            md5: Also give the MD5 where the store has it without reading the value through
                this process (an S3 ETag of a single-part upload; computed by PostgreSQL or
                MySQL); None elsewhere

        Returns:
            `KeyEntry(key, size, mtime, md5)` tuples; None where the store does not know
        """
        extra = self._extra_filter(include, exclude, shard, filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            entries = self._iterate_entries(prefix or None, exclude_prefix or None, glob or None, md5=md5)
            yield from entries if extra is None else (entry for entry in entries if extra(entry.key))

    def entry(self, key: Any) -> KeyEntry | None:
        """The `KeyEntry` of one key (size and modification time), or None if it does not exist."""
        key = self._key(key)
        with self._errors(key):
            return self._entry(key)

    @check_readonly
    def server_copy(self, source: BaseStore, key: Any, size: int | None = None, ttl: int | None = None) -> int | None:
        """Copy `key` from `source` to this store on the server, where the backend can: S3 to S3
        on the same endpoint (CopyObject), tables of one SQL database (INSERT ... SELECT), Redis
        databases of one server (COPY).

        Args:
            source: The store to copy from
            key: The key (the same in both stores)
            size: The value's size if known (saves a request on S3)
            ttl: Time to live (in seconds) if the backend supports it

        Returns:
            The bytes copied, or None when no server-side copy is possible (nothing was done)
        """
        key = self._key(key)
        self._check_append(key, False)
        with self._errors(key):
            return self._server_copy(source, key, size, ttl or self.default_ttl or None)

    def iterate_values(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        serialization_mode: str | None = None,
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
            The matching values as a generator of any (deserialized) type
        """
        keys = self.iterate_keys(prefix, exclude_prefix, glob)
        for _, value in self.get_many(keys, serialization_mode, deserialization_func, model):
            if value is not None or self.store_none_values:
                yield value

    def checksum(self, key: Any, algorithm: str | None = DEFAULT_HASH_ALGORITHM, **kwargs: Any) -> str:
        """Get the checksum for the value at the given key, streaming the value.

        Args:
            key: Key relative to store base uri
            algorithm: Checksum algorithm from `hashlib` (default: "sha1")

        Returns:
            The hex digest
        """
        from anystore_cli.util.checksum import get_hasher

        get_hasher(algorithm)  # unknown algorithm: InvalidData before any I/O
        key = self._key(key)
        with self._errors(key):
            return self._checksum(key, algorithm or DEFAULT_HASH_ALGORITHM)

    def open(self, key: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Any:
        """Open the given key similar to built-in `open()`.

        Writes become visible only when the handle is closed without an error.

        Example:
            ```python
            with store.open("foo/bar.txt", "r") as fh:
                text = fh.read()
            ```

        Args:
            key: Key relative to store base uri
            mode: Open mode ("rb", "wb", "r", "w")

        Returns:
            A context manager giving the file-like handle
        """
        mode = mode or DEFAULT_MODE
        writing = "w" in mode or "a" in mode
        if self.readonly and writing:
            raise ReadOnlyError(f"Store `{mask_uri(self.uri)}` is configured readonly")
        key = self._key(key)
        if writing:
            self._check_append(key, False)
        return _GuardedOpen(self, key, mode)

    @check_readonly
    def touch(self, key: Any, **kwargs: Any) -> datetime:
        """Store the current timestamp at the given key.

        Args:
            key: Key relative to store base uri
            **kwargs: Any valid arguments for the store's `put` function

        Returns:
            The timestamp
        """
        now = datetime.now()
        self.put(key, now, **kwargs)
        return now


class _GuardedOpen:
    """Context manager around a backend's `_open` that translates its errors."""

    def __init__(self, store: BaseStore, key: str, mode: str) -> None:
        self.store, self.key, self.mode = store, key, mode
        self._cm: Any = None

    def __enter__(self) -> IO[Any]:
        with self.store._errors(self.key):
            self._cm = self.store._open(self.key, mode=self.mode)
            return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        with self.store._errors(self.key):
            return self._cm.__exit__(*exc)


class TTLMixin:
    """Expiry bookkeeping for backends that keep their own timestamps."""

    _lock = threading.Lock()

    @staticmethod
    def expires_at(ttl: int | None) -> float | None:
        """The absolute expiry (epoch seconds) for a ttl in seconds, or None."""
        return time.time() + ttl if ttl else None

    @staticmethod
    def is_expired(expires: float | None) -> bool:
        """Tell whether an absolute expiry has passed."""
        return expires is not None and expires <= time.time()


def as_backend(store: Any) -> Any:
    """The backend object behind a library store (`anystore_cli.core`, which wraps one); a
    backend, a uri or anything else passes unchanged."""
    unwrap = getattr(store, "_get_backend", None)
    return unwrap() if unwrap is not None else store


def copy_value(source: BaseStore, key: str, target: BaseStore, ttl: int | None = None, size: int | None = None) -> int:
    """Copy one key's bytes from `source` to `target`: on the server where the backends can,
    else streaming through this process; return the bytes copied."""
    copied = target.server_copy(source, key, size=size, ttl=ttl)
    if copied is not None:
        return copied
    with source.open(key, "rb") as handle:
        return target.put_stream(key, handle, ttl=ttl)


__all__ = ["BaseStore", "KeyEntry", "VirtualIOMixin", "check_readonly", "copy_stream", "copy_value"]
