"""The local folder's listing: a walk from the store's folder, one open folder at a time, that
never follows a symlink out of the store and never skips a folder it cannot read in silence."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from anystore_cli.errors import StoreError, StoreNotFound
from anystore_cli.store.base import BaseStore, KeyEntry
from anystore_cli.store.entry import BaseStats
from anystore_cli.util.files import _CLOEXEC, TMP_PREFIX, _close
from anystore_cli.util.keys import listing_prefix, make_key_filter


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


class LocalListingMixin(BaseStore):
    """The listing of `LocalStore` (which supplies `root`, `_descend` and `_stat_value`; an
    annotation here would make `root` a field of the store model)."""

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """The keys of one folder at a time; with `detail` each file's `stat`, taken in its open
        folder (no path lookup per key)."""
        if not detail:
            yield from self._listing(prefix, exclude_prefix, glob, False)
            return
        batches = self._listing(prefix, exclude_prefix, glob, True)
        if _BIRTH:
            for batch in batches:
                yield [KeyEntry(key, info.st_size, info.st_mtime, None, stat_created(info)) for key, info in batch]
            return
        # `stat_created` without birth times, inlined: this runs once a file of `keys -l`
        new = tuple.__new__
        for batch in batches:
            yield [
                new(KeyEntry, (key, info.st_size, m := info.st_mtime, None, c if (c := info.st_ctime) < m else m, None))
                for key, info in batch
            ]

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


_BIRTH = hasattr(os.stat_result, "st_birthtime")
"""The system keeps a file's creation time"""

_SCAN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
"""A folder opened for reading its entries"""


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _folders(count: int) -> str:
    return f"{count} folder{'' if count == 1 else 's'}"


__all__ = ["LocalListingMixin", "stat_created"]
