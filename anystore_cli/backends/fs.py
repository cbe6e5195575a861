"""File-like stores: every fsspec filesystem (s3, gs, az, sftp, http, ...).

`Store(uri=...)` gives a `LocalStore` for local paths (plain `os`, no fsspec) and an fsspec
backed store otherwise. `backend_config` is passed to the filesystem as storage options
(`endpoint_url`, `key`, `secret`, `client_kwargs`, ...; see `core.io.remote_defaults` for the
defaults anystore adds), except `max_workers`, the number of threads of the bulk paths.

What each kind of filesystem gets:

- object stores (s3, gs, az, ...) write a value in one request, or stream it in parts with a
  multipart upload that is aborted, never completed, when the write fails; they never create
  buckets, and a missing bucket is a `StoreError`, not a missing key.
- S3 lists keys with one paginated `ListObjectsV2` under the literal prefix of the query (no
  walk per "directory"), which also gives each key's size, time and ETag (`iterate_entries`),
  reads a value with one `GetObject`, streams one too (its body read in chunks: `get -o`,
  `open(key, "rb")`, `stream`; a seek or a dropped connection asks again from the offset), and
  answers `exists`/`info` from one `HeadObject`. A copy
  from S3 to S3 on the same endpoint is one `CopyObject` (a multipart copy above 5 GiB): the
  bytes stay on the server.
- filesystems with real directories (sftp, ftp, smb, ...) write to a temporary name and move
  it over the key when the write succeeded.
- http(s) stores are read-only; keys are percent-quoted in urls and listed from the server's
  directory index pages.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any, ClassVar

from anystore_cli.backends.filelike import FileLikeStore
from anystore_cli.backends.objectstore import (
    STREAM_CHUNK,
    ObjectStoreMixin,
    S3BodyReader,
    _client_errors,
    _permission_message,
    _single_request_options,
    plain_md5,
)
from anystore_cli.errors import (
    AlreadyExists,
    InvalidUri,
    MissingDependency,
    ReadOnlyError,
    StoreError,
    StoreNotFound,
)
from anystore_cli.store.base import KEY_BATCH, Capabilities, KeyEntry
from anystore_cli.store.contract import batched
from anystore_cli.store.entry import BaseStats, entry_from_stats
from anystore_cli.store.io import DEFAULT_MODE, copy_stream, get_filesystem
from anystore_cli.store.lease import LOCK_FOLDER
from anystore_cli.store.options import Option
from anystore_cli.util.keys import is_canonical_key, listing_prefix, make_key_filter
from anystore_cli.util.uri import BUCKET_SCHEMES, clean_dict, mask_uri, quote_key, unquote_key

OBJECT_STORES = BUCKET_SCHEMES
"""Protocols whose first path segment is a bucket and whose writes are atomic per object"""
S3 = frozenset({"s3", "s3a"})
DEFAULT_WORKERS = 16
"""Threads of `put_many`/`get_many` on remote filesystems (backend_config `max_workers`)"""
_STORE_OPTIONS = ("max_workers",)
"""backend_config entries that configure the store, not the filesystem"""
_EXTRAS = {"s3": "s3", "s3a": "s3", "http": "remote", "https": "remote"}
"""The extra of anystore-cli that brings a protocol's packages (others: the package fsspec names)"""


