"""Local folder backend: plain `os` calls, no fsspec.

Writes are atomic: the value goes to a hidden temporary file in the target's folder, which is
renamed over the target (fsync'ed first with backend_config `fsync=true`). Readers see the old
value or the new one; temporary files never show up as keys.

Every operation on a key walks down from the store's folder one name at a time, relative to
open folder descriptors (`os.open(name, O_NOFOLLOW, dir_fd=...)`, `mkdir`, `rename`, `unlink`
and `rmdir` with `dir_fd`), so a folder swapped for a symlink while a command runs can never
send a read, a write, a temporary file or a delete outside the store. A symlink inside the store
is followed only when its target, resolved name by name within the store, stays inside. Values
are regular files: a FIFO, device or socket at a key is refused, never opened for reading.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import IO, Any, ClassVar, TypeVar

from anystore_cli.backends.fs import Store
from anystore_cli.errors import DoesNotExist, InvalidKey, StoreError, StoreNotFound
from anystore_cli.store.base import KeyEntry
from anystore_cli.store.io import DEFAULT_MODE, copy_stream
from anystore_cli.store.model import BaseStats
from anystore_cli.store.options import Option
from anystore_cli.util.files import (  # noqa: F401 - re-exported: the local backend's file helpers
    _CLOEXEC,
    _DIR_FLAGS,
    _MISSING,
    _READ_FLAGS,
    _ROOT_FLAGS,
    _TEMP_COUNTER,
    _TEMP_TOKEN,
    ATTEMPTS,
    MAX_LINKS,
    TMP_PREFIX,
    _atomic_file,
    _AtomicFile,
    _close,
    _commit,
    _open_temp,
    _write_all,
    atomic_open,
    atomic_write_bytes,
    local_read_open,
    output_open,
)
from anystore_cli.util.keys import listing_prefix, make_key_filter, normalize_key, normalize_prefix

T = TypeVar("T")

NAME_MAX = 255
"""Bytes a file name (one part of a key) may have on the usual file systems"""


def stat_created(info: os.stat_result) -> float:
    """A file's creation time (epoch seconds) as its metadata gives it: the birth time where the
    system has one, else the inode change time, and never after the modification (`st_mtime`).

    Args:
        info: The file's `stat`

    Returns:
        Epoch seconds
    """
    created = getattr(info, "st_birthtime", None) or info.st_ctime
    return min(created, info.st_mtime)


def _stats(stat: os.stat_result) -> BaseStats:
    """A file's metadata from its `stat` (created as `stat_created` gives it)."""
    return BaseStats.make(
        stat.st_size,
        datetime.fromtimestamp(stat_created(stat), tz=timezone.utc),
        datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
    )


