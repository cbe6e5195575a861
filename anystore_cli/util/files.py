"""Local files written atomically and read safely, for stores and for `-o` outputs.

A write goes to a temporary file in the target's folder that replaces the target only when the
block ends without an error, so readers see the old value or the new one, never a part. Devices,
FIFOs and `/dev/stdout` are written straight into, never replaced; a symlink's target is
replaced and the link kept (as `cp` does). Reads open with `O_NONBLOCK` so a FIFO never hangs.
This module sits below the backends: `anystore_cli.backends.local` and `core.io` both use it.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import stat
import time
from collections.abc import Generator, Sequence
from typing import IO, Any

from anystore_cli.errors import AlreadyExists, DoesNotExist, InvalidUri

DEFAULT_MODE = "rb"

TMP_PREFIX = ".~anystore-"
MAX_LINKS = 40
"""Symlinks followed to resolve one key (as the kernel's limit)"""
ATTEMPTS = 20
"""Tries of a write whose folder another process's delete pruned under it"""

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_ROOT_FLAGS = _O_PATH | os.O_DIRECTORY | _CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC  # a FIFO opens without waiting
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_TEMP_TOKEN = os.urandom(3).hex()
_TEMP_COUNTER = itertools.count()
_TEMP_NAME = re.compile(rf"{re.escape(TMP_PREFIX)}.*\.([0-9]+)-[0-9a-f]{{6}}-[0-9]+", re.DOTALL)
"""The names `_open_temp` makes (the writer's pid in group 1): nothing else is ever swept"""
STALE_TEMP_SECONDS = 24 * 3600
"""A temporary file untouched this long, whose writer is not running here, was left by a killed write"""
SWEEP_AGAIN_SECONDS = 3600
"""A long-lived process (`serve`) sweeps a folder again after this long"""
_SWEPT: dict[tuple[int, int], float] = {}
"""When this process swept each folder (device, inode): a folder is listed once in a while, not once a write"""


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def sweep_stale_temps(folder_fd: int, now: float | None = None) -> int:
    """Remove the temporary files a killed write (SIGKILL, a crash) left in an open folder.

    Only names this module makes are candidates, and only regular files untouched for
    `STALE_TEMP_SECONDS` whose writer's pid runs no process on this host: a write in progress
    (its file young, or its process alive) is never touched.

    Args:
        folder_fd: The open folder (an `O_PATH` descriptor will do)
        now: The current time (epoch seconds), for tests

    Returns:
        The number of files removed
    """
    now = time.time() if now is None else now
    removed = 0
    listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC, dir_fd=folder_fd)
    try:
        with os.scandir(listing) as entries:
            for entry in entries:
                if not entry.name.startswith(TMP_PREFIX):
                    continue
                match = _TEMP_NAME.fullmatch(entry.name)
                if match is None or _running(int(match.group(1))):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_TEMP_SECONDS:
                        os.unlink(entry.name, dir_fd=folder_fd)
                        removed += 1
    finally:
        os.close(listing)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except (OverflowError, ValueError):
        return False  # no pid a process can have
    return True


def _sweep_once(folder_fd: int) -> None:
    """Sweep the folder of a write unless this process did already; a failure only skips it."""
    try:
        info = os.fstat(folder_fd)
        now = time.monotonic()
        folder = (info.st_dev, info.st_ino)
        if now - _SWEPT.get(folder, -SWEEP_AGAIN_SECONDS) < SWEEP_AGAIN_SECONDS:
            return
        if len(_SWEPT) >= 10_000:  # a load across many folders: stay small, at worst sweep one twice
            _SWEPT.clear()
        _SWEPT[folder] = now
        sweep_stale_temps(folder_fd)
    except OSError:
        pass  # an unreadable folder (write-only, gone): the write decides what to report


