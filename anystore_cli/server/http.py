"""HTTP helpers of `anystore serve`: paths to keys, ranges, etags, content types, limits and the
Host check, the streamed request body and uvicorn's guarded protocol and log lines."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response

from anystore_cli.errors import InvalidKey, StoreError
from anystore_cli.util.keys import normalize_key
from anystore_cli.util.uri import mask_uri

CHUNK_SIZE = 256 * 1024
"""Bytes read from the store per chunk of a response"""


HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a request's headers (slow-header attacks)"""

KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection is kept open"""

CONNECTION_LIMIT = 1000
"""Connections (and running requests) served at once; more get 503"""

BODY_IDLE_TIMEOUT = 30.0
"""Seconds an upload may send nothing before it is given up (the old value stays)"""

_OVERLONG = re.compile(rb"[\xc0\xc1]|\xe0[\x80-\x9f]|\xf0[\x80-\x8f]")

JSON_TYPES = ("application/json",)

JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines")


class HttpProblem(Exception):
    """An error answer: status and one line of text."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or {}


class BodyStalled(HttpProblem):
    """The client stopped sending the request body (408)."""

    def __init__(self, text: str) -> None:
        super().__init__(408, text, {"Connection": "close"})


def parse_key_path(raw_path: bytes) -> tuple[str, bool]:
    """The key (or listing prefix) named by a raw url path, and whether it names a folder.

    The path is split on `/` after percent-decoding; an empty path or one ending in `/` is a
    folder (a listing). A `..` or `.` segment (also as `%2e%2e`) or a NUL byte is refused, so no
    request reaches outside the store.

    Raises:
        HttpProblem: 400 for a key that tries to escape or cannot be read
    """
    path = raw_path.split(b"?", 1)[0]
    # names that are not UTF-8 (a local folder may hold them) pass as the CLI passes them
    raw = unquote_to_bytes(path)
    if _OVERLONG.search(raw):  # `%c0%ae` spells `.` in no UTF-8, only in broken decoders
        raise HttpProblem(400, "Invalid key: overlong UTF-8 in the path")
    text = raw.decode("utf-8", "surrogateescape")
    segments = text.split("/")
    if segments and segments[0] == "":
        segments = segments[1:]
    folder = not segments or segments[-1] == ""
    inner = [s for s in segments if s != ""]
    if any(s in (".", "..") for s in inner) or "\x00" in text:
        raise HttpProblem(400, f"Invalid key `{text}`: `.`, `..` segments and NUL bytes are not allowed")
    key = "/".join(inner)
    if key:
        try:
            key = normalize_key(key)
        except InvalidKey as exc:
            raise HttpProblem(400, str(exc)) from None
    return key, folder


def etag_for(size: int, updated_at: datetime | None) -> str:
    """A strong validator from a value's size and modification time (the same instant gives
    the same tag, whatever its time zone)."""
    stamp = repr(updated_at.timestamp()) if updated_at is not None else ""
    digest = hashlib.sha1(f"{size}:{stamp}".encode(), usedforsecurity=False).hexdigest()[:20]
    return f'"{digest}"'


def http_date(value: datetime) -> str:
    """An HTTP date (`Last-Modified`) for a timestamp."""
    if value.tzinfo is None:
        value = value.astimezone()
    return format_datetime(value.astimezone(timezone.utc), usegmt=True)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The byte range `(start, end)` (end exclusive) of a `Range` header, or None for the whole value.

    A header that is not one `bytes=` range (several ranges, another unit, bad syntax) is
    ignored, as RFC 9110 allows: the whole value is sent.

    Raises:
        HttpProblem: 416 when the range lies beyond the value
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    unsatisfiable = HttpProblem(416, "Range not satisfiable", {"Content-Range": f"bytes */{size}"})
    try:
        if first == "":
            if not last.isdigit():
                return None
            length = int(last)
            if length == 0 or size == 0:  # no last bytes of nothing (never `0--1/0`)
                raise unsatisfiable
            return max(size - length, 0), size
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if end <= start and last:
        return None
    if start >= size:
        raise unsatisfiable
    return start, min(end, size)


