"""Generic I/O on any uri: local paths, `-` (stdin/stdout) and every fsspec protocol.

Local paths and `-` never import fsspec, so the common case stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Generator, Iterable, Iterator
from typing import IO, Any, TypeAlias, TypeVar

from anystore_cli.errors import DoesNotExist, InvalidUri, StoreError
from anystore_cli.util.uri import ensure_uri, get_scheme, mask_uri

DEFAULT_MODE = "rb"
DEFAULT_WRITE_MODE = "wb"
CHUNK_SIZE = 1024 * 1024
T = TypeVar("T")
Uri: TypeAlias = "os.PathLike[str] | str | IO[Any]"
"""What the smart_* functions take: a path, a uri, `-` or an open file-like object"""


_STORE_SCHEMES = frozenset(("redis", "rediss", "sqlite", "postgresql", "postgres", "mysql", "mariadb", "anystore"))
"""Schemes (before any `+driver`) of stores that are fsspec protocols too (`backend.protocols`)"""


def _std_stream(mode: str) -> IO[Any]:
    stream = sys.stdin if "r" in mode else sys.stdout
    if "b" in mode:
        return stream.buffer
    return stream


def get_filesystem(uri: str, **storage_options: Any) -> tuple[Any, str]:
    """Return the fsspec filesystem and path for `uri`, with a clear error for a missing package."""
    try:
        import fsspec
        from fsspec.core import url_to_fs
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        from anystore_cli.errors import MissingDependency

        raise MissingDependency("Install fsspec: pip install 'anystore-cli[remote]'") from exc
    protocol = get_scheme(uri)
    if protocol in _STORE_SCHEMES or protocol.split("+", 1)[0] in _STORE_SCHEMES:
        # this project's filesystem, not the registry's: another package (the anystore library)
        # may hold the same protocol names there with other meanings
        from anystore_cli.store.protocols import store_filesystem

        return store_filesystem(uri, **storage_options)
    if protocol and protocol not in fsspec.available_protocols():
        raise InvalidUri(f"Unknown uri scheme `{protocol}://` in `{mask_uri(uri)}`")
    try:
        fs, path = url_to_fs(uri, **remote_defaults(protocol, storage_options))
    except ImportError as exc:
        from anystore_cli.errors import MissingDependency

        raise MissingDependency(f"`{protocol}://` needs a package that is missing: {exc}") from exc
    if protocol in S3_PROTOCOLS:
        # botocore retries each request (see `remote_defaults`); s3fs retrying on top of it
        # would multiply the attempts, and with them the time a dead endpoint takes to fail
        fs.retries = 1
        _drop_expect_continue(fs)
    return fs, path


def _drop_expect_continue(fs: Any) -> None:
    """Send S3 uploads without `Expect: 100-continue`.

    botocore asks for it on PutObject and UploadPart, and aiohttp then waits for the interim
    `100 Continue` before sending the body, a wait no connect or read timeout bounds: an
    endpoint that stops answering would hang every write. Without it the body goes out at once
    and the read timeout covers the wait for the answer.
    """
    if getattr(fs, "asynchronous", False):
        return
    try:
        from botocore.handlers import add_expect_header

        client = fs.s3  # creates the client, without a request
    except Exception:  # noqa: BLE001 - leave the filesystem as it is
        return
    for emitter in (getattr(fs, "session", None), getattr(getattr(client, "meta", None), "events", None)):
        if emitter is not None:
            with contextlib.suppress(Exception):
                emitter.unregister("before-call.s3", add_expect_header)


S3_PROTOCOLS = frozenset({"s3", "s3a"})
S3_BLOCK_SIZE = 5 * 1024 * 1024
"""Part size of streamed S3 uploads and read-ahead of S3 reads (backend_config
`default_block_size`). Peak memory of a stream is about 4-5 blocks whatever the value's size
(measured: 24 MiB at 5 MiB, 37 MiB at 8 MiB); 5 MiB is S3's smallest part, so one streamed
value can reach 10,000 parts = 48.8 GiB; raise it for larger values."""
S3_CONNECT_TIMEOUT = 5
S3_READ_TIMEOUT = 15
S3_RETRIES = 3
"""Attempts per request (botocore "standard" retries, transient errors and throttling)"""


def remote_defaults(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """Fill in the storage options anystore wants for a remote protocol, keeping the caller's.

    For S3: the endpoint from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (passed explicitly, so
    it works whatever the botocore version), bounded timeouts and retries (backend_config
    `connect_timeout`, `read_timeout`, `retries` or a full `config_kwargs`), a 5 MiB part size
    and no listings cache (writes by other processes must show). For http(s): bounded
    connect/read timeouts and no listings cache.

    Args:
        protocol: The uri scheme
        options: Storage options given by the caller (backend_config)

    Returns:
        A new dict of storage options
    """
    options = dict(options)
    if protocol in S3_PROTOCOLS:
        connect_timeout = options.pop("connect_timeout", S3_CONNECT_TIMEOUT)
        read_timeout = options.pop("read_timeout", S3_READ_TIMEOUT)
        retries = int(options.pop("retries", S3_RETRIES))
        client_kwargs = options.get("client_kwargs") or {}
        if not options.get("endpoint_url") and not client_kwargs.get("endpoint_url"):
            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint:
                options["endpoint_url"] = endpoint
        config = dict(options.get("config_kwargs") or {})
        config.setdefault("connect_timeout", connect_timeout)
        config.setdefault("read_timeout", read_timeout)
        config.setdefault("retries", {"total_max_attempts": max(retries, 1), "mode": "standard"})
        config.setdefault("max_pool_connections", 32)
        options["config_kwargs"] = config
        options.setdefault("default_block_size", S3_BLOCK_SIZE)
        options.setdefault("use_listings_cache", False)
    elif protocol in ("http", "https"):
        options.setdefault("use_listings_cache", False)
        client_kwargs = dict(options.get("client_kwargs") or {})
        connect_timeout = float(options.pop("connect_timeout", S3_CONNECT_TIMEOUT))
        read_timeout = float(options.pop("read_timeout", S3_READ_TIMEOUT))
        if "timeout" not in client_kwargs:
            import aiohttp

            client_kwargs["timeout"] = aiohttp.ClientTimeout(
                total=None, sock_connect=connect_timeout, sock_read=read_timeout
            )
        options["client_kwargs"] = client_kwargs
    return options


OPEN_OPTIONS = ("compression", "encoding", "errors", "newline", "block_size", "cache_options")
"""Keyword arguments of `smart_open` that go to the file's `open()`; all others are options of
the filesystem (storage options). With any of these a local path opens through fsspec too (and
is then written in place, not atomically)."""


def is_file_object(uri: Any) -> bool:
    """Tell an open file-like object (`io.BytesIO`, an open file, ...) from a uri or path."""
    if isinstance(uri, (str, bytes, os.PathLike)) or uri is None:
        return False
    return callable(getattr(uri, "read", None)) or callable(getattr(uri, "write", None))


def _open_local(path: str, mode: str, uri: str) -> contextlib.AbstractContextManager[IO[Any]]:
    from anystore_cli.util.files import atomic_open, local_read_open, output_open

    if "r" in mode and "+" not in mode:
        return local_read_open(path, mode, uri)
    if "x" in mode and "+" not in mode:
        return atomic_open(path, mode.replace("x", "w"), no_clobber=True)
    if "w" in mode and "+" not in mode:  # atomic for files; devices, FIFOs, /dev/stdout written into
        return output_open(path, mode)
    return _open_in_place(path, mode, uri)


@contextlib.contextmanager
def _open_in_place(path: str, mode: str, uri: str) -> Generator[IO[Any], None, None]:
    """Append and update modes (`a`, `r+`, `w+`) work on the file itself, not atomically."""
    folder = os.path.dirname(path)
    if folder and "r" not in mode:
        os.makedirs(folder, exist_ok=True)
    try:
        handle = open(path, mode)  # noqa: SIM115 - closed below
    except (FileNotFoundError, NotADirectoryError):
        raise DoesNotExist(f"Does not exist: `{uri}`") from None
    with handle:
        yield handle


@contextlib.contextmanager
def smart_open(uri: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Generator[IO[Any], None, None]:
    """Open any uri like the built-in `open()`; `-` is stdin (read) or stdout (write).

    An open file-like object (`io.BytesIO`, an open file) is used as it is, and left open.
    Local writes to a regular file (or a new path, or through a symlink to a file) are atomic:
    the data goes to a temporary file that replaces the target only when the block ends without
    an error. A device, a FIFO or `/dev/stdout` is written straight into, never replaced; `a`
    and `+` modes work in place.

    Example:
        ```python
        with smart_open("s3://mybucket/foo.csv") as fh:
            data = fh.read()
        ```

    Args:
        uri: Path, uri or file-like object, e.g. `./local/data.txt` or `s3://mybucket/foo`
        mode: Open mode, default `rb`
        **kwargs: `compression` (e.g. "gzip", "infer"), `encoding`, `errors`, `newline`
            for the file; anything else is passed to the fsspec filesystem

    Yields:
        A file-like handle

    Raises:
        DoesNotExist: If the uri does not exist (reading)
        InvalidUri: For an empty uri (a `ValueError`)
    """
    mode = mode or DEFAULT_MODE
    if is_file_object(uri):
        yield uri
        return
    uri = ensure_uri(uri)
    if uri == "-":
        yield _std_stream(mode)
        return
    open_options = {key: kwargs.pop(key) for key in OPEN_OPTIONS if kwargs.get(key) is not None}
    if uri.startswith("file://") and not open_options:
        with _open_local(uri[len("file://") :], mode, uri) as handle:
            yield handle
        return
    fs, path = get_filesystem(uri, **kwargs)
    try:
        handle = fs.open(path, mode, **open_options)
    except FileNotFoundError as exc:
        raise DoesNotExist(f"Does not exist: `{mask_uri(uri)}`") from exc
    except (PermissionError, OSError) as exc:
        raise StoreError(f"Cannot open `{mask_uri(uri)}`: {exc}") from exc
    with handle:
        yield handle


class SmartHandler:
    """`smart_open` as an object: `open()` returns the handle, `close()` closes it.

    Example:
        ```python
        with SmartHandler("s3://mybucket/foo.csv", mode="rb") as fh:
            line = fh.readline()
        ```

    Args:
        uri: Path, uri, file-like object or `-`
        **kwargs: `mode` (default `rb`) and options passed to the fsspec filesystem
    """

    def __init__(self, uri: Any, **kwargs: Any) -> None:
        self.uri = uri
        self.is_buffer = uri == "-" if isinstance(uri, str) else False
        kwargs["mode"] = kwargs.get("mode") or DEFAULT_MODE
        self.kwargs = kwargs
        self.handler: IO[Any] | None = None
        self._context: contextlib.AbstractContextManager[IO[Any]] | None = None

    def open(self) -> IO[Any]:
        """Open the uri and return the handle."""
        self._context = smart_open(self.uri, **self.kwargs)
        self.handler = self._context.__enter__()
        return self.handler

    def close(self) -> None:
        """Close the handle (a local write replaces its target now)."""
        self._exit(None, None, None)

    def _exit(self, *exc_info: Any) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(*exc_info)

    def __enter__(self) -> IO[Any]:
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self._exit(*exc_info)


def smart_read(uri: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Any:
    """Return the whole content of `uri` (`bytes`, or `str` in text mode).

    Args:
        uri: Path, uri, file-like object or `-` (stdin)
        mode: Open mode, default `rb`
        **kwargs: Options passed to the fsspec filesystem
    """
    with smart_open(uri, mode, **kwargs) as handle:
        return handle.read()


def _fit_content(handle: Any, content: bytes | str) -> bytes | str:
    """Encode or decode `content` for a file object that is text (`io.StringIO`) or binary."""
    if _is_text(handle):
        return content.decode() if isinstance(content, (bytes, bytearray)) else content
    return content.encode() if isinstance(content, str) else content


def smart_write(uri: Any, content: bytes | str, mode: str | None = DEFAULT_WRITE_MODE, **kwargs: Any) -> None:
    """Write `content` to `uri` (`-` is stdout; a file-like object is written to, left open).

    Args:
        uri: Path, uri, file-like object or `-`
        content: `bytes` or `str`
        mode: Open mode, default `wb` (`ab` appends)
        **kwargs: Options passed to the fsspec filesystem
    """
    mode = mode or DEFAULT_WRITE_MODE
    if is_file_object(uri):
        uri.write(_fit_content(uri, content))
        return
    if isinstance(content, str) and "b" in mode:
        content = content.encode()
    elif isinstance(content, bytes) and "b" not in mode:
        mode += "b"
    with smart_open(uri, mode, **kwargs) as handle:
        handle.write(content)
        if uri == "-":
            handle.flush()


def smart_stream(uri: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Iterator[Any]:
    """Yield the content of `uri` line by line (`bytes`, or `str` in text mode)."""
    with smart_open(uri, mode, **kwargs) as handle:
        yield from handle


def smart_stream_json(uri: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Iterator[Any]:
    """Yield the objects of a JSON lines file (blank lines are skipped).

    Example:
        ```python
        for data in smart_stream_json("s3://mybucket/data.json"):
            print(data.get("foo"))
        ```
    """
    import orjson

    for line in smart_stream(uri, mode, **kwargs):
        if line.strip():
            yield orjson.loads(line)


def smart_write_json(uri: Any, items: Iterable[Any], mode: str | None = DEFAULT_WRITE_MODE, **kwargs: Any) -> None:
    """Write `items` (dicts or anything orjson can dump) to `uri` as JSON lines.

    Args:
        uri: Path, uri, file-like object or `-`
        items: The objects to write, one a line
        mode: Open mode, default `wb`
        **kwargs: Options passed to the fsspec filesystem
    """
    import orjson

    mode = mode or DEFAULT_WRITE_MODE
    with smart_open(uri, mode, **kwargs) as handle:
        text = _is_text(handle) if is_file_object(uri) else "b" not in mode
        for item in items:
            line = orjson.dumps(item, option=orjson.OPT_APPEND_NEWLINE)
            handle.write(line.decode() if text else line)


def _is_text(handle: Any) -> bool:
    import io

    return isinstance(handle, io.TextIOBase)


def copy_stream(source: IO[bytes], target: IO[bytes], chunk_size: int = CHUNK_SIZE) -> int:
    """Copy a binary stream in chunks; between real files the kernel copies (`sendfile`).

    Returns:
        The number of bytes copied
    """
    total = 0
    try:
        in_fd, out_fd = source.fileno(), target.fileno()
        offset = source.tell()
    except (AttributeError, OSError, ValueError):
        in_fd = out_fd = -1
    if in_fd >= 0 and out_fd >= 0 and hasattr(os, "sendfile"):
        target.flush()
        try:
            while True:
                try:
                    sent = os.sendfile(out_fd, in_fd, offset + total, 1 << 30)
                except BlockingIOError:  # a non-blocking pipe is full: wait for its reader
                    import select

                    select.select([], [out_fd], [])
                    continue
                if not sent:
                    break
                total += sent
        except OSError as exc:
            if total or exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EBADF):
                raise
        else:
            source.seek(offset + total)
            return total
    read = getattr(source, "read1", source.read)
    while chunk := read(chunk_size):
        target.write(chunk)
        total += len(chunk)
    return total
