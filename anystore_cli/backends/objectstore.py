"""What object stores (S3, GCS, Azure, ...) add to the fsspec store: buckets (a missing one is
`StoreNotFound`, never a missing key; `create_bucket`), writes that are one object or one
multipart upload aborted on failure, S3's paginated `ListObjectsV2`, its streamed
`GetObject` (`S3BodyReader`), its `CopyObject` between stores on one endpoint, and the
reading of S3 error codes and ETags.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Generator, Iterator
from typing import IO, Any

from anystore_cli.errors import AlreadyExists, StoreError, StoreNotFound
from anystore_cli.util.uri import mask_uri

STREAM_CHUNK = 1024 * 1024
"""Bytes asked of an S3 body at a time when streaming a value (the reader's buffer)"""
COPY_OBJECT_LIMIT = 5 * 1024**3
"""Largest object one CopyObject request may copy; above it s3fs copies in parts"""
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired"}
)


class ObjectStoreMixin:
    """The object-store part of the fsspec `Store` (its host supplies `_fs`, `_root`, `_path`,
    `_is_s3`, `_is_object_store`, `_head` and the error helpers)."""

    _fs: Any
    _root: Any
    _is_s3: Any
    _is_object_store: Any
    _bucket_seen: bool
    _copy_refused: bool

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

    def _bucket_key(self, key: str) -> tuple[str, str]:
        bucket, _, base = self._root.partition("/")
        return bucket, f"{base}/{key}" if base else key

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

    def _endpoint(self) -> str:
        """The S3 endpoint this store talks to ("" for AWS's own)."""
        options = self.storage_options()
        endpoint = options.get("endpoint_url") or (options.get("client_kwargs") or {}).get("endpoint_url")
        endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
        return str(endpoint).rstrip("/")

    def _server_copy(self, source: Any, key: str, size: int | None, ttl: int | None) -> int | None:
        """CopyObject from another S3 store on the same endpoint (s3fs's multipart copy above
        5 GiB). Refused by the endpoint (no read access to the source with these credentials):
        None, and this store streams from then on."""
        if not (
            self._is_s3
            and isinstance(source, ObjectStoreMixin)
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
