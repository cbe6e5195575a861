"""The backend contract: the primitives a backend implements, their defaults, and what a
backend can do (`Capabilities`).

Primitives always receive normalised relative keys (see `util.keys`):

- `_read(key, raise_on_nonexist=True, **kwargs)`, `_write(key, value, ttl=None, no_clobber=False)`
- `_delete(key) -> bool`, `_exists(key)`, `_info(key) -> BaseStats`, `_open(key, mode)`
- `_list(prefix, exclude_prefix, glob, detail=False, md5=False)`: the one listing primitive,
  batches of keys (or of `KeyEntry` records with `detail`); every listing of the store
  (`iterate_keys`, `iterate_key_batches`, `iterate_entries`, `iterate_infos`, and above them
  `keys -l`, `dump`, `mirror`, `check`) is an adapter over it
- `_get_many(keys)`, `_put_many(items)`, `_info_many(keys)`: the batched reads and writes
- optional: `_stream`, `_pop`, `_write_stream`, `_server_copy` (a copy that stays on the server),
  `_checksum`

A backend lists either with `_list` or with `_iterate_keys` (then details are asked for in
batches through `_info_many`); the defaults below build each from the other, so a backend must
implement one of the two.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import IO, Any, ClassVar, TypeVar

from anystore_cli.errors import AlreadyExists, AnystoreError, DoesNotExist, ErrorText, ReadOnlyError, StoreError
from anystore_cli.store.entry import BaseStats, KeyEntry, entry_from_stats
from anystore_cli.store.io import DEFAULT_MODE
from anystore_cli.util.checksum import make_checksum
from anystore_cli.util.uri import mask_uri

INFO_BATCH = 1000
"""Keys whose metadata the generic bulk paths ask for at once"""
KEY_BATCH = 4096
"""Keys a listing hands over at once where the backend does not read them in pages itself"""


F = TypeVar("F", bound=Callable[..., Any])


def check_readonly(func: F) -> F:
    """Guard for read-only stores: decorate write methods with it."""

    @functools.wraps(func)
    def _check(store: Any, *args: Any, **kwargs: Any) -> Any:
        if store.readonly:
            raise ReadOnlyError(f"Store `{mask_uri(store.uri)}` is configured readonly")
        return func(store, *args, **kwargs)

    return _check  # type: ignore[return-value]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared once on its class (`capabilities`): services ask these,
    never the class's name."""

    ttl: bool = False
    """Keys expire after a ttl"""
    append_only: bool = False
    """Keys can be added but never changed or deleted (zip)"""
    server_copy: bool = False
    """`_server_copy` may copy a value without its bytes passing through this process (it still
    answers None where the two stores do not share a server)"""
    leases: str | None = None
    """The backend's atomic primitive to hold a lease (`anystore lock`), on some or all of its
    stores: a `LeaseBackend` class as `module:Class` (None: it has none)"""
    md5: bool = False
    """The listing may carry each value's MD5 without reading it through this process (an S3
    ETag of one part, computed by PostgreSQL or MySQL)"""
    mtime_precision: float = 0.0
    """Seconds by which a stored modification time may lag the true one (S3: 1, zip: 2)"""
    writes_wait: bool = True
    """Writes wait on a server or the disk: the bulk loader overlaps them with parsing its input
    (for a store in this process's memory, a second thread only adds switching)"""
    bulk_batch_keys: int = 1000
    """Keys the bulk loader hands to one `put_many` call (one transaction, pipeline or request)"""
    listing_walks_all: bool = False
    """Listing any prefix walks every key of the database (Redis SCAN with MATCH): a copy into
    such a store asks about the keys of each batch (`_info_many`, one round trip) instead of
    listing the target, so its cost follows the keys copied, not the size of the database"""


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """`items` in lists of at most `size` (never empty)."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class BackendContract:
    """The primitives with their defaults, and the translation of backend errors.

    The host class (`BaseStore`) supplies `uri`; a backend overrides what it can do better.
    """

    uri: Any
    capabilities: ClassVar[Capabilities] = Capabilities()
    """What the backend can do"""
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)
    """Exception types of the backend's client that mean the store failed"""
    missing_is_empty: ClassVar[bool] = False
    """A store that is not there lists as empty instead of raising `StoreNotFound`: the library
    face's rule (anystore lists a folder nothing was written to as empty); the command line
    keeps it off, so a mistyped store is an error"""

    # ---- errors ---------------------------------------------------------------------------

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

    # ---- single keys ----------------------------------------------------------------------

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

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        raise NotImplementedError

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

    def _checksum(self, key: str, algorithm: str) -> str:
        with self._open(key, mode="rb") as handle:
            return make_checksum(handle, algorithm)

    def _no_clobber_check(self, key: str, no_clobber: bool) -> None:
        if no_clobber and self._exists(key):
            raise AlreadyExists(self._describe(key, "already exists"))

    def _server_copy(self, source: Any, key: str, size: int | None, ttl: int | None) -> int | None:
        """Copy `key` from `source` without its bytes passing through this process; the bytes
        copied, or None where the backend cannot (then the value is streamed)."""
        return None

    def _entry(self, key: str) -> KeyEntry | None:
        """One key's entry from `_info`, or None if it is not there."""
        try:
            stats = self._info(key)
        except (DoesNotExist, FileNotFoundError):
            return None
        return entry_from_stats(key, stats)

    # ---- batches --------------------------------------------------------------------------

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

    # ---- the listing ------------------------------------------------------------------------

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """The matching keys in batches (a folder or a page each where the backend reads them so,
        never empty): key strings, or with `detail` a `KeyEntry` each (size, times, and the MD5
        with `md5` where `capabilities.md5`). An entry whose `kind` is set names something
        that is not a value (a Redis hash, say).

        This default lists `_iterate_keys` and asks `_info_many` about each batch; a key gone
        between the two is left out.
        """
        if not detail:
            yield from batched(self._iterate_keys(prefix, exclude_prefix, glob), KEY_BATCH)
            return
        server_md5 = md5 and self.capabilities.md5 and self._overrides("_iterate_entries")
        if self._overrides("_iterate_infos") and not server_md5:
            infos = self._iterate_infos(prefix, exclude_prefix, glob)
            for batch in batched(infos, KEY_BATCH):
                yield [entry_from_stats(key, stats) for key, stats in batch]
            return
        if server_md5:
            yield from batched(self._iterate_entries(prefix, exclude_prefix, glob, md5=md5), KEY_BATCH)
            return
        for keys in batched(self._iterate_keys(prefix, exclude_prefix, glob), INFO_BATCH):
            found = [entry_from_stats(key, stats) for key, stats in self._info_many(keys) if stats is not None]
            if found:
                yield found

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        """The matching keys one by one (an adapter over `_list`)."""
        for batch in self._list(prefix, exclude_prefix, glob):
            yield from batch

    # Hooks of backends that list key by key: `_list` above uses them where a backend has them
    # (a listing query with metadata, a server-side MD5), so those backends keep their one
    # round trip. They have no defaults of their own.
    _iterate_infos: Any = None
    _iterate_entries: Any = None

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name, None) is not None


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


__all__ = [
    "INFO_BATCH",
    "KEY_BATCH",
    "BackendContract",
    "Capabilities",
    "TTLMixin",
    "VirtualIOMixin",
    "batched",
    "check_readonly",
]
