"""`anystore serve`: any store over HTTP, on Starlette and uvicorn (the `serve` extra).

Only the `serve` command imports this module; no other command pays for Starlette or uvicorn.

The API (keys are the url path, percent-encoded; `..` or `.` segments are refused with 400):

- `GET /KEY` streams the value through the store's `open()` handle (never whole in memory on
  file-like stores), with `Content-Length`, `ETag`, `Last-Modified` and a single `Range`
  (206, or 416 when unsatisfiable); `HEAD /KEY` gives the same headers without the body.
- `GET /` and `GET /PREFIX/` list keys: one a line (`text/plain`), a JSON array
  (`Accept: application/json`) or JSON lines (`Accept: application/x-ndjson`); items are the keys,
  or their metadata with `?info=1`. Query parameters `prefix`, `exclude_prefix`, `glob`, `limit`.
  With `Accept: text/html` the same urls give a browsable page for people.
- `PUT /KEY` (the request body streamed into the store's `put_stream`, `?ttl=S`,
  `If-None-Match: *` for no clobber) and `DELETE /KEY` only when the server is writable, and only
  with `Authorization: Bearer TOKEN`.

Errors are one JSON line `{"error": "..."}`: 400 bad key or parameter, 401 no or wrong token,
403 read-only store, 404 missing, 405 not writable, 409/412 exists already, 502 the store failed,
503 the store is unreachable. No traceback and no password reaches a client.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import io
import itertools
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from anystore_cli.errors import (
    AlreadyExists,
    AnystoreError,
    DoesNotExist,
    InvalidKey,
    MissingDependency,
    ReadOnlyError,
    StoreError,
    http_status,
)
from anystore_cli.util.keys import normalize_key
from anystore_cli.util.uri import mask_uri

CHUNK_SIZE = 256 * 1024
"""Bytes read from the store per chunk of a response"""
PAGE_SIZE = 100
"""Entries per page of the html listing"""
MAX_PAGE_SIZE = 1000
MAX_TTL = 100 * 366 * 24 * 3600
"""Longest `?ttl=` taken (the command line's limit)"""
HEADER_TIMEOUT = 10.0
"""Seconds a connection may take to send a request's headers (slow-header attacks)"""
KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection is kept open"""
CONNECTION_LIMIT = 1000
"""Connections (and running requests) served at once; more get 503"""
BODY_IDLE_TIMEOUT = 30.0
"""Seconds an upload may send nothing before it is given up (the old value stays)"""
WRITE_THREADS = 16
"""Uploads streamed into the store at once: a slow upload holds a worker thread, so uploads
have their own pool and can never take the threads reads need"""
_OVERLONG = re.compile(rb"[\xc0\xc1]|\xe0[\x80-\x9f]|\xf0[\x80-\x8f]")

JSON_TYPES = ("application/json",)
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines")


_KEY_ANSWERS: dict[type[AnystoreError], str] = {
    DoesNotExist: "Key `{key}` does not exist",
    AlreadyExists: "Key `{key}` already exists",
    ReadOnlyError: "Key `{key}`: the store is read-only",
}
"""Errors answered in words of their own: the store's message would name the store."""


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


def _preferred(request: Request) -> str:
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


def _error_response(status: int, text: str, headers: dict[str, str] | None = None, head: bool = False) -> Response:
    body = _json({"error": " ".join(text.split())}) + b"\n"
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


class ServedStore:
    """The state of one server: the store, whether it takes writes, its token, its log."""

    def __init__(
        self,
        store: Any,
        writable: bool = False,
        token: str | None = None,
        quiet: bool = False,
        allowed_hosts: Any = None,
    ) -> None:
        self.store = store
        self.writable = writable
        self.token = token
        self.quiet = quiet
        self.label = store_label(store.uri)
        self.allowed_hosts = None if allowed_hosts is None else {host_of(h) for h in allowed_hosts}
        self.write_limiter = anyio.CapacityLimiter(WRITE_THREADS)

    # ---- helpers -------------------------------------------------------------------------

    def log(self, text: str) -> None:
        """One line on stderr, as the rest of the command line writes."""
        if not self.quiet:
            sys.stderr.write(f"anystore: serve: {text}\n")
            sys.stderr.flush()

    def clean(self, text: str) -> str:
        """A store's error message for a client: passwords masked, the store not named."""
        text = mask_uri(text)
        local = store_path(str(self.store.uri))
        names = {mask_uri(self.store.uri), str(self.store.uri), *([local] if local and local != "/" else [])}
        for name in sorted(names, key=len, reverse=True):  # the whole uri before the path inside it
            text = text.replace(f"in store `{name}`", "").replace(f"Store `{name}`", "Store").replace(name, "store")
        return " ".join(text.split())

    def problem(self, exc: BaseException, key: str) -> HttpProblem:
        """The answer for an exception from the store: its status from `HTTP_STATUS`."""
        if isinstance(exc, HttpProblem):
            return exc
        if isinstance(exc, ClientDisconnect):
            return HttpProblem(400, "The client went away before the whole body arrived; nothing was changed")
        status = http_status(exc)
        for cls, text in _KEY_ANSWERS.items():
            if isinstance(exc, cls):
                return HttpProblem(status, text.format(key=key))
        if status < 500 or isinstance(exc, MissingDependency):
            return HttpProblem(status, self.clean(str(exc)))
        if _unreachable(exc):
            return HttpProblem(503, "The store is unreachable: " + self.clean(str(exc)))
        if isinstance(exc, (AnystoreError, OSError)):
            return HttpProblem(status, "The store failed: " + self.clean(str(exc)))
        self.log(f"unexpected {type(exc).__name__}: {self.clean(str(exc))}")
        return HttpProblem(status, f"The store failed ({type(exc).__name__})")

    def authorize(self, request: Request) -> None:
        """Refuse a write unless the server is writable and the bearer token matches."""
        if not self.writable:
            raise HttpProblem(405, "This server is read-only (start it with --writable)", {"Allow": "GET, HEAD"})
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if (
            scheme.lower() != "bearer"
            or not self.token
            or not hmac.compare_digest(given.strip().encode(), self.token.encode())
        ):
            raise HttpProblem(401, "A valid bearer token is needed to write", {"WWW-Authenticate": "Bearer"})

    # ---- the one endpoint ------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Dispatch a request by method and by the shape of its path."""
        started = time.monotonic()
        method = request.method
        head = method == "HEAD"
        key = ""
        try:
            if self.allowed_hosts is not None and host_of(request.headers.get("host", "")) not in self.allowed_hosts:
                # DNS rebinding: a page elsewhere reaching a loopback server by a name it controls
                raise HttpProblem(421, "This server does not answer for the host named in the request")
            key, folder = parse_key_path(request.scope.get("raw_path") or request.url.path.encode())
            if method in ("GET", "HEAD"):
                if folder:
                    response = await self.listing(request, key)
                else:
                    response = await self.read(request, key, head)
            elif method == "PUT" and not folder:
                response = await self.write(request, key)
            elif method == "DELETE" and not folder:
                response = await self.delete(request, key)
            else:
                raise HttpProblem(405, f"{method} is not allowed here", {"Allow": "GET, HEAD, PUT, DELETE"})
        except BaseException as exc:  # noqa: BLE001 - every failure becomes one JSON line
            if not isinstance(exc, Exception):
                raise
            problem = self.problem(exc, key)
            response = _error_response(problem.status, problem.text, problem.headers, head)
        raw = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = raw.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.log(
            f'{stamp} {request.client.host if request.client else "-"} "{method} {target}" '
            f"{response.status_code} {time.monotonic() - started:.3f}s"
        )
        return response

    async def read(self, request: Request, key: str, head: bool) -> Response:
        """GET/HEAD of one key."""
        if head:
            # the size from the store's metadata: a HEAD never reads the value
            stats = await anyio.to_thread.run_sync(self._stats, key)
            if stats is None:
                raise HttpProblem(404, f"Key `{key}` does not exist")
            opened: Any = (None, _nothing, int(stats.size or 0), stats.updated_at)
            created = stats.created_at
        else:
            opened = await anyio.to_thread.run_sync(self._open_value, key)
        if (
            opened is None
            and request.method == "GET"
            and _preferred(request) == "html"
            and await anyio.to_thread.run_sync(self._has_prefix, key + "/")
        ):
            return Response(status_code=301, headers={"Location": _href(key + "/")})
        if opened is None:
            raise HttpProblem(404, f"Key `{key}` does not exist")
        handle, closer, size, updated = opened
        try:
            headers = {
                "Accept-Ranges": "bytes",
                "ETag": etag_for(size, updated),
                "Content-Type": value_type(key),
                # a value is data, never a page of this origin: no sniffing, no scripts, no forms
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; sandbox",
            }
            if updated is not None:
                headers["Last-Modified"] = http_date(updated)
                headers["X-Anystore-Updated-At"] = updated.isoformat()
            if _not_modified(request, headers["ETag"], updated):
                await anyio.to_thread.run_sync(closer)
                return Response(status_code=304, headers={k: headers[k] for k in ("ETag",) if k in headers})
            span = parse_range(request.headers.get("range"), size)
            if span is not None and not _if_range_ok(request, headers["ETag"], updated):
                span = None
            status = 200
            start, end = 0, size
            if span is not None:
                start, end = span
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            headers["Content-Length"] = str(end - start)
        except BaseException:
            await anyio.to_thread.run_sync(closer)
            raise
        if head:
            if created is not None:
                headers["X-Anystore-Created-At"] = created.isoformat()
            return Response(status_code=status, headers=headers)
        return StreamingResponse(_chunks(handle, closer, start, end), status_code=status, headers=headers)

    def _open_value(self, key: str) -> tuple[Any, Any, int, datetime | None] | None:
        """Open `key` for reading: (handle, close function, size, updated_at), None if missing."""
        context = self.store.open(key, "rb")
        try:
            handle = context.__enter__()
        except DoesNotExist:
            return None

        def closer() -> None:
            context.__exit__(None, None, None)

        try:
            size, updated = _handle_stats(handle)
            if size is None or updated is None:
                stats = self.store.info(key)
                size = stats.size if size is None else size
                updated = stats.updated_at if updated is None else updated
        except BaseException:
            closer()
            raise
        return handle, closer, int(size), updated

    def _stats(self, key: str) -> Any:
        try:
            return self.store.info(key)
        except DoesNotExist:
            return None

    def _has_prefix(self, prefix: str) -> bool:
        return next(iter(self.store.iterate_keys(prefix=prefix)), None) is not None

    async def write(self, request: Request, key: str) -> Response:
        """PUT: stream the request body into the store; the old value stays on any failure."""
        self.authorize(request)
        ttl = _int_param(request, "ttl", MAX_TTL) or None
        no_clobber = request.headers.get("if-none-match", "").strip() == "*"
        body = _BodyReader(request.stream())
        existed = None

        def _put() -> int:
            nonlocal existed
            existed = self.store.exists(key) if not no_clobber else False
            return self.store.put_stream(key, body, ttl=ttl, no_clobber=no_clobber)

        size = await anyio.to_thread.run_sync(_put, limiter=self.write_limiter)
        if existed:
            return Response(status_code=204)
        return Response(
            orjson.dumps({"key": key, "size": size}) + b"\n", status_code=201, media_type="application/json"
        )

    async def delete(self, request: Request, key: str) -> Response:
        """DELETE: 204, or 404 when the key was not there."""
        self.authorize(request)
        gone = await anyio.to_thread.run_sync(self.store.delete, key)
        if not gone:
            raise HttpProblem(404, f"Key `{key}` does not exist")
        return Response(status_code=204)

    async def listing(self, request: Request, folder: str) -> Response:
        """GET of `/` or `/PREFIX/`: the keys below, as text, JSON, JSON lines or a page."""
        fmt = _preferred(request)
        base = f"{folder}/" if folder else ""
        prefix = base + request.query_params.get("prefix", "")
        exclude = request.query_params.get("exclude_prefix")
        exclude = base + exclude if exclude else None
        glob = request.query_params.get("glob") or None
        if fmt == "html":
            return await self.page(request, base)
        limit = _int_param(request, "limit")
        with_info = request.query_params.get("info", "") not in ("", "0", "false", "no")
        # find the first key before answering, so a store failure is an error status, not a cut listing
        keys = self.store.iterate_keys(prefix=prefix or None, exclude_prefix=exclude, glob=glob)
        if limit is not None:
            keys = itertools.islice(keys, limit)
        first = await anyio.to_thread.run_sync(next, keys, None)
        found = itertools.chain([] if first is None else [first], keys)
        if request.method == "HEAD":
            return Response(status_code=200, media_type=_listing_type(fmt))
        return StreamingResponse(
            self._listing_lines(found, fmt, with_info),
            media_type=_listing_type(fmt),
            headers={"Cache-Control": "no-store"},
        )

    def _listing_lines(self, keys: Iterator[str], fmt: str, with_info: bool) -> Iterator[bytes]:
        batch: list[bytes] = []
        started = False
        if fmt == "json":
            batch.append(b"[")
        for key in keys:
            if fmt == "text":
                item = key.encode("utf-8", "surrogateescape") + b"\n"
            else:
                value: Any = key
                if with_info:
                    try:
                        value = self._record(key)
                    except DoesNotExist:
                        continue
                item = _json(value)
                if fmt == "json":
                    item = (b"," if started else b"") + item
                else:
                    item += b"\n"
            started = True
            batch.append(item)
            if len(batch) >= 512:
                yield b"".join(batch)
                batch = []
        if fmt == "json":
            batch.append(b"]\n")
        if batch:
            yield b"".join(batch)

    def _record(self, key: str) -> dict[str, Any]:
        stats = self.store.info(key)
        return {
            "key": key,
            "name": stats.name,
            "size": stats.size,
            "created_at": stats.created_at.isoformat() if stats.created_at else None,
            "updated_at": stats.updated_at.isoformat() if stats.updated_at else None,
        }

    async def page(self, request: Request, base: str) -> Response:
        """The html listing of one folder for people: its entries (subfolders and keys) in name
        order, `?limit=` at a time, the next page starting after the last name shown (`?after=`).

        Each page reads the folder's keys once but holds only one page of names, however big
        the folder."""
        from anystore_cli.server.page import render_page

        params = request.query_params
        limit = _int_param(request, "limit", MAX_PAGE_SIZE) or _int_param(request, "per_page", MAX_PAGE_SIZE)
        limit = max(limit or PAGE_SIZE, 1)
        after = params.get("after", "")
        glob = params.get("glob") or None
        name_prefix = params.get("prefix", "")

        def _entries() -> tuple[list[dict[str, Any]], str | None]:
            best: list[str] = []  # the smallest names after the cursor, sorted, one more than shown
            wanted = limit + 1
            # a glob is relative to the folder shown; the name filter applies after it
            listed = (base if glob else base + name_prefix) or None
            for key in self.store.iterate_keys(prefix=listed, glob=glob):
                rest = key[len(base) :]
                if not rest.startswith(name_prefix):
                    continue
                entry = rest.split("/", 1)[0] + "/" if glob is None and "/" in rest else rest
                if entry <= after or (len(best) == wanted and entry >= best[-1]):
                    continue
                index = bisect.bisect_left(best, entry)
                if index < len(best) and best[index] == entry:
                    continue
                best.insert(index, entry)
                if len(best) > wanted:
                    best.pop()
            shown = best[:limit]
            records = []
            for entry in shown:
                is_folder = entry.endswith("/") and glob is None
                name = entry[:-1] if is_folder else entry
                record: dict[str, Any] = {"name": name, "folder": is_folder, "key": base + name}
                if not is_folder:
                    record["inline"] = value_type(name) != "application/octet-stream"
                    try:
                        stats = self.store.info(base + name)
                        record["size"] = stats.size
                        record["updated_at"] = stats.updated_at
                    except DoesNotExist:
                        continue
                records.append(record)
            return records, (shown[-1] if len(best) > limit else None)

        records, next_after = await anyio.to_thread.run_sync(_entries)
        body = render_page(
            store_label=self.label,
            base=base,
            records=records,
            limit=limit,
            after=after,
            next_after=next_after,
            glob=glob or "",
            prefix=name_prefix,
            writable=self.writable,
            origin=str(request.base_url).rstrip("/"),
        )
        if request.method == "HEAD":
            return Response(status_code=200, media_type="text/html; charset=utf-8")
        return Response(body, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def _json(value: Any) -> bytes:
    """Compact JSON; names that are not UTF-8 keep their bytes as `\\udcXX` escapes."""
    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        return json.dumps(value, separators=(",", ":")).encode()


def _listing_type(fmt: str) -> str:
    return {
        "json": "application/json",
        "jsonl": "application/x-ndjson",
        "text": "text/plain; charset=utf-8",
    }.get(fmt, "text/plain; charset=utf-8")


def _href(key: str) -> str:
    return "/" + quote(key, safe="/")


def _int_param(request: Request, name: str, maximum: int = sys.maxsize) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > maximum:
        raise HttpProblem(400, f"`{name}` must be a whole number from 0 to {maximum}, not `{value[:40]}`")
    return int(value)


def _unreachable(exc: BaseException) -> bool:
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


def _handle_stats(handle: Any) -> tuple[int | None, datetime | None]:
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


def _nothing() -> None:
    """Nothing to close."""


def _not_modified(request: Request, etag: str, updated: datetime | None) -> bool:
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


def _if_range_ok(request: Request, etag: str, updated: datetime | None) -> bool:
    condition = request.headers.get("if-range")
    if not condition:
        return True
    if condition.strip().startswith(('"', "W/")):
        return condition.strip() == etag
    try:
        return updated is not None and updated.replace(microsecond=0) <= parsedate_to_datetime(condition)
    except (TypeError, ValueError):
        return False


def _chunks(handle: Any, closer: Any, start: int, end: int) -> Iterator[bytes]:
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


class _BodyReader(io.RawIOBase):
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


def create_app(
    store: Any,
    writable: bool = False,
    token: str | None = None,
    quiet: bool = False,
    allowed_hosts: Iterable[str] | None = None,
) -> Starlette:
    """The ASGI application serving `store`.

    Args:
        store: A store (`anystore_cli.backends` object)
        writable: Take PUT and DELETE (with the bearer token)
        token: The bearer token writes need
        quiet: No request log on stderr
        allowed_hosts: The names a request's `Host` may give (port aside); others get 421.
            None answers any.

    Returns:
        A Starlette application
    """
    served = ServedStore(store, writable=writable, token=token, quiet=quiet, allowed_hosts=allowed_hosts)
    methods = ["GET", "HEAD", "PUT", "DELETE", "POST", "PATCH"]
    app = Starlette(routes=[Route("/{path:path}", served.handle, methods=methods)])
    app.state.served = served
    return app


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


def _quiet_tracebacks(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    logger = logging.getLogger("uvicorn")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)


def _guarded_protocol() -> type:
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


def serve(
    store: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    writable: bool = False,
    token: str | None = None,
    quiet: bool = False,
    allow_hosts: Iterable[str] = (),
) -> None:
    """Serve `store` over HTTP until interrupted; the address goes to stderr once listening.

    On loopback, or given `allow_hosts`, a request must name the bound address, `localhost` or
    an allowed name in its `Host` header (DNS rebinding). Headers must arrive within
    `HEADER_TIMEOUT` seconds, idle connections close after `KEEP_ALIVE_TIMEOUT`, and at most
    `CONNECTION_LIMIT` connections are served at once.

    Raises:
        OSError: If the address cannot be bound
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    app = create_app(
        store, writable=writable, token=token, quiet=quiet, allowed_hosts=allowed_hosts_for(host, allow_hosts)
    )
    mode = "writable with a bearer token" if writable else "read-only"
    sys.stderr.write(f"anystore: serving `{mask_uri(store.uri)}` on http://{shown}:{bound}/ ({mode})\n")
    if host in ("0.0.0.0", "::", ""):
        sys.stderr.write("anystore: warning: listening on every interface: anyone who can reach this host can read\n")
    if writable and host not in ("127.0.0.1", "::1", "localhost"):
        sys.stderr.write("anystore: warning: writable on a public address over plain HTTP; put TLS in front\n")
    if writable and token is not None and len(token) < 16:
        sys.stderr.write("anystore: warning: the bearer token is shorter than 16 characters: easy to guess\n")
    sys.stderr.flush()
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        log_level="warning",
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
        http=_guarded_protocol(),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        limit_concurrency=CONNECTION_LIMIT,
        h11_max_incomplete_event_size=64 * 1024,
    )
    _quiet_tracebacks(quiet)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["create_app", "parse_key_path", "parse_range", "serve"]