def preferred_type(request: Request) -> str:
    """The listing format a request asks for: html, json, jsonl or text."""
    accept = request.headers.get("accept", "").lower()
    fmt = request.query_params.get("format", "").lower()
    if fmt in ("html", "json", "jsonl", "text"):
        return fmt
    if any(t in accept for t in JSONL_TYPES):
        return "jsonl"
    if any(t in accept for t in JSON_TYPES):
        return "json"
    if "text/html" in accept:
        return "html"
    return "text"


def error_response(status: int, text: str, headers: dict[str, str] | None = None, head: bool = False) -> Response:
    """An error answer: `{"error": TEXT}` on one line, no body for HEAD, never cached."""
    body = json_bytes({"error": " ".join(text.split())}) + b"\n"
    return Response(
        b"" if head else body,
        status_code=status,
        media_type="application/json",
        headers={**(headers or {}), "Content-Length": str(len(body)), "Cache-Control": "no-store"},
    )


def store_label(uri: str) -> str:
    """The store as the page names it: a store in a local file or folder (a folder, a zip, an
    SQLite file) by its own name, never by the server's absolute path; other uris masked."""
    local = store_path(uri)
    if local is None:
        return mask_uri(uri)
    name = local.rstrip("/").rsplit("/", 1)[-1] or "/"
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    return name if scheme in ("", "file") else f"{scheme}://.../{name}"


def store_path(uri: str) -> str | None:
    """The absolute local path a store uri names, or None for a store elsewhere."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(uri)
    if not parts.scheme:
        return uri
    if parts.netloc or not parts.path.startswith("/"):
        return None
    return "/" + unquote(parts.path).lstrip("/")


def host_of(header: str) -> str:
    """The host name of a `Host` header, without its port, lower case (`[::1]` keeps brackets)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value.split("]", 1)[0] + "]"
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def json_bytes(value: Any) -> bytes:
    """Compact JSON; names that are not UTF-8 keep their bytes as `\\udcXX` escapes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        return json.dumps(value, separators=(",", ":")).encode()


def listing_type(fmt: str) -> str:
    """The content type of a listing format (`json`, `jsonl`, `text`)."""
    return {
        "json": "application/json",
        "jsonl": "application/x-ndjson",
        "text": "text/plain; charset=utf-8",
    }.get(fmt, "text/plain; charset=utf-8")


def href(key: str) -> str:
    """The url path of a key."""
    return "/" + quote(key, safe="/")


def int_param(request: Request, name: str, maximum: int = sys.maxsize) -> int | None:
    """A whole-number query parameter, or None when absent; anything else is a 400."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > maximum:
        raise HttpProblem(400, f"`{name}` must be a whole number from 0 to {maximum}, not `{value[:40]}`")
    return int(value)


def unreachable(exc: BaseException) -> bool:
    """The store could not be reached (connection refused, timed out): 503 rather than 502."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        name = type(current).__name__
        if name in ("ConnectionError", "TimeoutError", "OperationalError") and "connect" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def handle_stats(handle: Any) -> tuple[int | None, datetime | None]:
    """Size and modification time of an open handle where it can tell (a real file, a buffer)."""
    import os

    try:
        stat = os.fstat(handle.fileno())
        return stat.st_size, datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    getbuffer = getattr(handle, "getbuffer", None)
    if getbuffer is not None:
        return len(getbuffer()), None
    return None, None


_INLINE_IMAGES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp")


def value_type(key: str) -> str:
    """The `Content-Type` of a value, from its key's extension: JSON as JSON, any text (HTML,
    scripts and SVG included) as `text/plain` so a browser shows it and never runs it, common
    images as themselves, everything else `application/octet-stream`."""
    import mimetypes

    guessed, _ = mimetypes.guess_type(key, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed == "application/json" or guessed.endswith("+json"):
        return "application/json"
    if guessed in _INLINE_IMAGES:
        return guessed
    textual = ("application/javascript", "application/xml", "application/x-yaml", "application/yaml", "image/svg+xml")
    if guessed.startswith("text/") or guessed in textual:
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def nothing() -> None:
    """Nothing to close."""


def not_modified(request: Request, etag: str, updated: datetime | None) -> bool:
    """The client's copy is current (`If-None-Match`, else `If-Modified-Since`): answer 304."""
    match = request.headers.get("if-none-match")
    if match is not None:
        return match.strip() == "*" or etag in [m.strip().removeprefix("W/") for m in match.split(",")]
    since = request.headers.get("if-modified-since")
    if since and updated is not None:
        try:
            return updated.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def if_range_ok(request: Request, etag: str, updated: datetime | None) -> bool:
    """The `Range` applies: no `If-Range`, or it names the current etag or a time not before
    the last update (else the whole value is sent)."""
    condition = request.headers.get("if-range")
    if not condition:
        return True
    if condition.strip().startswith(('"', "W/")):
        return condition.strip() == etag
    try:
        return updated is not None and updated.replace(microsecond=0) <= parsedate_to_datetime(condition)
    except (TypeError, ValueError):
        return False


