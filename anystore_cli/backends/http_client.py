"""A store served by `anystore serve`: `anystore+http://host:port[/prefix]` (and `anystore+https://`).

Speaks the server's HTTP API with urllib3 (in the `serve` extra, and already in the tree
through botocore for S3; no new client library): values stream in both directions (`GET` read in
chunks, `PUT` sent from the source file chunk by chunk), listings arrive as JSON lines.
Writes send the bearer token from `backend_config` `token`, or the first line of the file named
by `token_file`. Timeouts: `connect_timeout` (default 5 s) and `read_timeout` (default 60 s).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Generator, Iterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, ClassVar
from urllib.parse import quote, urlencode, urlsplit

import urllib3

from anystore_cli.errors import (
    AlreadyExists,
    DoesNotExist,
    InvalidUri,
    ReadOnlyError,
    StoreError,
    error_for_status,
)
from anystore_cli.store.base import BaseStore
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.io import DEFAULT_MODE
from anystore_cli.store.options import Option
from anystore_cli.util.keys import listing_prefix
from anystore_cli.util.uri import mask_uri

CHUNK_SIZE = 256 * 1024
SPOOL_SIZE = 8 * 1024 * 1024
"""Bytes `open(key, "wb")` keeps in memory before spilling to a temporary file"""
ERROR_BODY_LIMIT = 64 * 1024
"""Bytes of an error answer read for its message; a longer (or endless) body is cut off"""
MAX_LINE = 1024 * 1024
"""Longest listing line taken: no store has keys near this long, so a longer line is hostile"""
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 60.0

_POOLS: dict[tuple[str, float, float], urllib3.PoolManager] = {}


def _pool(base: str, connect: float, read: float) -> urllib3.PoolManager:
    key = (base, connect, read)
    pool = _POOLS.get(key)
    if pool is None:
        pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=16,
            timeout=urllib3.Timeout(connect=connect, read=read),
            retries=urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0, allowed_methods=["GET", "HEAD"]),
        )
        _POOLS[key] = pool
    return pool


class ServedStore(BaseStore):
    """A store on an `anystore serve` server."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("token", "text", secret=True, help="Bearer token for writes"),
        Option("token_file", "text", help="File whose first line is the token"),
        Option("connect_timeout", "float", help="Seconds to connect"),
        Option("read_timeout", "float", help="Seconds to wait for a reply"),
    )

    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (urllib3.exceptions.HTTPError, OSError)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        parts = urlsplit(self.uri)
        scheme = parts.scheme.lower().split("+", 1)[-1]
        if scheme not in ("http", "https") or not parts.netloc:
            raise InvalidUri(f"Invalid store uri `{mask_uri(self.uri)}`: expected anystore+http(s)://HOST[:PORT]")
        self.base_url = f"{scheme}://{parts.netloc}"
        self.base_path = parts.path.strip("/")
        config = self.backend_config or {}
        self._token = self._read_token(config)
        self._pool = _pool(
            self.base_url,
            float(config.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
            float(config.get("read_timeout") or DEFAULT_READ_TIMEOUT),
        )

    def _read_token(self, config: dict[str, Any]) -> str | None:
        token = config.get("token")
        if token:
            return str(token).strip()
        token_file = config.get("token_file")
        if token_file:
            try:
                with open(os.path.expanduser(str(token_file)), encoding="utf-8") as handle:
                    return handle.readline().strip() or None
            except OSError as exc:
                raise InvalidUri(f"Cannot read the token file `{token_file}`: {exc.strerror or exc}") from None
        return None

    # ---- http ---------------------------------------------------------------------------------

    def _url(self, key: str = "", folder: bool = False, query: dict[str, Any] | None = None) -> str:
        path = "/".join(p for p in (self.base_path, key) if p)
        url = f"{self.base_url}/{quote(path.encode('utf-8', 'surrogateescape'), safe='/')}"
        if folder and path:
            url += "/"
        query = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        return url + ("?" + urlencode(query) if query else "")

    def _headers(self, write: bool = False, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if write and self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    @contextlib.contextmanager
    def _call(self, method: str, key: str | None, **kwargs: Any) -> Generator[Any, None, None]:
        """One request whose body is read by the caller; the connection goes back to the pool
        only when the body was read to its end, otherwise it is closed."""
        url = kwargs.pop("url", None) or self._url(key or "")
        response = self._pool.request(method, url, preload_content=False, redirect=False, **kwargs)
        try:
            yield response
        finally:
            if method == "HEAD" or _consumed(response):
                response.release_conn()
            else:
                response.close()
                response.release_conn()

    def _check(self, response: Any, key: str | None) -> None:
        """Raise the core's exception type for any answer that is not a success (2xx).

        A redirect is a failure too: the client follows none, so a 3xx means nothing was read
        or written (a proxy in front answering 301 must not look like a stored value)."""
        status = response.status
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            location = response.headers.get("Location") or "no Location"
            raise StoreError(
                self._describe(key, f"server answered {status} (redirect to `{mask_uri(location)}`, not followed)")
            )
        message = self._message(response)
        if status == 401:
            hint = " (give the token with -b token=... or -b token_file=...)" if not self._token else ""
            raise StoreError(self._describe(key, f"unauthorized: {message}{hint}"))
        error = error_for_status(status) or StoreError
        if error is StoreError:
            raise StoreError(self._describe(key, f"server answered {status}: {message}"))
        what = {DoesNotExist: "does not exist", AlreadyExists: "already exists", ReadOnlyError: f"refused: {message}"}
        raise error(self._describe(key, what.get(error, message)))

    @staticmethod
    def _message(response: Any) -> str:
        """The text of an error answer, from at most `ERROR_BODY_LIMIT` bytes of its body."""
        try:
            data = response.read(ERROR_BODY_LIMIT) or b""
        except Exception:  # noqa: BLE001 - a body that cannot be read says nothing
            data = b""
        try:
            import orjson

            return str(orjson.loads(data).get("error") or "")
        except Exception:  # noqa: BLE001 - not the server's JSON error
            return " ".join(data[:200].decode("utf-8", "replace").split()) or response.reason or ""

    # ---- primitives ---------------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        with self._call("GET", key) as response:
            if response.status == 404 and not raise_on_nonexist:
                response.read(ERROR_BODY_LIMIT)  # the short error body, so the connection is reused
                return None
            self._check(response, key)
            data = response.read()
        if "b" not in kwargs.get("mode", DEFAULT_MODE):
            return data.decode()
        return data

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._put(key, value, ttl, no_clobber)

    def _put(self, key: str, body: Any, ttl: int | None, no_clobber: bool) -> None:
        headers = self._headers(write=True, **{"Content-Type": "application/octet-stream"})
        if no_clobber:
            headers["If-None-Match"] = "*"
        url = self._url(key, query={"ttl": ttl or None})
        with self._call(
            "PUT", key, url=url, body=body, headers=headers, chunked=not isinstance(body, bytes)
        ) as response:
            self._check(response, key)
            response.read(ERROR_BODY_LIMIT)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        counter = _CountingReader(source)
        self._put(key, _chunks(counter), ttl, no_clobber)
        return counter.count

    def _delete(self, key: str) -> bool:
        with self._call("DELETE", key, headers=self._headers(write=True)) as response:
            if response.status == 404:
                response.read(ERROR_BODY_LIMIT)
                return False
            self._check(response, key)
            response.read(ERROR_BODY_LIMIT)
        return True

    def _exists(self, key: str) -> bool:
        with self._call("HEAD", key) as response:
            if response.status == 404:
                return False
            self._check(response, key)
        return True

    def _info(self, key: str) -> BaseStats:
        with self._call("HEAD", key) as response:
            self._check(response, key)
            headers = response.headers
        updated: datetime | None = None
        if headers.get("X-Anystore-Updated-At"):
            updated = datetime.fromisoformat(headers["X-Anystore-Updated-At"])
        elif headers.get("Last-Modified"):
            updated = parsedate_to_datetime(headers["Last-Modified"])
        created = headers.get("X-Anystore-Created-At")
        return BaseStats(
            size=int(headers.get("Content-Length") or 0),
            created_at=datetime.fromisoformat(created) if created else None,
            updated_at=updated,
        )

    @contextlib.contextmanager
    def _open(self, key: str, mode: str = DEFAULT_MODE, **kwargs: Any) -> Generator[IO[Any], None, None]:
        if "w" in mode or "a" in mode:
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE) as spool:
                handle: Any = spool if "b" in mode else io.TextIOWrapper(spool, encoding="utf-8", write_through=True)
                yield handle
                handle.flush()
                spool.seek(0)
                self._write_stream(key, spool)  # type: ignore[arg-type]
                if handle is not spool:
                    handle.detach()
            return
        with self._call("GET", key) as response:
            self._check(response, key)
            response.auto_close = False
            reader: Any = io.BufferedReader(_Body(response), buffer_size=CHUNK_SIZE)
            if "b" not in mode:
                reader = io.TextIOWrapper(reader, encoding="utf-8")
            yield reader

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        folder = self.base_path
        query = {
            "prefix": prefix or None,
            "exclude_prefix": exclude_prefix or None,
            "glob": glob or None,
        }
        listing_prefix(prefix, glob)  # checks the glob's form before asking
        url = f"{self.base_url}/{quote(folder, safe='/')}{'/' if folder else ''}"
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None}) if any(query.values()) else ""
        shown = f"`{folder}/`" if folder else "`/`"
        with self._call("GET", None, url=url, headers={"Accept": "application/x-ndjson"}) as response:
            if response.status == 404:
                # a listing of a folder that is not served is a store failure, never an empty store
                raise StoreError(self._describe(None, f"the served prefix {shown} answered 404 (not there)"))
            self._check(response, None)
            framing = response.headers.get("Transfer-Encoding", "").lower()
            if "chunked" not in framing and response.headers.get("Content-Length") is None:
                # the end of such a body is the connection closing: a cut listing would look complete
                raise StoreError(
                    self._describe(None, f"the listing of {shown} has no length and no chunked end: incomplete")
                )
            start = len(folder) + 1 if folder else 0
            try:
                for line in split_lines(response.stream(CHUNK_SIZE), MAX_LINE):
                    if line.strip():
                        key = _load_key(line)
                        if not isinstance(key, str):
                            raise ValueError(line[:80])
                        yield key[start:]
            except ValueError as exc:  # not JSON lines of strings: this is no anystore server
                if isinstance(exc, LineTooLong):
                    raise StoreError(
                        self._describe(None, f"a line of the listing of {shown} is longer than {MAX_LINE} bytes")
                    ) from None
                raise StoreError(
                    self._describe(None, f"the listing of {shown} is not JSON lines of keys (not an anystore server?)")
                ) from None


