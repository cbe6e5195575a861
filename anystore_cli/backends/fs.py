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
import os
import threading
from collections.abc import Generator, Iterator
from typing import IO, Any, ClassVar

from anystore_cli.errors import (
    AlreadyExists,
    InvalidUri,
    MissingDependency,
    ReadOnlyError,
    StoreError,
    StoreNotFound,
)
from anystore_cli.store.base import BaseStore, KeyEntry
from anystore_cli.store.io import DEFAULT_MODE, copy_stream, get_filesystem
from anystore_cli.store.model import BaseStats
from anystore_cli.store.options import Option
from anystore_cli.util.keys import is_canonical_key, listing_prefix, make_key_filter
from anystore_cli.util.uri import clean_dict, mask_uri, quote_key, unquote_key

OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "r2", "cos"})
"""Protocols whose first path segment is a bucket and whose writes are atomic per object"""
S3 = frozenset({"s3", "s3a"})
LOCK_FOLDER = ".~anystore-locks/"
"""Where `anystore lock` keeps its leases (see backend/lock.py): no keys"""
DEFAULT_WORKERS = 16
"""Threads of `put_many`/`get_many` on remote filesystems (backend_config `max_workers`)"""
_STORE_OPTIONS = ("max_workers",)
"""backend_config entries that configure the store, not the filesystem"""
_EXTRAS = {"s3": "s3", "s3a": "s3", "http": "remote", "https": "remote"}
"""The extra of anystore-cli that brings a protocol's packages (others: the package fsspec names)"""
STREAM_CHUNK = 1024 * 1024
"""Bytes asked of an S3 body at a time when streaming a value (the reader's buffer)"""
COPY_OBJECT_LIMIT = 5 * 1024**3
"""Largest object one CopyObject request may copy; above it s3fs copies in parts"""
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}
)


