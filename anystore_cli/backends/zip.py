"""Zip archive backend (`*.zip`): append-only.

Keys can be added, never changed or deleted. A write copies the archive to a temporary file,
appends there and renames it over the original, so a killed write leaves the old archive
whole and readable. Writers take turns: a thread lock within a process and an exclusive
`flock` on a lock file next to the archive (`.~anystore-NAME.zip.lock`, kept) across processes,
and each reads the archive afresh under the lock, so concurrent writers never drop each
other's keys. The rewritten archive keeps the original's mode and group. Remote archives (any
fsspec uri) are read-only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Generator, Iterator
from datetime import datetime, timezone
from typing import IO, Any, ClassVar

from anystore_cli.errors import AlreadyExists, ReadOnlyError, StoreError, StoreNotFound
from anystore_cli.store.base import KEY_BATCH, BaseStore, Capabilities, KeyEntry
from anystore_cli.store.contract import batched
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.io import DEFAULT_MODE, copy_stream
from anystore_cli.store.options import Option
from anystore_cli.util.keys import is_canonical_key, make_key_filter


def split_zip_uri(uri: str) -> tuple[str, str]:
    """Split `file:///a/b.zip/inner/path` into the archive uri and the path inside it."""
    lower = uri.lower()
    index = lower.find(".zip/")
    if index < 0:
        return uri, ""
    return uri[: index + 4], uri[index + 5 :].strip("/")


def _entry_time(entry: zipfile.ZipInfo) -> datetime:
    """An entry's time: zip archives store local time without a zone (as `zipfile` writes it)."""
    return datetime(*entry.date_time).astimezone(timezone.utc)


LOCK_PREFIX = ".~anystore-"
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: str) -> threading.Lock:
    """The lock of this process's writers to the archive at `path` (a resolved path: one lock
    per archive, shared by every `ZipStore` on it)."""
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.get(path)
        if lock is None:
            lock = _THREAD_LOCKS[path] = threading.Lock()
        return lock


