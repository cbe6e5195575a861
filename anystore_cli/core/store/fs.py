"""File-like stores: local folders and every fsspec filesystem (s3, gs, az, sftp, http, ...).

`Store(uri=...)` gives a `LocalStore` for local paths (plain `os`, no fsspec) and an fsspec
backed store otherwise. http(s) stores are read-only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import IO, Any, ClassVar

from anystore_cli.core.exceptions import ReadOnlyError
from anystore_cli.core.io import DEFAULT_MODE, copy_stream, get_filesystem
from anystore_cli.core.keys import listing_prefix, make_key_filter
from anystore_cli.core.model import BaseStats
from anystore_cli.core.store.base import BaseStore
from anystore_cli.core.uri import quote_key, unquote_key


class Store(BaseStore):
    """A store on a local folder or any fsspec filesystem."""

    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ConnectionError, TimeoutError)

    def __new__(cls, *args: Any, **data: Any) -> Any:
        if cls is Store:
            from anystore_cli.core.uri import ensure_uri

            uri = data.get("uri")
            if uri is not None and ensure_uri(uri).startswith("file://"):
                from anystore_cli.core.store.local import LocalStore

                return super().__new__(LocalStore)
        return super().__new__(cls)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.is_http and not self.readonly:
            self.readonly = True
        self._fs_cache: tuple[Any, str] | None = None

    # ---- fsspec plumbing --------------------------------------------------------------------

    @property
    def _fs(self) -> Any:
        if self._fs_cache is None:
            self._fs_cache = get_filesystem(self.uri, **self.ensure_kwargs())
        return self._fs_cache[0]

    @property
    def _root(self) -> str:
        self._fs  # noqa: B018 - resolves the filesystem and root
        assert self._fs_cache is not None
        return self._fs_cache[1].rstrip("/")

    def _get_key_prefix(self) -> str:
        return self.uri

    def _path(self, key: str) -> str:
        if self.is_http:
            key = quote_key(key)
        return f"{self._root}/{key}" if self._root else key

    def _relative(self, path: str) -> str:
        root = self._root
        path = path.rstrip("/")
        if self.is_http:
            path = path.split("://", 1)[-1]
            root = root.split("://", 1)[-1]
        key = path[len(root) :].lstrip("/") if root and path.startswith(root) else path.lstrip("/")
        return unquote_key(key) if self.is_http else key

    # ---- primitives -------------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", DEFAULT_MODE)
        try:
            with self._fs.open(self._path(key), mode if "r" in mode else DEFAULT_MODE) as handle:
                return handle.read()
        except (FileNotFoundError, IsADirectoryError):
            if raise_on_nonexist:
                raise self._missing(key) from None
            return None

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._no_clobber_check(key, no_clobber)
        with self._writer(key) as handle:
            handle.write(value)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        self._no_clobber_check(key, no_clobber)
        with self._writer(key) as handle:
            return copy_stream(source, handle)

    @contextlib.contextmanager
    def _writer(self, key: str, mode: str = "wb") -> Generator[IO[Any], None, None]:
        """Open a remote file for writing; on an error the upload is discarded, never completed."""
        if self.is_http:
            raise ReadOnlyError(self._describe(key, "http stores are read-only"))
        path = self._path(key)
        parent = path.rsplit("/", 1)[0]
        if parent and getattr(self._fs, "auto_mkdir", True) is not None:
            with contextlib.suppress(Exception):
                self._fs.makedirs(parent, exist_ok=True)
        handle = self._fs.open(path, mode)
        try:
            yield handle
        except BaseException:
            discard = getattr(handle, "discard", None)
            if discard is not None:
                with contextlib.suppress(Exception):
                    discard()
            with contextlib.suppress(Exception):
                handle.close()
            raise
        handle.close()

    def _delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            if not self._fs.isfile(path):
                return False
            self._fs.rm_file(path)
        except FileNotFoundError:
            return False
        return True

    def _exists(self, key: str) -> bool:
        try:
            return bool(self._fs.isfile(self._path(key)))
        except FileNotFoundError:
            return False

    def _info(self, key: str) -> BaseStats:
        try:
            info = self._fs.info(self._path(key))
        except FileNotFoundError:
            raise self._missing(key) from None
        if info.get("type") == "directory":
            raise self._missing(key)
        updated = info.get("LastModified") or info.get("mtime") or info.get("last_modified") or info.get("updated")
        created = info.get("created") or info.get("timeCreated") or info.get("creation_time") or updated
        return BaseStats(size=info.get("size") or 0, created_at=_ts(created), updated_at=_ts(updated))

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        if "r" in mode and "+" not in mode:
            return self._reader(key, mode)
        return self._writer(key, mode)

    @contextlib.contextmanager
    def _reader(self, key: str, mode: str) -> Generator[IO[Any], None, None]:
        try:
            handle = self._fs.open(self._path(key), mode)
        except (FileNotFoundError, IsADirectoryError):
            raise self._missing(key) from None
        with handle:
            yield handle

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        match = make_key_filter(prefix, exclude_prefix, glob)
        start = listing_prefix(prefix, glob)
        folder = start.rsplit("/", 1)[0] if "/" in start else ""
        base = f"{self._root}/{folder}".rstrip("/") if folder else self._root
        try:
            found = self._fs.find(base or "", withdirs=False)
        except FileNotFoundError:
            return
        for path in found:
            key = self._relative(path)
            if key and match(key):
                yield key


def _ts(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str)) or hasattr(value, "isoformat"):
        return value
    return None