class Store(ObjectStoreMixin, FileLikeStore):
    """A store on any fsspec filesystem (a `LocalStore` for local paths)."""

    # anystore's own and fsspec's generic options; the filesystem class's parameters add to them
    options: ClassVar[tuple[Option, ...]] = (
        Option("max_workers", "int", 16, help="Threads of batched reads and writes"),
        *(Option(n, "float") for n in ("connect_timeout", "read_timeout", "listings_expiry_time")),
        *(Option(n, "int") for n in ("retries", "default_block_size", "max_paths")),
        *(Option(n, "json") for n in ("client_kwargs", "config_kwargs")),
        *(Option(n, "bool") for n in ("use_listings_cache", "skip_instance_cache")),
    )

    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ConnectionError, TimeoutError)
    # S3 and http times are whole seconds; server copies, leases and MD5s (ETags) are S3's
    capabilities: ClassVar[Capabilities] = Capabilities(
        server_copy=True,
        leases="anystore_cli.backends.leases.s3:S3Leases",  # it refuses every scheme but s3://
        md5=True,
        mtime_precision=1.0,
    )

    def __new__(cls, *args: Any, **data: Any) -> Any:
        if cls is Store:
            from anystore_cli.util.uri import ensure_uri

            uri = data.get("uri")
            if uri is not None and ensure_uri(uri).startswith("file://"):
                from anystore_cli.backends.local import LocalStore

                # not a `Store`: Python leaves it as `LocalStore.__init__` made it
                return LocalStore(*args, **data)
        return super().__new__(cls)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.is_http and not self.readonly:
            self.readonly = True
        self._fs_cache: tuple[Any, str] | None = None
        self._fs_lock = threading.Lock()
        self._bucket_seen = False
        self._copy_refused = False
        if not self.is_local:  # local folders never need fsspec (start-up cost)
            _check_protocol(self.scheme, self.uri)

    # ---- fsspec plumbing --------------------------------------------------------------------

    def storage_options(self) -> dict[str, Any]:
        """The fsspec storage options from `backend_config` (store options removed)."""
        config = clean_dict(self.backend_config)
        return {k: v for k, v in config.items() if k not in _STORE_OPTIONS}

    @property
    def _fs(self) -> Any:
        if self._fs_cache is None:
            with self._fs_lock:
                if self._fs_cache is None:
                    self._fs_cache = get_filesystem(self.uri, **self.storage_options())
        return self._fs_cache[0]

    @property
    def _root(self) -> str:
        self._fs  # noqa: B018 - resolves the filesystem and root
        assert self._fs_cache is not None
        return self._fs_cache[1].rstrip("/")

    @property
    def _is_s3(self) -> bool:
        return self.scheme in S3

    @property
    def _is_object_store(self) -> bool:
        return self.scheme in OBJECT_STORES

    @property
    def _workers(self) -> int:
        return max(1, int((self.backend_config or {}).get("max_workers") or DEFAULT_WORKERS))

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

    # ---- errors -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Generator[None, None, None]:
        """The base translation, plus: a missing bucket, refused credentials and the errors of
        the remote clients (botocore, aiohttp) become `StoreError`."""
        with super()._errors(key):
            try:
                yield
            except FileNotFoundError as exc:
                self._check_bucket(exc)
                raise
            except PermissionError as exc:
                raise StoreError(self._describe(key, _permission_message(self._explain_forbidden(exc, key)))) from exc
            except _client_errors() as exc:
                raise StoreError(self._describe(key, f"store failed: {mask_uri(exc)}")) from exc

    # ---- primitives -------------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        mode = kwargs.get("mode", DEFAULT_MODE)
        try:
            if "b" not in mode:
                with self._fs.open(self._path(key), "r") as handle:
                    return handle.read()
            if self._is_s3:
                # one GetObject (s3fs would otherwise ask for the size first)
                return self._fs.cat_file(self._path(key), **_single_request_options(self._fs))
            return self._fs.cat_file(self._path(key))
        except (FileNotFoundError, IsADirectoryError) as exc:
            self._check_bucket(exc)
            if raise_on_nonexist:
                raise self._missing(key) from None
            return None

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._check_writable(key)
        if self._is_object_store:
            self._no_clobber_check(key, no_clobber)
            options = {"mode": "create"} if no_clobber and self._is_s3 else {}
            try:
                self._fs.pipe_file(self._path(key), value, **options)
            except FileExistsError:
                raise AlreadyExists(self._describe(key, "already exists")) from None
            except FileNotFoundError as exc:
                raise self._write_refused(key, exc) from exc
            return
        with self._writer(key, "wb", no_clobber=no_clobber) as handle:
            handle.write(value)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        with self._writer(key, "wb", no_clobber=no_clobber) as handle:
            return copy_stream(source, handle)

    def _check_writable(self, key: str) -> None:
        if self.is_http:
            raise ReadOnlyError(self._describe(key, "http(s) stores are read-only"))

    @contextlib.contextmanager
    def _writer(self, key: str, mode: str = "wb", no_clobber: bool = False) -> Generator[IO[Any], None, None]:
        """Open a remote file for writing: the key changes only when the block succeeds."""
        self._check_writable(key)
        self._no_clobber_check(key, no_clobber)
        if self._is_object_store:
            with self._object_writer(key, mode, no_clobber) as handle:
                yield handle
        else:
            with self._renaming_writer(key, mode) as handle:
                yield handle

    @contextlib.contextmanager
    def _renaming_writer(self, key: str, mode: str) -> Generator[IO[Any], None, None]:
        path = self._path(key)
        import uuid

        temporary = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
        parent = path.rsplit("/", 1)[0]
        if "/" in key:
            self._fs.makedirs(parent, exist_ok=True)
        handle = self._fs.open(temporary, mode)
        try:
            with handle:
                yield handle
            self._fs.mv(temporary, path)
        except BaseException:
            with contextlib.suppress(Exception):
                self._fs.rm_file(temporary)
            raise

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        """Upload in parallel threads: the bulk path of object stores."""
        self._check_writable(items[0][0] if items else "")
        self._fs  # noqa: B018 - create the filesystem before the threads share it
        workers = min(self._workers, len(items))
        if workers <= 1:
            for key, value in items:
                self._write(key, value, ttl=ttl)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anystore-put") as pool:
            for _ in pool.map(lambda item: self._write(item[0], item[1], ttl=ttl), items):
                pass

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        """Download in parallel threads, in the order of `keys`."""
        yield from self._threaded(keys, lambda key: self._read(key, raise_on_nonexist=False), super()._get_many, "get")

    def _threaded(
        self, keys: list[str], ask: Callable[[str], Any], serial: Callable[[list[str]], Iterator], name: str
    ) -> Iterator[tuple[str, Any]]:
        """`(key, ask(key))` in the order of `keys`, asked in parallel threads (`serial` for one)."""
        self._fs  # noqa: B018 - create the filesystem before the threads share it
        workers = min(self._workers, len(keys))
        if workers <= 1:
            yield from serial(keys)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"anystore-{name}") as pool:
            yield from zip(keys, pool.map(ask, keys), strict=True)

    def _delete(self, key: str) -> bool:
        if not self._exists(key):
            return False
        try:
            self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            return False
        return True

    def _head(self, key: str) -> dict[str, Any] | None:
        """The object's metadata, or None if there is no value at `key`."""
        try:
            if self._is_s3:
                bucket, name = self._bucket_key(key)
                head = self._fs.call_s3("head_object", Bucket=bucket, Key=name)
                return {"size": head.get("ContentLength", 0), "LastModified": head.get("LastModified")}
            info = self._fs.info(self._path(key))
        except (FileNotFoundError, IsADirectoryError) as exc:
            self._check_bucket(exc)
            return None
        if info.get("type") == "directory":
            return None
        if self.is_http and str(info.get("url") or "").endswith("/"):
            return None  # redirected to a directory index page: a "directory", not a key
        return info

    def _exists(self, key: str) -> bool:
        return self._head(key) is not None

    def _info(self, key: str) -> BaseStats:
        info = self._head(key)
        if info is None:
            raise self._missing(key)
        return _info_stats(info)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """Ask about the keys in parallel threads, in the order of `keys`."""

        def _ask(key: str) -> BaseStats | None:
            info = self._head(key)
            return None if info is None else _info_stats(info)

        yield from self._threaded(keys, _ask, super()._info_many, "info")

    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Any:
        if "r" in mode and "+" not in mode:
            return self._reader(key, mode)
        return self._writer(key, mode)

    @contextlib.contextmanager
    def _reader(self, key: str, mode: str) -> Generator[IO[Any], None, None]:
        try:
            if self._is_s3 and "b" in mode:
                # one GetObject streamed (fsspec's file would ask for a range per block)
                handle = io.BufferedReader(S3BodyReader(self._fs, self._path(key)), buffer_size=STREAM_CHUNK)
            else:
                handle = self._fs.open(self._path(key), mode)
        except (FileNotFoundError, IsADirectoryError) as exc:
            self._check_bucket(exc)
            raise self._missing(key) from None
        with handle:
            yield handle

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """The listing in batches: one paginated ListObjectsV2 on S3 (1000 keys a request, each
        with its size, time and ETag), the filesystem's recursive listing elsewhere; on http,
        whose index pages carry no sizes, the details are asked for a batch at a time."""
        match = make_key_filter(prefix, exclude_prefix, glob)
        start = listing_prefix(prefix, glob)
        if self._is_s3:
            found: Iterator[tuple[str, Any]] = self._list_s3_items(start)
        else:
            found = self._list_fs(start, detail=detail and not self.is_http)
        for batch in batched(found, KEY_BATCH):
            # never list what `get` cannot read (`../x`, `a//b`), nor the lock leases
            kept = [
                (key, info)
                for key, info in batch
                if key and match(key) and is_canonical_key(key) and not key.startswith(LOCK_FOLDER + "/")
            ]
            if not detail:
                if kept:
                    yield [key for key, _ in kept]
                continue
            entries = self._entries(kept)
            if entries:
                yield entries

    def _entries(self, listed: list[tuple[str, Any]]) -> list[KeyEntry]:
        """The entries of listed `(key, info)` pairs; keys whose info has no size (or none at
        all) are asked about in one `_info_many` (a key gone meanwhile is left out)."""
        entries: dict[str, KeyEntry | None] = {}
        unsized = []
        for key, info in listed:
            if info is None or ("Size" not in info and info.get("size") is None):
                entries[key] = None
                unsized.append(key)
            else:
                entry = entry_from_stats(key, _info_stats(info))
                etag = plain_md5(info.get("ETag"))
                entries[key] = entry._replace(md5=etag) if etag else entry
        for key, stats in self._info_many(unsized) if unsized else ():
            entries[key] = None if stats is None else entry_from_stats(key, stats)
        return [entry for entry in entries.values() if entry is not None]

    def _find(self, start: str, detail: bool) -> Any:
        """The filesystem's recursive listing of the folder holding the keys that start with
        `start` (`find`): paths, or with `detail` a dict of path to info.

        Nothing is empty by accident: where the filesystem has folders (http indexes, sftp),
        a part of the walk that fails is an error, never skipped, and a store root that is not
        there (an index answering 404) is `StoreNotFound`. A missing folder under an existing
        root holds no keys; on object stores a prefix without objects is empty.

        Raises:
            StoreNotFound: The store's root (or bucket) is not there
            StoreError: A part of the listing failed
        """
        folder = start.rsplit("/", 1)[0] if "/" in start else ""
        base = f"{self._root}/{quote_key(folder) if self.is_http else folder}".rstrip("/") if folder else self._root
        self._fs.invalidate_cache()
        try:
            if self._is_object_store:
                return self._fs.find(base or "", withdirs=False, detail=detail)
            found = self._walk_folders(base or "")
        except FileNotFoundError as exc:
            self._check_bucket(exc)
            if self._is_object_store:
                return {} if detail else []
            if self.missing_is_empty or (folder and self._fs.exists(self._root)):
                return {} if detail else []
            raise StoreNotFound(self._describe(None, "does not exist")) from None
        return found if detail else list(found)

    def _walk_folders(self, base: str) -> dict[str, Any]:
        """Every file below the folder `base`, path to info, one `ls` a folder. fsspec's own walk
        leaves out any folder below the first that it cannot read, without a word (its
        `on_error` stops at the first level): here a folder that fails is an error.

        Raises:
            FileNotFoundError: `base` is not there
            StoreError: A folder below it could not be read
        """
        found: dict[str, Any] = {}
        pending = [base]
        while pending:
            path = pending.pop()
            try:
                listing = self._fs.ls(path, detail=True)
            except (FileNotFoundError, OSError) as exc:
                if path == base:
                    raise
                what = (
                    f"the listing is incomplete: could not read the folder `{self._relative(path)}` ({mask_uri(exc)})"
                )
                raise StoreError(self._describe(None, what)) from exc
            here = path.rstrip("/")
            for info in listing:
                name = info["name"].rstrip("/")
                if info.get("type") == "directory":
                    if name != here:
                        pending.append(name)
                else:
                    found[name] = info
        return found

    def _list_fs(self, start: str, detail: bool = False) -> Iterator[tuple[str, Any]]:
        """`(key, info)` of the files of `_find`, info None without `detail`."""
        found = self._find(start, detail)
        if detail:
            for path, info in found.items():
                yield self._relative(path), info
            return
        for path in found:
            yield self._relative(path), None