class LocalStore(Store):
    """A store in a local folder (`file://` uris and plain paths)."""

    lease_primitive: ClassVar[str | None] = "anystore_cli.backends.leases.local:LocalLeases"
    options: ClassVar[tuple[Option, ...]] = (Option("fsync", "bool", False, help="fsync each value before it shows"),)

    # the kernel stamps files from a coarse clock, up to a tick (4-10 ms) behind `time.time()`:
    # a file written just after a value elsewhere may look older than it
    mtime_precision: ClassVar[float] = 0.05

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.root = self.uri[len("file://") :] if self.uri.startswith("file://") else self.uri
        self._real_root = os.path.realpath(self.root)
        self._roots = tuple(dict.fromkeys((os.path.abspath(self.root), self._real_root)))
        self._fsync = bool((self.backend_config or {}).get("fsync"))

    def _key(self, key: Any) -> str:
        key = normalize_key(key)
        if TMP_PREFIX in key and any(part.startswith(TMP_PREFIX) for part in key.split("/")):
            raise InvalidKey(f"Invalid key `{key}`: names starting with `{TMP_PREFIX}` are the store's temporary files")
        if len(key) > NAME_MAX // 4 and max(len(os.fsencode(part)) for part in key.split("/")) > NAME_MAX:
            raise InvalidKey(f"Invalid key `{key[:40]}...`: a part is longer than {NAME_MAX} bytes (a file name)")
        return key

    def _get_key_prefix(self) -> str:
        return self.uri

    def _path(self, key: str) -> str:
        """The key's path (for messages and tools; the store's own calls walk from the root)."""
        return os.path.join(self.root, key)

    # ---- walking from the root, never out of it ------------------------------------------------

    def _open_root(self, create: bool) -> int:
        try:
            return os.open(self.root, _ROOT_FLAGS)  # the root itself may be a symlink: the user's choice
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.makedirs(self.root, exist_ok=True)
        except FileNotFoundError as exc:  # a place that holds no folders (`/proc/x`): no key is missing
            raise StoreError(self._describe(None, f"cannot create its folder ({exc.strerror})")) from exc
        return os.open(self.root, _ROOT_FLAGS)

    def _outside(self, key: str) -> StoreError:
        return StoreError(self._describe(key, "leads outside the store (symlink)"))

    def _confine(self, here: Sequence[str], target: str, key: str) -> list[str]:
        """The parts (from the root) a symlink in the folder `here` leads to, or `StoreError`
        when its target is outside the store. Resolved by name: no call follows it."""
        if target.startswith("/"):
            target = os.path.normpath(target)
            for root in self._roots:
                if target == root or target.startswith(root + "/"):
                    target, parts = target[len(root) :], []
                    break
            else:
                raise self._outside(key)
        else:
            parts = list(here)
        for segment in target.split("/"):
            if segment in ("", "."):
                continue
            if segment == "..":
                if not parts:
                    raise self._outside(key)
                parts.pop()
            else:
                parts.append(segment)
        return parts

    def _descend(self, parts: Sequence[str], key: str, create: bool = False) -> tuple[list[int], list[str]]:
        """Open the folders `parts` below the root one at a time (`O_NOFOLLOW`), made when
        missing with `create`. A symlink on the way is followed only within the store.

        Returns:
            The open fds from the root down to the folder (the caller closes them), and the
            folder's parts as walked (symlinks resolved)
        """
        parts = list(parts)
        for _ in range(MAX_LINKS):
            fds = [self._open_root(create)]
            here: list[str] = []
            try:
                for index, name in enumerate(parts):
                    child = _open_child(name, fds[-1], create)
                    if isinstance(child, str):  # a symlink: start again from the root with its target
                        parts = self._confine(here, child, key) + parts[index + 1 :]
                        break
                    fds.append(child)
                    here.append(name)
                else:
                    return fds, here
            except BaseException:
                _close(fds)
                raise
            _close(fds)
        raise StoreError(self._describe(key, "too many levels of symbolic links"))

    def _prune(self, fds: Sequence[int], here: Sequence[str]) -> None:
        """Remove the folders of a walk left empty by a delete, deepest first, up to the root."""
        for level in range(len(here), 0, -1):
            try:
                os.rmdir(here[level - 1], dir_fd=fds[level - 1])
            except OSError:
                return

    def _open_value(self, key: str) -> int:
        """A descriptor open for reading the regular file at `key` (symlinks followed within the store)."""
        parts = key.split("/")
        for _ in range(MAX_LINKS):
            fds, here = self._descend(parts[:-1], key)
            try:
                fd = os.open(parts[-1], _READ_FLAGS, dir_fd=fds[-1])
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                parts = self._confine(here, os.readlink(parts[-1], dir_fd=fds[-1]), key)
                continue
            finally:
                _close(fds)
            return self._regular(fd, key)
        raise StoreError(self._describe(key, "too many levels of symbolic links"))

    def _regular(self, fd: int, key: str) -> int:
        """`fd` if it is a regular file; else closed, and `IsADirectoryError` or `StoreError`."""
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return fd
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", key)
        raise StoreError(self._describe(key, "not a regular file (a FIFO, device or socket): refused"))

    def _stat_value(self, key: str) -> os.stat_result:
        """The status of what is at `key` (symlinks followed within the store)."""
        parts = key.split("/")
        for _ in range(MAX_LINKS):
            fds, here = self._descend(parts[:-1], key)
            try:
                info = os.stat(parts[-1], dir_fd=fds[-1], follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    return info
                parts = self._confine(here, os.readlink(parts[-1], dir_fd=fds[-1]), key)
            finally:
                _close(fds)
        raise StoreError(self._describe(key, "too many levels of symbolic links"))

    def _check_target(self, folder_fd: int, here: Sequence[str], name: str, key: str) -> None:
        """Refuse to write over a symlink that leads out of the store (it would be replaced,
        not followed, but a write to it is a mistake the user should see)."""
        try:
            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            self._confine(here, os.readlink(name, dir_fd=folder_fd), key)

    def _folder_for_write(self, key: str) -> tuple[int, list[str], str]:
        """The open folder a write of `key` goes to (made when missing), its parts and the name."""
        folder, _, name = key.rpartition("/")
        fds, here = self._descend(folder.split("/") if folder else (), key, create=True)
        _close(fds[:-1])
        try:
            self._check_target(fds[-1], here, name, key)
        except BaseException:
            os.close(fds[-1])
            raise
        return fds[-1], here, name

    def _in_folder(self, key: str, action: Callable[[int, str], T], keep_open: bool = False) -> T:
        """Run `action(folder_fd, name)` in the open folder of `key` (made when missing), again
        when another process's delete prunes a folder on the way (`FileNotFoundError`). The folder
        is closed after, unless `keep_open` and `action` succeeded (its result then owns it)."""
        for attempt in range(ATTEMPTS):
            try:
                folder_fd, _, name = self._folder_for_write(key)
            except FileNotFoundError:  # a folder on the way was pruned while it was made: again
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            done = False
            try:
                result = action(folder_fd, name)
                done = True
                return result
            except FileNotFoundError:  # the folder was pruned by another process's delete: again
                if attempt == ATTEMPTS - 1:
                    raise
            finally:
                if not (done and keep_open):
                    os.close(folder_fd)
        raise AssertionError("unreachable")

    def _atomic(self, key: str, mode: str = "wb", no_clobber: bool = False) -> _AtomicFile:
        return self._in_folder(
            key, lambda fd, name: _AtomicFile(fd, name, mode, no_clobber=no_clobber, fsync=self._fsync), keep_open=True
        )

    def _write_at(self, folder_fd: int, name: str, value: bytes, no_clobber: bool, key: str) -> None:
        """Write `value` atomically as `name` in the open folder (`FileNotFoundError`: the folder is gone)."""
        fd, tmp_name = _open_temp(folder_fd, f"{TMP_PREFIX}{name[:40]}.")
        try:
            try:
                _write_all(fd, value)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            _commit(folder_fd, tmp_name, name, no_clobber, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name, dir_fd=folder_fd)
            raise

    # ---- primitives ----------------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", DEFAULT_MODE)
        try:
            fd = self._open_value(key)
        except _MISSING:
            if raise_on_nonexist:
                raise self._missing(key) from None
            return None
        with open(fd, mode if "r" in mode else DEFAULT_MODE) as handle:
            return handle.read()

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._in_folder(key, lambda fd, name: self._write_at(fd, name, value, no_clobber, key))

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        with self._atomic(key, "wb", no_clobber=no_clobber) as handle:
            return copy_stream(source, handle.handle)

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        """Each folder is walked once a batch: its descriptor is kept for the next keys in it."""
        folders: dict[str, tuple[int, list[str]]] = {}
        try:
            for key, value in items:
                folder, _, name = key.rpartition("/")
                for attempt in range(ATTEMPTS):
                    if folder not in folders:
                        if len(folders) >= 64:
                            _close([folders.pop(next(iter(folders)))[0]])
                        try:
                            fds, here = self._descend(folder.split("/") if folder else (), key, create=True)
                        except FileNotFoundError:  # a folder on the way was pruned while it was made
                            if attempt == ATTEMPTS - 1:
                                raise
                            continue
                        _close(fds[:-1])
                        folders[folder] = (fds[-1], here)
                    folder_fd, here = folders[folder]
                    try:
                        self._check_target(folder_fd, here, name, key)
                        self._write_at(folder_fd, name, value, False, key)
                        break
                    except FileNotFoundError:  # the folder was pruned by another process's delete
                        _close([folders.pop(folder)[0]])
                        if attempt == ATTEMPTS - 1:
                            raise
        finally:
            _close([fd for fd, _ in folders.values()])

    def _delete(self, key: str) -> bool:
        folder, _, name = key.rpartition("/")
        try:
            fds, here = self._descend(folder.split("/") if folder else (), key)
        except _MISSING:
            return False
        try:
            try:
                info = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                return False
            if stat.S_ISDIR(info.st_mode):
                return False
            if stat.S_ISLNK(info.st_mode):
                self._confine(here, os.readlink(name, dir_fd=fds[-1]), key)
            try:
                os.unlink(name, dir_fd=fds[-1])
            except _MISSING:
                return False
            self._prune(fds, here)
            return True
        finally:
            _close(fds)

    def _pop(self, key: str) -> bytes:
        folder, _, name = key.rpartition("/")
        try:
            fds, here = self._descend(folder.split("/") if folder else (), key)
        except _MISSING:
            raise self._missing(key) from None
        try:
            folder_fd = fds[-1]
            try:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise self._missing(key) from None
            if stat.S_ISLNK(info.st_mode):  # a link within the store: read through it, remove the link
                self._confine(here, os.readlink(name, dir_fd=folder_fd), key)
                value = self._read(key)
                try:
                    os.unlink(name, dir_fd=folder_fd)
                except FileNotFoundError:
                    raise self._missing(key) from None
            else:
                if stat.S_ISDIR(info.st_mode):
                    raise self._missing(key)
                value = self._claim(folder_fd, name, key)
            self._prune(fds, here)
            return value
        finally:
            _close(fds)

    def _claim(self, folder_fd: int, name: str, key: str) -> bytes:
        """Rename the file `name` to a private name (only one process wins), read it, remove it.

        What is not a regular file once claimed (a FIFO, a symlink put there meanwhile), or a
        read that fails, is renamed back and the error raised: the value stays.
        """
        claimed = f"{TMP_PREFIX}pop-{os.getpid()}-{_TEMP_TOKEN}-{next(_TEMP_COUNTER)}-{name[:40]}"
        try:
            os.rename(name, claimed, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except _MISSING:
            raise self._missing(key) from None
        try:
            fd = self._regular(os.open(claimed, _READ_FLAGS, dir_fd=folder_fd), key)
            with open(fd, "rb") as handle:
                value = handle.read()
        except BaseException:
            with contextlib.suppress(OSError):
                os.rename(claimed, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            raise
        os.unlink(claimed, dir_fd=folder_fd)
        return value

    def _exists(self, key: str) -> bool:
        try:
            return stat.S_ISREG(self._stat_value(key).st_mode)
        except _MISSING:
            return False

    def _info(self, key: str) -> BaseStats:
        try:
            info = self._stat_value(key)
        except _MISSING:
            raise self._missing(key) from None
        if not stat.S_ISREG(info.st_mode):
            raise self._missing(key)
        return BaseStats(
            size=info.st_size,
            created_at=datetime.fromtimestamp(stat_created(info), tz=timezone.utc),
            updated_at=datetime.fromtimestamp(info.st_mtime, tz=timezone.utc),
        )

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        for key in keys:  # local reads: a thread pool a batch costs more than it saves
            yield key, self._read(key, raise_on_nonexist=False)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        for key in keys:  # a `stat` each: no threads needed
            try:
                yield key, self._info(key)
            except DoesNotExist:
                yield key, None

    @contextlib.contextmanager
    def _reader(self, key: str, mode: str = DEFAULT_MODE) -> Generator[IO[Any], None, None]:
        try:
            fd = self._open_value(key)
        except _MISSING:
            raise self._missing(key) from None
        with open(fd, mode) as handle:
            yield handle

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        if "r" in mode and "+" not in mode:
            return self._reader(key, mode)
        return self._atomic(key, mode)

    def _stream(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Iterator[Any]:
        with self._reader(key, mode) as handle:
            yield from handle

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        for batch in self._listing(prefix, exclude_prefix, glob, False):
            yield from batch

    def _iterate_key_batches(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[list[str]]:
        """The keys of one folder at a time."""
        return self._listing(prefix, exclude_prefix, glob, False)

    def _iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[tuple[str, BaseStats]]:
        """The listing with each file's `stat`, taken in its open folder (no path lookup per key)."""
        make = _stats
        for batch in self._listing(prefix, exclude_prefix, glob, True):
            for key, info in batch:
                yield key, make(info)

    def iterate_stat_batches(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        shard: str | tuple[int, int] | None = None,
        filters: Iterable[str] | None = None,
    ) -> Iterator[list[tuple[str, os.stat_result]]]:
        """The listing under `iterate_infos`, raw: the matching keys with each file's
        `os.stat_result`, a folder at a time (lists never empty), in `iterate_infos` order.

        For callers that format many keys' metadata themselves (`anystore keys -l/--json`):
        no model object is built per key. `stat_created` and `st_mtime` give the `created_at`
        and `updated_at` of `iterate_infos`, `st_size` its `size`.

        Args:
            prefix: Include only keys with the given prefix (e.g. "foo/bar")
            exclude_prefix: Exclude keys with this prefix
            glob: Path-style glob pattern for keys to filter (e.g. "foo/**/*.json")
            include: Globs of keys to keep, as `iterate_keys` takes them
            exclude: Globs of keys to leave out
            shard: Only the keys of shard `"I/N"`
            filters: Ordered rules `"+ GLOB"` / `"- GLOB"`

        Yields:
            Lists of `(key, stat_result)`
        """
        extra = self._extra_filter(include, exclude, shard, filters)
        prefix, exclude_prefix = normalize_prefix(prefix), normalize_prefix(exclude_prefix)
        with self._errors(None):
            for batch in self._listing(prefix or None, exclude_prefix or None, glob or None, True):
                if extra is not None:
                    batch = [item for item in batch if extra(item[0])]
                if batch:
                    yield batch

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        for batch in self._listing(prefix, exclude_prefix, glob, True):
            for key, info in batch:
                yield KeyEntry(key, info.st_size, info.st_mtime)

    def _listing(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, stats: bool
    ) -> Iterator[list[Any]]:
        """The matching keys a folder at a time, or `(key, stat_result)` pairs with `stats`."""
        start = listing_prefix(prefix, glob)
        if ".." in start.split("/")[:-1]:  # the last part may be the start of a name like `..x`
            return  # no key holds a `..` segment: never list the folders around the store
        folder = start.rsplit("/", 1)[0] if "/" in start else ""
        exclude = (exclude_prefix or "").lstrip("/")
        batches = self._walk(folder, start, exclude, stats)
        if not (prefix or exclude_prefix or glob):
            yield from batches  # every key matches: no filter call per key
            return
        match = make_key_filter(prefix, exclude_prefix, glob)
        for batch in batches:
            batch = [item for item in batch if match(item[0])] if stats else [key for key in batch if match(key)]
            if batch:
                yield batch

    def _walk(self, folder: str, start: str, exclude: str, stats: bool = False) -> Iterator[list[Any]]:
        """The keys (or `(key, stat_result)` pairs) under `folder` (relative), a folder at a
        time, pruned by prefix.

        Folders are opened relative to their open parent, never following a symlink
        (`O_NOFOLLOW`), so a folder swapped for a symlink during the walk cannot lead it out of
        the store; the start folder is reached as a key's folder is (symlinks followed only
        within the store). A symlink to a file is listed when it resolves, within the store, to
        a regular file; symlinks to folders are not descended into.

        Nothing is empty by accident: a store folder that is not there raises `StoreNotFound`
        before any key, and a folder that cannot be read is never skipped in silence - the
        walk lists the rest, then raises `StoreError` naming every folder it could not read.

        Raises:
            StoreNotFound: The store's folder does not exist
            StoreError: It is not a folder, or a folder in it could not be read
        """
        try:
            fds, _ = self._descend(folder.split("/") if folder else (), folder or ".")
        except (FileNotFoundError, NotADirectoryError):
            self._check_root()
            return  # the prefix's folder is not there: no key starts with it
        except StoreError:  # a folder linked out of the store holds none of its keys
            self._check_root()
            return
        try:
            top = os.open(".", _SCAN_FLAGS, dir_fd=fds[-1])
        except OSError as exc:
            what = f"cannot read the folder `{folder or '.'}` ({_reason(exc)})"
            raise StoreError(self._describe(None, what)) from exc
        finally:
            _close(fds)
        unreadable: list[str] = []
        stack: list[tuple[int, str, Iterator[str]]] = []
        try:
            base = f"{folder}/" if folder else ""
            found, subdirs = self._scan(top, base, start, exclude, stats, unreadable)
            stack.append((top, base, iter(subdirs)))
            if found:
                yield found
            while stack:
                fd, base, pending = stack[-1]
                name = next(pending, None)
                if name is None:
                    stack.pop()
                    os.close(fd)
                    continue
                try:
                    child = os.open(name, _SCAN_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    # swapped for a symlink (ELOOP) or a file (ENOTDIR), or removed, since the
                    # folder was read: not a folder of the store any more
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                        unreadable.append(f"`{base}{name}` ({_reason(exc)})")
                    continue
                base += name + "/"
                try:
                    found, subdirs = self._scan(child, base, start, exclude, stats, unreadable)
                except BaseException:
                    os.close(child)
                    raise
                stack.append((child, base, iter(subdirs)))
                if found:
                    yield found
        finally:
            _close([fd for fd, _, _ in stack])
        if unreadable:
            shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
            raise StoreError(
                self._describe(None, f"the listing is incomplete: could not read {_folders(len(unreadable))} {shown}")
            )

    def _check_root(self) -> None:
        """Raise unless the store's own folder is there and is a folder.

        Raises:
            StoreNotFound: Nothing at the store's path (a write creates it)
            StoreError: Something else is there, or it cannot be looked at
        """
        try:
            info = os.stat(self.root)
        except FileNotFoundError:
            if self.missing_is_empty:
                return
            raise StoreNotFound(self._describe(None, "does not exist (nothing has been written to it)")) from None
        except NotADirectoryError:
            raise StoreNotFound(self._describe(None, "does not exist (nothing has been written to it)")) from None
        except OSError as exc:
            raise StoreError(self._describe(None, f"cannot be read ({_reason(exc)})")) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise StoreError(self._describe(None, "is not a folder"))

    def _scan(
        self, fd: int, base: str, start: str, exclude: str, stats: bool, unreadable: list[str]
    ) -> tuple[list[Any], list[str]]:
        """The keys (or `(key, stat_result)` pairs) of the files in the open folder `fd`, whose
        keys start with `base`, and the names of its subfolders worth walking; a folder that
        cannot be read is added to `unreadable` (and lists nothing)."""
        found: list[Any] = []
        subdirs: list[str] = []
        links: list[str] = []
        try:
            entries = os.scandir(fd)
        except OSError as exc:
            unreadable.append(f"`{base.rstrip('/') or '.'}` ({_reason(exc)})")
            return found, subdirs
        with entries:
            if stats:
                for entry in entries:
                    name = entry.name
                    try:
                        if entry.is_file(follow_symlinks=False):
                            if name[0] != "." or not name.startswith(TMP_PREFIX):
                                found.append((base + name, entry.stat(follow_symlinks=False)))
                        elif entry.is_dir(follow_symlinks=False):
                            subdirs.append(name)
                        elif entry.is_symlink():
                            links.append(name)
                    except OSError:  # gone since the folder was read
                        continue
            else:
                for entry in entries:
                    name = entry.name
                    try:
                        if entry.is_file(follow_symlinks=False):
                            if name[0] != "." or not name.startswith(TMP_PREFIX):
                                found.append(base + name)
                        elif entry.is_dir(follow_symlinks=False):
                            subdirs.append(name)
                        elif entry.is_symlink():
                            links.append(name)
                    except OSError:
                        continue
        if start and not base.startswith(start):
            found = [item for item in found if (item[0] if stats else item).startswith(start)]
        for name in links:  # a symlink to a file inside the store is listed as that file
            key = base + name
            if name.startswith(TMP_PREFIX) or (start and not key.startswith(start)):
                continue
            try:
                info = self._stat_value(key)
            except (OSError, StoreError):  # dangling, or leading out of the store
                continue
            if stat.S_ISREG(info.st_mode):
                found.append((key, info) if stats else key)
        if subdirs:
            kept = []
            for name in subdirs:
                child = f"{base}{name}/"
                if name.startswith(TMP_PREFIX):
                    continue
                if (child.startswith(start) or start.startswith(child)) and not (exclude and child.startswith(exclude)):
                    kept.append(name)
            subdirs = kept
        return found, subdirs


_SCAN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
"""A folder opened for reading its entries"""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _folders(count: int) -> str:
    return f"{count} folder{'' if count == 1 else 's'}"


def _open_child(name: str, dir_fd: int, create: bool) -> int | str:
    """Open the folder `name` in the open folder `dir_fd` without following a symlink.

    Returns:
        The folder's fd, or the target of the symlink found at `name`

    Raises:
        FileNotFoundError: Nothing at `name` (and not `create`)
        NotADirectoryError: A file at `name`
    """
    for _ in range(ATTEMPTS):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            try:
                return os.readlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue  # removed meanwhile: look again
            except OSError as link_exc:
                if link_exc.errno == errno.EINVAL:  # not a symlink: a file where a folder should be
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name) from None
                raise
    raise FileNotFoundError(errno.ENOENT, "No such file or directory (changing under us)", name)