class Store(BaseStore):
    """A store on any fsspec filesystem (a `LocalStore` for local paths)."""

    lease_primitive: ClassVar[str | None] = "anystore_cli.backends.leases.s3:S3Leases"  # s3:// only
    # anystore's own and fsspec's generic options; the filesystem class's parameters add to them
    options: ClassVar[tuple[Option, ...]] = (
        Option("max_workers", "int", 16, help="Threads of batched reads and writes"),
        *(Option(n, "float") for n in ("connect_timeout", "read_timeout", "listings_expiry_time")),
        *(Option(n, "int") for n in ("retries", "default_block_size", "max_paths")),
        *(Option(n, "json") for n in ("client_kwargs", "config_kwargs")),
        *(Option(n, "bool") for n in ("use_listings_cache", "skip_instance_cache")),
    )

    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ConnectionError, TimeoutError)
    mtime_precision: ClassVar[float] = 1.0  # S3 and http times are whole seconds

    def __new__(cls, *args: Any, **data: Any) -> Any:
        if cls is Store:
            from anystore_cli.util.uri import ensure_uri

            uri = data.get("uri")
            if uri is not None and ensure_uri(uri).startswith("file://"):
                from anystore_cli.backends.local import LocalStore

                return super().__new__(LocalStore)
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

    def ensure_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Per-call options only: on fsspec stores `backend_config` configures the filesystem
        (see `storage_options`) and is not passed to each call."""
        return clean_dict(kwargs)

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

    def _get_key_prefix(self) -> str:
        return self.uri

    def _path(self, key: str) -> str:
        if self.is_http:
            key = quote_key(key)
        return f"{self._root}/{key}" if self._root else key

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, base = self._root.partition("/")
        return bucket, f"{base}/{key}" if base else key

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

    def _explain_forbidden(self, exc: PermissionError, key: str | None) -> PermissionError:
        """A 403 on `HeadObject` has no body to say why: ask once more with a request that does
        (a one-byte GetObject), so refused credentials are told from a missing permission."""
        if not self._is_s3 or _error_code(exc) not in ("403", None):
            return exc
        try:
            if key is not None:
                bucket, name = self._bucket_key(key)
                self._fs.call_s3("get_object", Bucket=bucket, Key=name, Range="bytes=0-0")
            else:
                bucket, _, base = self._root.partition("/")
                self._fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=base, MaxKeys=1)
        except PermissionError as detailed:
            return detailed
        except Exception:  # noqa: BLE001 - the first error stands
            return exc
        return exc

    def _check_bucket(self, exc: BaseException | None = None) -> None:
        """Raise `StoreError` if the store's bucket does not exist (object stores only).

        A 404 on `HeadObject` does not tell a missing key from a missing bucket, so when the
        error does not say, the bucket is looked up once (a found bucket is remembered).
        """
        if not self._is_object_store or self._bucket_seen:
            return
        code = _error_code(exc)
        if code == "NoSuchKey":
            return
        bucket = self._root.partition("/")[0]
        if code == "NoSuchBucket" or not self._bucket_exists(bucket):
            raise StoreNotFound(self._describe(None, f"bucket `{bucket}` does not exist"))
        self._bucket_seen = True

    def create_bucket(self) -> bool:
        """Create the store's bucket when it does not exist (object stores; as `rclone` does
        for a sync into a new bucket, where the credentials allow).

        Returns:
            Whether a bucket was created (False where the store has none, or it exists)

        Raises:
            StoreError: If the bucket cannot be created (refused, or the name is taken)
        """
        if not self._is_object_store:
            return False
        bucket = self._root.partition("/")[0]
        with self._errors(None):
            if self._bucket_exists(bucket):
                return False
            self._fs.mkdir(bucket, create_parents=True)
            self._fs.invalidate_cache()
        self._bucket_seen = True
        return True

    def _write_refused(self, key: str, exc: FileNotFoundError) -> StoreError:
        """A write answered "not found": the bucket is missing, or the server cannot take the
        key (some S3 servers refuse names with control characters) - a failure of the store,
        never "does not exist" (the key is being created)."""
        self._check_bucket(exc)
        return StoreError(self._describe(key, f"the server refused the write (not found): {mask_uri(exc)}"))

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            if self._is_s3:
                self._fs.call_s3("head_bucket", Bucket=bucket)
                return True
            return bool(self._fs.exists(bucket))
        except FileNotFoundError:
            return False
        except Exception:  # noqa: BLE001 - no right to look (or no answer): assume it is there
            return True

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
    def _object_writer(self, key: str, mode: str, no_clobber: bool) -> Generator[IO[Any], None, None]:
        # a value larger than one block goes up as a multipart upload (5 MiB parts on S3);
        # S3 commits it with `If-None-Match: *` in "x" mode, so no_clobber holds under races
        binary = "b" in mode
        open_mode = ("xb" if no_clobber and self._is_s3 else "wb") if binary else "wb"
        raw = self._fs.open(self._path(key), open_mode)
        handle: Any = raw
        if not binary:
            import io

            handle = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        try:
            yield handle
            if not binary:
                handle.flush()
                handle.detach()
            raw.close()
        except FileExistsError:
            _discard(raw)
            raise AlreadyExists(self._describe(key, "already exists")) from None
        except FileNotFoundError as exc:
            _discard(raw)
            raise self._write_refused(key, exc) from exc
        except BaseException:
            _discard(raw)
            raise

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
        self._fs  # noqa: B018 - create the filesystem before the threads share it
        workers = min(self._workers, len(keys))
        if workers <= 1:
            yield from super()._get_many(keys)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anystore-get") as pool:
            values = pool.map(lambda key: self._read(key, raise_on_nonexist=False), keys)
            yield from zip(keys, values, strict=True)

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
        self._fs  # noqa: B018 - create the filesystem before the threads share it
        workers = min(self._workers, len(keys))
        if workers <= 1:
            yield from super()._info_many(keys)
            return
        from concurrent.futures import ThreadPoolExecutor

        def _ask(key: str) -> BaseStats | None:
            info = self._head(key)
            return None if info is None else _info_stats(info)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anystore-info") as pool:
            yield from zip(keys, pool.map(_ask, keys), strict=True)

    def _iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[tuple[str, BaseStats]]:
        """The listing's own metadata: sizes and times come with the keys (ListObjectsV2 on S3,
        `find(detail=True)` elsewhere)."""
        if self.is_http:  # directory index pages carry no sizes: ask each key
            yield from super()._iterate_infos(prefix, exclude_prefix, glob)
            return
        match = make_key_filter(prefix, exclude_prefix, glob)
        start = listing_prefix(prefix, glob)
        found = self._list_s3(start, detail=True) if self._is_s3 else self._list_fs(start, detail=True)
        for key, info in found:
            if key and match(key):
                if "Size" not in info and info.get("size") is None:  # a listing without sizes
                    info = self._head(key) or info
                yield key, _info_stats(info)

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

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        match = make_key_filter(prefix, exclude_prefix, glob)
        start = listing_prefix(prefix, glob)
        keys = self._list_s3(start) if self._is_s3 else self._list_fs(start)
        for key in keys:
            # never list what `get` cannot read (`../x`, `a//b`), nor the lock leases
            if key and match(key) and is_canonical_key(key) and not key.startswith(LOCK_FOLDER):
                yield key

    def _list_s3(self, start: str, detail: bool = False) -> Iterator[Any]:
        """One paginated ListObjectsV2 under the literal prefix (1000 keys a request); with
        `detail`, `(key, entry)` pairs, the entry holding `Size` and `LastModified`."""
        for key, item in self._list_s3_items(start):
            yield (key, item) if detail else key

    def _list_s3_items(self, start: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """`(key, item)` of every object under the literal prefix, item as ListObjectsV2 gives it."""
        bucket, _, base = self._root.partition("/")
        server_prefix = f"{base}/{start}" if base else start
        cut = len(base) + 1 if base else 0
        request: dict[str, Any] = {"Bucket": bucket, "Prefix": server_prefix}
        while True:
            page = self._fs.call_s3("list_objects_v2", **request)
            for item in page.get("Contents") or ():
                name = item["Key"]
                if not name.endswith("/"):  # "directory" markers are not keys
                    yield name[cut:], item
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            request["ContinuationToken"] = token

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        if not self._is_s3:
            yield from self._iterate_fs_entries(prefix, exclude_prefix, glob)
            return
        match = make_key_filter(prefix, exclude_prefix, glob)
        for key, item in self._list_s3_items(listing_prefix(prefix, glob)):
            if key and match(key):
                modified = _timestamp(item.get("LastModified"))
                yield KeyEntry(
                    key,
                    item.get("Size"),
                    modified.timestamp() if modified is not None else None,
                    plain_md5(item.get("ETag")),
                )

    def _iterate_fs_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[KeyEntry]:
        """Entries from the filesystem's detailed listing (`find(detail=True)`), where it gives one."""
        match = make_key_filter(prefix, exclude_prefix, glob)
        found = self._find(listing_prefix(prefix, glob), detail=True)
        for path, info in found.items():
            key = self._relative(path)
            if not key or not match(key):
                continue
            if info.get("size") is None:
                entry = self._entry(key)
                if entry is not None:
                    yield entry
                continue
            modified = _timestamp(
                info.get("LastModified") or info.get("mtime") or info.get("last_modified") or info.get("updated")
            )
            yield KeyEntry(key, info.get("size"), modified.timestamp() if modified is not None else None)

    def _endpoint(self) -> str:
        """The S3 endpoint this store talks to ("" for AWS's own)."""
        options = self.storage_options()
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        return str(endpoint).rstrip("/")

    def _server_copy(self, source: BaseStore, key: str, size: int | None, ttl: int | None) -> int | None:
        """CopyObject from another S3 store on the same endpoint (s3fs's multipart copy above
        5 GiB). Refused by the endpoint (no read access to the source with these credentials):
        None, and this store streams from then on."""
        if not (
            self._is_s3
            and isinstance(source, Store)
            and source._is_s3
            and not self._copy_refused
            and source._endpoint() == self._endpoint()
        ):
            return None
        self._check_writable(key)
        source_bucket, source_name = source._bucket_key(key)
        bucket, name = self._bucket_key(key)
        try:
            if size is None:
                head = source._head(key)
                if head is None:
                    raise source._missing(key)
                size = int(head.get("size") or 0)
            if size <= COPY_OBJECT_LIMIT:
                self._fs.call_s3(
                    "copy_object",
                    Bucket=bucket,
                    Key=name,
                    CopySource={"Bucket": source_bucket, "Key": source_name},
                )
            else:
                self._fs.copy(f"{source_bucket}/{source_name}", f"{bucket}/{name}")
        except PermissionError:
            self._copy_refused = True
            return None
        except FileNotFoundError as exc:
            source._check_bucket(exc)
            self._check_bucket(exc)
            raise source._missing(key) from None
        return size

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

    def _list_fs(self, start: str, detail: bool = False) -> Iterator[Any]:
        found = self._find(start, detail)
        if detail:
            for path, info in found.items():
                yield self._relative(path), info
            return
        for path in found:
            yield self._relative(path)