def _info_stats(info: dict[str, Any]) -> BaseStats:
    """A key's metadata from fsspec's info (or an S3 listing entry): size and timestamps."""
    updated = _timestamp(
        info.get("LastModified")
        or info.get("mtime")
        or info.get("last_modified")
        or info.get("updated")
        or info.get("Last-Modified")
    )
    created = _timestamp(info.get("created") or info.get("timeCreated") or info.get("creation_time"))
    updated, created = updated or created, created or updated
    size = info.get("size")
    return BaseStats(size=info.get("Size") or 0 if size is None else size, created_at=created, updated_at=updated)


def _check_protocol(protocol: str, uri: str) -> None:
    """Raise `MissingDependency` naming the package a protocol needs, `InvalidUri` if unknown."""
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = _EXTRAS.get(protocol)
        hint = f" (pip install 'anystore-cli[{extra}]')" if extra else ""
        raise MissingDependency(f"`{protocol}://` stores need a package that is not installed: {exc}{hint}") from exc
    except ValueError as exc:
        raise InvalidUri(f"Unknown store scheme `{protocol}://` in `{mask_uri(uri)}`") from exc


def _timestamp(value: Any) -> Any:
    """A datetime (or None) from the metadata's timestamp: datetime, epoch or text."""
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        with contextlib.suppress(TypeError, ValueError, IndexError):
            return parsedate_to_datetime(value)
    return None
