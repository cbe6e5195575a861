"""Local folder backend: plain `os` calls, no fsspec.

Writes are atomic: the value goes to a hidden temporary file in the target's folder, which is
renamed over the target (fsync'ed first with backend_config `fsync=true`). Readers see the old
value or the new one; temporary files never show up as keys. Symlinks that lead out of the store are never followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any, ClassVar

from anystore_cli.backend.base import KeyEntry
from anystore_cli.backend.fs import Store
from anystore_cli.backend.model import BaseStats
from anystore_cli.core.exceptions import InvalidKey, StoreError
from anystore_cli.core.files import TMP_PREFIX, atomic_open, atomic_write_bytes, local_read_open
from anystore_cli.core.io import DEFAULT_MODE, copy_stream
from anystore_cli.core.keys import listing_prefix, make_key_filter, normalize_key

__all__ = ["LocalStore", "TMP_PREFIX", "atomic_open", "atomic_write_bytes", "local_read_open"]


class LocalStore(Store):
    """A store in a local folder (`file://` uris and plain paths)."""

    # the kernel stamps files from a coarse clock, up to a tick (4-10 ms) behind `time.time()`:
    # a file written just after a value elsewhere may look older than it
    mtime_precision: ClassVar[float] = 0.05

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.root = self.uri[len("file://") :] if self.uri.startswith("file://") else self.uri
        self._real_root = os.path.realpath(self.root)
        self._fsync = bool((self.backend_config or {}).get("fsync"))

    def _key(self, key: Any) -> str:
        key = normalize_key(key)
        if TMP_PREFIX in key and any(part.startswith(TMP_PREFIX) for part in key.split("/")):
            raise InvalidKey(f"Invalid key `{key}`: names starting with `{TMP_PREFIX}` are the store's temporary files")
        return key

    def _get_key_prefix(self) -> str:
        return self.uri

    def _path(self, key: str) -> str:
        path = os.path.join(self.root, key)
        if os.path.islink(path) or "/" in key:
            real = os.path.realpath(path)
            if real != self._real_root and not real.startswith(self._real_root + os.sep):
                raise StoreError(f"Key `{key}` in store `{self.uri}`: leads outside the store (symlink)")
        return path

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", DEFAULT_MODE)
        try:
            with open(self._path(key), mode if "r" in mode else DEFAULT_MODE) as handle:
                return handle.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            if raise_on_nonexist:
                raise self._missing(key) from None
            return None

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        atomic_write_bytes(self._path(key), value, no_clobber=no_clobber, fsync=self._fsync)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        with atomic_open(self._path(key), "wb", no_clobber=no_clobber, fsync=self._fsync) as handle:
            return copy_stream(source, handle.handle)

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        checked: set[str] = set()
        for key, value in items:
            atomic_write_bytes(self._batch_path(key, checked), value, fsync=self._fsync)

    def _batch_path(self, key: str, checked: set[str]) -> str:
        """`_path` for a batch of keys: each folder's real path is resolved once, not per key.

        A folder lands in `checked` once a key that is no symlink resolved inside the store
        through it; later keys in it only check that they are no symlink themselves.
        """
        path = os.path.join(self.root, key)
        folder = os.path.dirname(path)
        if folder in checked and not os.path.islink(path):
            return path
        path = self._path(key)
        if not os.path.islink(path):
            checked.add(folder)
        return path

    def _delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except IsADirectoryError:
            return False
        self._prune(os.path.dirname(path))
        return True

    def _prune(self, folder: str) -> None:
        """Remove folders left empty by a delete, up to the store root."""
        root = os.path.abspath(self.root)
        folder = os.path.abspath(folder)
        while folder != root and folder.startswith(root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:
                return
            folder = os.path.dirname(folder)

    def _pop(self, key: str) -> bytes:
        path = self._path(key)
        folder = os.path.dirname(path)
        claimed = os.path.join(folder, f"{TMP_PREFIX}pop-{os.getpid()}-{id(self)}-{os.path.basename(path)[:40]}")
        try:
            os.rename(path, claimed)  # only one process wins this rename
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        try:
            with open(claimed, "rb") as handle:
                return handle.read()
        finally:
            os.unlink(claimed)
            self._prune(folder)

    def _exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def _info(self, key: str) -> BaseStats:
        try:
            stat = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            raise self._missing(key) from None
        if not os.path.isfile(self._path(key)):
            raise self._missing(key)
        created = getattr(stat, "st_birthtime", None) or stat.st_ctime
        return BaseStats(
            size=stat.st_size,
            created_at=datetime.fromtimestamp(min(created, stat.st_mtime), tz=timezone.utc),
            updated_at=datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc),
        )

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        path = self._path(key)
        if "r" in mode and "+" not in mode:
            return local_read_open(path, mode, key)
        return atomic_open(path, mode, fsync=self._fsync)

    def _stream(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Iterator[Any]:
        with local_read_open(self._path(key), mode, key) as handle:
            yield from handle

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        match = make_key_filter(prefix, exclude_prefix, glob)
        start = listing_prefix(prefix, glob)
        if ".." in start.split("/")[:-1]:  # the last part may be the start of a name like `..x`
            return  # no key holds a `..` segment: never list the folders around the store
        folder = start.rsplit("/", 1)[0] if "/" in start else ""
        exclude = (exclude_prefix or "").lstrip("/")
        if not (prefix or exclude_prefix or glob):
            yield from self._walk(folder, start, exclude)  # every key matches: no filter call per key
            return
        yield from (k for k in self._walk(folder, start, exclude) if match(k))

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        root = self.root
        for key in self._iterate_keys(prefix, exclude_prefix, glob):
            try:
                stat = os.stat(os.path.join(root, key))
            except OSError:
                continue  # gone since listed
            yield KeyEntry(key, stat.st_size, stat.st_mtime)

    def _walk(self, folder: str, start: str, exclude: str) -> Iterator[str]:
        """Yield keys under `folder` (relative), streaming with scandir, pruning by prefix."""
        stack = [folder]
        while stack:
            current = stack.pop()
            path = os.path.join(self.root, current) if current else self.root
            if current and not self._inside_folder(path):
                continue  # the listing starts in a folder linked out of the store
            try:
                entries = os.scandir(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                subdirs = []
                base = f"{current}/" if current else ""
                for entry in entries:
                    name = entry.name
                    if name[0] == "." and name.startswith(TMP_PREFIX):
                        continue
                    key = base + name
                    try:
                        if entry.is_file(follow_symlinks=False):
                            if not start or key.startswith(start):
                                yield key
                            continue
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        child = key + "/"
                        if (child.startswith(start) or start.startswith(child)) and not (
                            exclude and child.startswith(exclude)
                        ):
                            subdirs.append(key)
                    elif (not start or key.startswith(start)) and self._inside(entry.path):
                        yield key  # a symlink to a file inside the store
                stack.extend(reversed(subdirs))

    def _inside_folder(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_root + os.sep)

    def _inside(self, path: str) -> bool:
        real = os.path.realpath(path)
        return real.startswith(self._real_root + os.sep) and os.path.isfile(real)