def _open_temp(folder_fd: int, prefix: str) -> tuple[int, str]:
    """Create a new temporary file in the open folder `folder_fd`; return its fd and name.

    A counter instead of random names, and mode 0o666 so that the umask applies as it does for
    `open()`. `FileNotFoundError` means the folder was removed after it was opened. The folder's
    leftovers of killed writes are swept first, once a process.
    """
    _sweep_once(folder_fd)
    for attempt in range(ATTEMPTS):
        name = f"{prefix}{os.getpid()}-{_TEMP_TOKEN}-{next(_TEMP_COUNTER)}"  # forked children differ by pid
        try:
            return os.open(name, _TEMP_FLAGS, 0o666, dir_fd=folder_fd), name
        except FileExistsError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _commit(folder_fd: int, tmp_name: str, name: str, no_clobber: bool, label: str) -> None:
    """Move the finished temporary file `tmp_name` over `name`, both in the open folder `folder_fd`."""
    if no_clobber:
        try:
            os.link(tmp_name, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except FileExistsError:
            raise AlreadyExists(f"Key already exists: `{label}`") from None
        finally:
            os.unlink(tmp_name, dir_fd=folder_fd)
    else:
        os.replace(tmp_name, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _AtomicFile:
    """A temporary file in an open folder that replaces `name` there on `commit()` and vanishes
    on `discard()`. It owns `folder_fd` and closes it when done."""

    def __init__(
        self,
        folder_fd: int,
        name: str,
        mode: str = "wb",
        no_clobber: bool = False,
        fsync: bool = False,
        keep_mode: int | None = None,
    ) -> None:
        self.folder_fd = folder_fd
        self.name = name
        self.no_clobber = no_clobber
        self.fsync = fsync
        self.keep_mode = keep_mode
        fd, self.tmp_name = _open_temp(folder_fd, f"{TMP_PREFIX}{name[:40]}.")
        binary = "b" in mode
        self.handle: IO[Any] = os.fdopen(fd, "wb" if binary else "w", encoding=None if binary else "utf-8")
        self.done = False

    def commit(self) -> None:
        """Make the written bytes the file's content (atomically)."""
        if self.done:
            return
        self.done = True
        try:
            self.handle.flush()
            if self.keep_mode is not None:
                os.fchmod(self.handle.fileno(), self.keep_mode)
            if self.fsync:
                os.fsync(self.handle.fileno())
            self.handle.close()
            _commit(self.folder_fd, self.tmp_name, self.name, self.no_clobber, self.name)
        except BaseException:
            self._remove_tmp()
            raise
        finally:
            os.close(self.folder_fd)

    def discard(self) -> None:
        """Drop the written bytes; the file keeps its old content."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(OSError):
            self.handle.close()
        self._remove_tmp()
        os.close(self.folder_fd)

    def _remove_tmp(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_name, dir_fd=self.folder_fd)

    # file-like surface
    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def write(self, data: Any) -> int:
        return self.handle.write(data)

    def close(self) -> None:
        self.commit()

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _open_folder_of(path: str) -> tuple[int, str]:
    """Open the folder of a local `path` (made when missing); return its fd and the file's name."""
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    return os.open(folder or ".", _ROOT_FLAGS), name


def _atomic_file(path: str, mode: str, no_clobber: bool, fsync: bool, keep_mode: int | None = None) -> _AtomicFile:
    for attempt in range(ATTEMPTS):
        folder_fd, name = _open_folder_of(path)
        try:
            return _AtomicFile(folder_fd, name, mode, no_clobber=no_clobber, fsync=fsync, keep_mode=keep_mode)
        except FileNotFoundError:  # the folder was pruned after it was made: make it again
            os.close(folder_fd)
            if attempt == ATTEMPTS - 1:
                raise
        except BaseException:
            os.close(folder_fd)
            raise
    raise AssertionError("unreachable")


def atomic_write_bytes(path: str, data: bytes, no_clobber: bool = False, fsync: bool = False) -> None:
    """Write `data` to the local `path` atomically (a temporary file renamed over it)."""
    with _atomic_file(path, "wb", no_clobber, fsync) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_open(
    path: str, mode: str = "wb", no_clobber: bool = False, fsync: bool = False
) -> Generator[Any, None, None]:
    """Open `path` for writing; it is replaced atomically when the block ends without error.

    With `fsync` the data reaches the disk before the rename (survives a power loss, slower).
    """
    with _committing(_atomic_file(path, mode, no_clobber, fsync)) as handle:
        yield handle


@contextlib.contextmanager
def _committing(handle: Any) -> Generator[Any, None, None]:
    """Yield an atomic file's `handle`; commit it when the block ends, discard it when it raised."""
    try:
        yield handle
    except BaseException:
        handle.discard()
        raise
    handle.commit()


def _inherited_fd(path: str) -> int | None:
    """The descriptor number `path` names when it is one of this process's own descriptors:
    `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N` (process substitution)."""
    if path in ("/dev/stdout", "/dev/stderr"):
        return 1 if path == "/dev/stdout" else 2
    for base in ("/dev/fd/", "/proc/self/fd/", f"/proc/{os.getpid()}/fd/"):
        if path.startswith(base) and path[len(base) :].isdigit():
            return int(path[len(base) :])
    return None


@contextlib.contextmanager
def output_open(path: str, mode: str = "wb") -> Generator[IO[Any], None, None]:
    """Open a local path for writing a command's output (`-o PATH`), as `cp` treats its target.

    - a new path or a regular file: replaced atomically (a temporary file renamed over it when
      the block ends without error), keeping an existing file's mode;
    - a symlink to a regular file: followed, and the file it names replaced atomically (the
      link stays a link); a dangling symlink is refused (`InvalidUri`), as `cp` refuses it;
    - `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`: written through this process's own
      descriptor, as a shell redirection does (process substitution `>(...)` works);
    - anything else that is not a regular file (a character device such as `/dev/null`, a
      FIFO, a terminal): written straight into, never replaced.
    """
    number = _inherited_fd(path)
    if number is not None:
        with os.fdopen(os.dup(number), mode) as handle:
            yield handle
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise InvalidUri(f"Output `{path}` is a dangling symlink: not writing through it") from None
        info = None
    if info is None or stat.S_ISREG(info.st_mode):
        target = os.path.realpath(path) if info is not None and os.path.islink(path) else path
        keep = stat.S_IMODE(info.st_mode) if info is not None else None
        with _committing(_atomic_file(target, mode, False, False, keep_mode=keep)) as handle:
            yield handle
        return
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    with os.fdopen(os.open(path, os.O_WRONLY | _CLOEXEC), mode) as handle:
        yield handle


@contextlib.contextmanager
def local_read_open(path: str, mode: str = DEFAULT_MODE, name: str | None = None) -> Generator[IO[Any], None, None]:
    """Open a local file for reading, raising `DoesNotExist` when it is missing."""
    try:
        handle = open(path, mode)  # noqa: SIM115 - closed below
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise DoesNotExist(f"Does not exist: `{name or path}`") from None
    with handle:
        yield handle


_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
"""What a walk or an open raises for a key that holds no value"""