class S3BodyReader(io.RawIOBase):
    """A value on S3 read through one GetObject, its body streamed in chunks on s3fs's loop.

    The request is made when the reader is created (a missing key fails there). A seek, or a
    connection that fails part-way (as often as backend option `retries` allows), asks again from the
    offset (`Range: bytes=N-`, `If-Match` the first answer's ETag: a value replaced meanwhile
    fails the read instead of mixing two values).
    """

    def __init__(self, fs: Any, path: str) -> None:
        super().__init__()
        self._fs = fs
        self._bucket, self._key, self._version = fs.split_path(path)
        self._pos = 0
        self._size: int | None = None
        self._etag: str | None = None
        self._body: Any = None
        self._ask()

    def _ask(self) -> None:
        from s3fs.core import version_id_kw

        extra = dict(self._fs.req_kw)
        if self._pos:
            extra["Range"] = f"bytes={self._pos}-"
        if self._etag:
            extra["IfMatch"] = self._etag
        response = self._fs.call_s3(
            "get_object", Bucket=self._bucket, Key=self._key, **version_id_kw(self._version), **extra
        )
        if self._size is None:
            self._size = response.get("ContentLength")
            self._etag = response.get("ETag")
        self._body = response["Body"]

    @property
    def size(self) -> int | None:
        """The value's size in bytes (from the answer's Content-Length)."""
        return self._size

    def _attempts(self) -> int:
        """Reads of the body to try: botocore's attempts per request (backend option `retries`)."""
        retries = (getattr(self._fs, "config_kwargs", None) or {}).get("retries") or {}
        attempts = retries.get("total_max_attempts") or retries.get("max_attempts") or self._fs.retries
        return max(1, int(attempts))

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset`; the next read asks for the rest of the value from there."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._size or 0
        if offset < 0:
            raise OSError(f"negative seek position {offset}")
        if offset != self._pos:
            self._drop_body()
            self._pos = offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        """Read up to len(buffer) bytes of the body into `buffer`; 0 at the end of the value."""
        import asyncio

        from fsspec.asyn import sync
        from s3fs.core import S3_RETRYABLE_ERRORS

        view = memoryview(buffer).cast("B")
        if not len(view) or (self._size is not None and self._pos >= self._size):
            return 0
        failed = 0
        while True:
            try:
                if self._body is None:
                    self._ask()
                data = sync(self._fs.loop, self._body.read, len(view))
                break
            except S3_RETRYABLE_ERRORS as exc:
                self._drop_body()
                failed += 1
                if failed >= self._attempts():
                    if isinstance(exc, OSError):
                        raise
                    raise OSError(f"reading s3://{self._bucket}/{self._key} failed: {exc}") from exc
                sync(self._fs.loop, asyncio.sleep, min(1.7**failed * 0.1, 15))
        size = len(data)
        view[:size] = data
        self._pos += size
        return size

    def close(self) -> None:
        self._drop_body()
        super().close()


def _single_request_options(fs: Any) -> dict[str, Any]:
    """`cat_file` options for one GetObject: s3fs from 2026.3 splits big reads unless told not to;
    older versions have no such option (and make one request anyway)."""
    import inspect

    try:
        parameters = inspect.signature(fs._cat_file).parameters
    except (AttributeError, TypeError, ValueError):
        return {}
    return {"max_concurrency": 1} if "max_concurrency" in parameters else {}


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


def _discard(handle: Any) -> None:
    """Drop a half-written remote file: abort its multipart upload, never complete it."""
    discard = getattr(handle, "discard", None)
    if discard is not None:
        with contextlib.suppress(Exception):
            discard()
    # mark it closed without flushing: closing would upload what the buffer holds
    with contextlib.suppress(Exception):
        handle.closed = True


def _error_code(exc: BaseException | None) -> str | None:
    """The S3 error code behind an exception s3fs translated (`NoSuchBucket`, ...)."""
    seen = 0
    while exc is not None and seen < 5:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            return (response.get("Error") or {}).get("Code")
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _permission_message(exc: PermissionError) -> str:
    code = _error_code(exc)
    detail = exc.strerror or str(exc)
    if code in _CREDENTIAL_CODES:
        return f"credentials refused by the endpoint ({code}: {detail})"
    if code:
        return f"permission denied ({code}: {detail})"
    return f"permission denied ({detail})"


_CLIENT_ERRORS: tuple[type[BaseException], ...] | None = None


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exception types of the remote clients that are loaded (botocore, aiohttp)."""
    global _CLIENT_ERRORS
    if _CLIENT_ERRORS is None:
        import sys

        found: list[type[BaseException]] = []
        if "botocore" in sys.modules or "s3fs" in sys.modules:
            with contextlib.suppress(ImportError):
                from botocore.exceptions import BotoCoreError, ClientError

                found += [BotoCoreError, ClientError]
        if "aiohttp" in sys.modules or "fsspec.implementations.http" in sys.modules:
            with contextlib.suppress(ImportError):
                from aiohttp import ClientError as AiohttpError

                found.append(AiohttpError)
        if not found:
            return ()
        _CLIENT_ERRORS = tuple(found)
    return _CLIENT_ERRORS


def plain_md5(etag: Any) -> str | None:
    """The MD5 an S3 ETag holds: the hex digest of a single-part upload, else None.

    A multipart ETag (`...-N`) is not an MD5 of the value. (Nor is the ETag of an object
    encrypted with SSE-C or SSE-KMS, which a listing cannot tell apart: compare such buckets
    by size and time.)
    """
    if not isinstance(etag, str):
        return None
    etag = etag.strip('"').lower()
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag
    return None


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
