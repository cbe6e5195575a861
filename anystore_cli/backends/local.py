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
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import IO, Any, ClassVar, TypeVar

from anystore_cli.backends.filelike import FileLikeStore
from anystore_cli.backends.local_listing import (  # noqa: F401 - stat_created re-exported for callers
    LocalListingMixin,
    _stats,
    stat_created,
)
from anystore_cli.errors import DoesNotExist, InvalidKey, StoreError
from anystore_cli.store.base import Capabilities
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.io import DEFAULT_MODE, copy_stream
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
from anystore_cli.util.keys import normalize_key

T = TypeVar("T")

NAME_MAX = 255
"""Bytes a file name (one part of a key) may have on the usual file systems"""


class LocalStore(LocalListingMixin, FileLikeStore):
    """A store in a local folder (`file://` uris and plain paths)."""

    options: ClassVar[tuple[Option, ...]] = (Option("fsync", "bool", False, help="fsync each value before it shows"),)

    # the kernel stamps files from a coarse clock, up to a tick (4-10 ms) behind `time.time()`:
    # a file written just after a value elsewhere may look older than it
    capabilities: ClassVar[Capabilities] = Capabilities(
        leases="anystore_cli.backends.leases.local:LocalLeases", mtime_precision=0.05
    )

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
        return _stats(info)

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