@contextlib.contextmanager
def archive_lock(path: str) -> Generator[None, None, None]:
    """Hold the exclusive write lock of the archive at `path` (a resolved path): one writer at a
    time, across threads (a thread lock) and processes (`flock` on `.~anystore-NAME.lock` in its
    folder).

    The lock file is never removed: removing it would let two writers lock two different files.
    """
    import fcntl

    folder, name = os.path.split(path)
    with _thread_lock(path):
        lock_path = os.path.join(folder, f"{LOCK_PREFIX}{name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


def _keep_owner_and_mode(reference: os.stat_result | None, path: str) -> None:
    """Give `path` the mode (and, where allowed, owner and group) of `reference`; a new
    archive gets the mode a plain `open()` would give it (0o666 less the umask)."""
    if reference is None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
        return
    for uid in (reference.st_uid, -1):
        try:
            os.chown(path, uid, reference.st_gid)
            break
        except OSError:
            continue
    os.chmod(path, stat.S_IMODE(reference.st_mode))


class ZipStore(BaseStore):
    """A store in a zip archive; append-only."""

    options: ClassVar[tuple[Option, ...]] = ()

    # zip times are in even seconds; a batch of the bulk loader copies the archive and reads
    # its directory: few and large (a load's batches are still bounded in bytes)
    capabilities: ClassVar[Capabilities] = Capabilities(append_only=True, mtime_precision=2.0, bulk_batch_keys=100_000)
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, zipfile.BadZipFile)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        archive, inner = split_zip_uri(self.uri)
        self.archive_uri = archive
        self._inner = f"{inner}/" if inner else ""
        self._local = archive.startswith("file://")
        self._path = archive[len("file://") :] if self._local else archive
        if not self._local:
            self.readonly = True

    def _name(self, key: str) -> str:
        return self._inner + key

    @contextlib.contextmanager
    def _archive(self) -> Generator[zipfile.ZipFile | None, None, None]:
        if self._local:
            if not os.path.exists(self._path):
                yield None
                return
            with zipfile.ZipFile(self._path, "r") as archive:
                yield archive
            return
        from anystore_cli.store.io import smart_open

        with smart_open(self.archive_uri, "rb", **self.ensure_kwargs()) as handle, zipfile.ZipFile(handle) as archive:
            yield archive

    def _archive_entry(self, archive: zipfile.ZipFile | None, key: str) -> zipfile.ZipInfo | None:
        if archive is None:
            return None
        try:
            return archive.getinfo(self._name(key))
        except KeyError:
            return None

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        with self._archive() as archive:
            entry = self._archive_entry(archive, key)
            if entry is None or archive is None:
                if raise_on_nonexist:
                    raise self._missing(key)
                return None
            data = archive.read(entry)
        return data if "b" in kwargs.get("mode", DEFAULT_MODE) else data.decode()

    @contextlib.contextmanager
    def _appender(self) -> Generator[zipfile.ZipFile, None, None]:
        """A copy of the archive opened for appending, renamed over the original on success."""
        if not self._local:
            raise ReadOnlyError(self._describe(None, "remote zip archives are read-only"))
        os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
        target = os.path.realpath(self._path)  # an archive reached through a symlink stays one
        with archive_lock(target):
            fd, tmp = tempfile.mkstemp(prefix=".~anystore-zip-", dir=os.path.dirname(target))
            os.close(fd)
            try:
                try:  # read afresh under the lock: the archive as the last writer left it
                    current: os.stat_result | None = os.stat(target)
                    shutil.copyfile(target, tmp)
                    mode = "a"
                except FileNotFoundError:
                    current, mode = None, "w"
                with zipfile.ZipFile(tmp, mode, compression=zipfile.ZIP_DEFLATED) as archive:
                    yield archive
                _keep_owner_and_mode(current, tmp)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)

    def _refuse_existing(self, archive: zipfile.ZipFile, key: str, no_clobber: bool) -> None:
        if self._name(key) in archive.NameToInfo:
            if no_clobber:
                raise AlreadyExists(self._describe(key, "already exists"))
            raise ReadOnlyError(self._describe(key, "already exists in an append-only zip store"))

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        with self._appender() as archive:
            self._refuse_existing(archive, key, no_clobber)
            archive.writestr(self._name(key), value)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        with self._appender() as archive:
            self._refuse_existing(archive, key, no_clobber)
            # a ZipInfo of our own: one made from a name would be stamped 1980-01-01
            info = zipfile.ZipInfo(self._name(key), date_time=time.localtime()[:6])
            info.compress_type = archive.compression
            with archive.open(info, "w", force_zip64=True) as handle:
                return copy_stream(source, handle)

    def _check_appends(self, keys: list[str]) -> None:
        """Nothing before the batch: `_put_many` refuses a key that exists, under the archive's
        lock, from one reading of its directory (a check per key here opened the archive once a
        key, which made a load quadratic)."""

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        with self._appender() as archive:
            for key, value in items:
                self._refuse_existing(archive, key, False)
                archive.writestr(self._name(key), value)

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        """The batch from one opening of the archive (not one a key)."""
        with self._archive() as archive:
            found = []
            for key in keys:
                entry = self._archive_entry(archive, key)
                found.append((key, None if entry is None or archive is None else archive.read(entry)))
        return iter(found)

    def _delete(self, key: str) -> bool:
        raise ReadOnlyError(self._describe(key, "cannot delete from an append-only zip store"))

    def _exists(self, key: str) -> bool:
        with self._archive() as archive:
            return self._archive_entry(archive, key) is not None

    def _info(self, key: str) -> BaseStats:
        with self._archive() as archive:
            entry = self._archive_entry(archive, key)
        if entry is None:
            raise self._missing(key)
        return _entry_stats(entry)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """The batch from one reading of the archive's directory."""
        with self._archive() as archive:
            entries = [self._archive_entry(archive, key) for key in keys]
        for key, entry in zip(keys, entries, strict=True):
            yield key, None if entry is None else _entry_stats(entry)

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        if "r" in mode:
            return self._reader(key, mode)
        return self._buffered_writer(key, mode)

    @contextlib.contextmanager
    def _reader(self, key: str, mode: str) -> Generator[IO[Any], None, None]:
        with self._archive() as archive:
            entry = self._archive_entry(archive, key)
            if entry is None or archive is None:
                raise self._missing(key)
            with archive.open(entry) as handle:
                if "b" in mode:
                    yield handle
                else:
                    import io

                    yield io.TextIOWrapper(handle, encoding="utf-8")

    @contextlib.contextmanager
    def _buffered_writer(self, key: str, mode: str) -> Generator[IO[Any], None, None]:
        with tempfile.TemporaryFile("w+b") as spool:
            if "b" in mode:
                yield spool
            else:
                import io

                text = io.TextIOWrapper(spool, encoding="utf-8")
                yield text
                text.flush()
                text.detach()
            spool.seek(0)
            self._write_stream(key, spool)

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """The listing from the archive's directory (`infolist`), with sizes and times."""
        for batch in batched(self._listing(prefix, exclude_prefix, glob), KEY_BATCH):
            if not detail:
                yield [key for key, _ in batch]
                continue
            entries = []
            for key, entry in batch:
                stamp = _entry_time(entry).timestamp()
                entries.append(KeyEntry(key, entry.file_size, stamp, None, stamp))
            yield entries

    def _listing(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None
    ) -> Iterator[tuple[str, zipfile.ZipInfo]]:
        """The matching keys and their archive entries."""
        match = make_key_filter(prefix, exclude_prefix, glob)
        size = len(self._inner)
        entries = self._directory()
        latest: dict[str, zipfile.ZipInfo] = {}
        for entry in entries:
            latest[entry.filename] = entry  # an archive may hold a name twice: one key, the last entry
        for name, entry in latest.items():
            if name.endswith("/") or not name.startswith(self._inner):
                continue
            key = name[size:]
            if is_canonical_key(key) and match(key):  # never list what `get` cannot read (`../x`, `a//b`)
                yield key, entry

    def _directory(self) -> list[zipfile.ZipInfo]:
        """The archive's entries, for a listing: an archive that is not there, or is not an
        archive, is an error (never an empty store).

        Raises:
            StoreNotFound: No archive at the path (a write creates it)
            StoreError: Something else is there
        """
        try:
            with self._archive() as archive:
                if archive is None:
                    if self.missing_is_empty:
                        return []
                    raise StoreNotFound(self._describe(None, "does not exist (nothing has been written to it)"))
                return archive.infolist()
        except FileNotFoundError:  # a remote archive
            if self.missing_is_empty:
                return []
            raise StoreNotFound(self._describe(None, "does not exist")) from None
        except IsADirectoryError:
            raise StoreError(self._describe(None, "is a folder, not a zip archive")) from None
        except zipfile.BadZipFile as exc:
            raise StoreError(self._describe(None, f"is not a zip archive ({exc})")) from None


def _entry_stats(entry: zipfile.ZipInfo) -> BaseStats:
    """An archive entry's size and time (one time per entry: local time without a zone)."""
    stamp = _entry_time(entry)
    return BaseStats.make(entry.file_size, stamp, stamp)