def value_chunks(handle: Any, closer: Any, start: int, end: int) -> Iterator[bytes]:
    """The bytes `start:end` of an open handle, in chunks; closes the handle at the end."""
    try:
        if start:
            try:
                handle.seek(start)
            except (AttributeError, OSError, io.UnsupportedOperation):
                skip = start
                while skip > 0:
                    chunk = handle.read(min(CHUNK_SIZE, skip))
                    if not chunk:
                        return
                    skip -= len(chunk)
        left = end - start
        while left > 0:
            chunk = handle.read(min(CHUNK_SIZE, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    except Exception as exc:
        # the status line is sent: the client sees the body cut short, the log says why
        raise StoreError(f"the store failed while sending a value: {mask_uri(exc)}") from None
    finally:
        closer()


class BodyReader(io.RawIOBase):
    """A blocking file-like view of a request body, read from a worker thread."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        """Yes."""
        return True

    async def _next(self) -> bytes:
        with anyio.fail_after(BODY_IDLE_TIMEOUT):
            return await self._chunks.__anext__()

    def _fill(self) -> None:
        while not self._buffer and not self._done:
            try:
                self._buffer = anyio.from_thread.run(self._next)
            except StopAsyncIteration:
                self._done = True
            except TimeoutError:
                raise BodyStalled(
                    f"The request body stalled for {BODY_IDLE_TIMEOUT:.0f} s; nothing was changed"
                ) from None

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left for -1); b"" at the end."""
        if size is None or size < 0:
            parts = []
            while True:
                self._fill()
                if not self._buffer:
                    return b"".join(parts)
                parts.append(self._buffer)
                self._buffer = b""
        self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    read1 = read

    def readinto(self, target: Any) -> int:
        """Fill `target` with the next bytes."""
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


class OneLineFormatter(logging.Formatter):
    """uvicorn's own log records as one masked line each, like the rest of the command line:
    an exception is named with its message, never as a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """`anystore: serve: MESSAGE[: Type: text]`, passwords masked."""
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = f"{text.strip()}: {type(exc).__name__}: {exc}"
        return "anystore: serve: " + mask_uri(" ".join(text.split()))


def quiet_tracebacks(quiet: bool) -> None:
    """Route uvicorn's log through `OneLineFormatter` (errors only when `quiet`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    logger = logging.getLogger("uvicorn")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)


def guarded_protocol() -> type:
    """uvicorn's h11 protocol with a deadline for each request's headers: uvicorn closes idle
    keep-alive connections but waits forever for the first bytes, or for headers sent a byte
    at a time, so slow connections would pile up to the connection limit."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            deadline = getattr(self, "_header_deadline", None)
            if deadline is not None:
                deadline.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            waiting_after = self.cycle
            previous = getattr(self, "_header_deadline", None)
            if previous is not None:
                previous.cancel()

            def expire() -> None:
                # no new request began since the deadline was set: its headers are too slow
                if self.cycle is waiting_after and not self.transport.is_closing():
                    self.transport.close()

            self._header_deadline = self.loop.call_later(HEADER_TIMEOUT, expire)

    return GuardedH11Protocol


def allowed_hosts_for(host: str, allow: Iterable[str] = ()) -> list[str] | None:
    """The `Host` names a server bound to `host` answers for: on loopback (or with names
    allowed explicitly) its address, `localhost` and the allowed names; None (any) otherwise."""
    import ipaddress

    allow = list(allow)
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow:
        return None
    bracketed = f"[{host}]" if ":" in host else host
    names = [bracketed, "localhost", *allow]
    if host == "localhost":  # the name resolves to either loopback address
        names += ["127.0.0.1", "[::1]"]
    return names