class LineTooLong(ValueError):
    """A line longer than the limit given to `split_lines`."""


def split_lines(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """The `\\n`-separated lines of a stream of chunks, each copied once (linear time, however
    the chunks cut the lines); the last line may lack its newline.

    Raises:
        LineTooLong: When a line grows beyond `limit` bytes (before it is joined)
    """
    parts: list[bytes] = []
    held = 0
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start:end]
            if parts:
                held += len(piece)
                if held > limit:
                    raise LineTooLong(held)
                parts.append(piece)
                piece = b"".join(parts)
                parts, held = [], 0
            elif len(piece) > limit:
                raise LineTooLong(len(piece))
            yield piece
            start = end + 1
        if start < len(chunk):
            parts.append(chunk[start:])
            held += len(chunk) - start
            if held > limit:
                raise LineTooLong(held)
    if parts:
        yield b"".join(parts)


def _consumed(response: Any) -> bool:
    """Tell whether the body of `response` was read to its end (so its connection can be reused)."""
    try:
        return bool(response.isclosed()) or response.length_remaining == 0
    except Exception:  # noqa: BLE001 - when in doubt the connection is closed
        return False


def _load_key(line: bytes) -> str:
    """One key of a JSON lines listing (a `\\udcXX` escape stands for a byte that is not UTF-8)."""
    import json

    import orjson

    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:  # lone surrogates: the standard library reads them
        return json.loads(line)


class _Body(io.RawIOBase):
    """The body of a response as a raw stream; no `fileno()`, so nobody `sendfile`s from the socket."""

    def __init__(self, response: Any) -> None:
        super().__init__()
        self._response = response

    def readable(self) -> bool:
        """Yes."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read the next bytes of the body into `buffer`."""
        return self._response.readinto(buffer)


class _CountingReader:
    """Counts the bytes read through it."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        return data


def _chunks(reader: _CountingReader) -> Iterator[bytes]:
    while chunk := reader.read(CHUNK_SIZE):
        yield chunk
