"""`anystore serve`: any store over HTTP, on Starlette and uvicorn (the `serve` extra).

The routes; the HTTP helpers they use (keys from paths, ranges, etags, limits, the Host check)
are in `anystore_cli.server.http`. Only the `serve` command imports this module; no other command
pays for Starlette or uvicorn.

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
import dataclasses
import hmac
import itertools
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from anystore_cli.config.settings import MAX_TTL
from anystore_cli.errors import (
    AlreadyExists,
    AnystoreError,
    DoesNotExist,
    MissingDependency,
    ReadOnlyError,
    http_status,
)
from anystore_cli.server.http import (
    CONNECTION_LIMIT,
    KEEP_ALIVE_TIMEOUT,
    BodyReader,
    HttpProblem,
    allowed_hosts_for,
    error_response,
    etag_for,
    guarded_protocol,
    handle_stats,
    host_of,
    href,
    http_date,
    if_range_ok,
    int_param,
    json_bytes,
    listing_type,
    not_modified,
    nothing,
    parse_key_path,
    parse_range,
    preferred_type,
    quiet_tracebacks,
    store_label,
    store_path,
    unreachable,
    value_chunks,
    value_type,
)
from anystore_cli.util.uri import mask_uri

PAGE_SIZE = 100
"""Entries per page of the html listing"""

MAX_PAGE_SIZE = 1000

WRITE_THREADS = 16
"""Uploads streamed into the store at once: a slow upload holds a worker thread, so uploads
have their own pool and can never take the threads reads need"""

_KEY_ANSWERS: dict[type[AnystoreError], str] = {
    DoesNotExist: "Key `{key}` does not exist",
    AlreadyExists: "Key `{key}` already exists",
    ReadOnlyError: "Key `{key}`: the store is read-only",
}
"""Errors answered in words of their own: the store's message would name the store."""


@dataclasses.dataclass(eq=False)
class ServedStore:
    """The state of one server: the store, whether it takes writes, its token, its log."""

    store: Any
    writable: bool = False
    token: str | None = None
    quiet: bool = False
    allowed_hosts: Any = None
    """The hosts the server answers for (None: any), kept as `host_of` gives them"""

    def __post_init__(self) -> None:
        self.label = store_label(self.store.uri)
        if self.allowed_hosts is not None:
            self.allowed_hosts = {host_of(host) for host in self.allowed_hosts}
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
        if unreachable(exc):
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
            response = error_response(problem.status, problem.text, problem.headers, head)
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
            opened: Any = (None, nothing, int(stats.size or 0), stats.updated_at)
            created = stats.created_at
        else:
            opened = await anyio.to_thread.run_sync(self._open_value, key)
        if (
            opened is None
            and request.method == "GET"
            and preferred_type(request) == "html"
            and await anyio.to_thread.run_sync(self._has_prefix, key + "/")
        ):
            return Response(status_code=301, headers={"Location": href(key + "/")})
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
            if not_modified(request, headers["ETag"], updated):
                await anyio.to_thread.run_sync(closer)
                return Response(status_code=304, headers={k: headers[k] for k in ("ETag",) if k in headers})
            span = parse_range(request.headers.get("range"), size)
            if span is not None and not if_range_ok(request, headers["ETag"], updated):
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
        return StreamingResponse(value_chunks(handle, closer, start, end), status_code=status, headers=headers)

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
            size, updated = handle_stats(handle)
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
        ttl = int_param(request, "ttl", MAX_TTL) or None
        no_clobber = request.headers.get("if-none-match", "").strip() == "*"
        body = BodyReader(request.stream())
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
        fmt = preferred_type(request)
        base = f"{folder}/" if folder else ""
        prefix = base + request.query_params.get("prefix", "")
        exclude = request.query_params.get("exclude_prefix")
        exclude = base + exclude if exclude else None
        glob = request.query_params.get("glob") or None
        if fmt == "html":
            return await self.page(request, base)
        limit = int_param(request, "limit")
        with_info = request.query_params.get("info", "") not in ("", "0", "false", "no")
        # find the first key before answering, so a store failure is an error status, not a cut listing
        keys = self.store.iterate_keys(prefix=prefix or None, exclude_prefix=exclude, glob=glob)
        if limit is not None:
            keys = itertools.islice(keys, limit)
        first = await anyio.to_thread.run_sync(next, keys, None)
        found = itertools.chain([] if first is None else [first], keys)
        if request.method == "HEAD":
            return Response(status_code=200, media_type=listing_type(fmt))
        return StreamingResponse(
            self._listing_lines(found, fmt, with_info),
            media_type=listing_type(fmt),
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
                item = json_bytes(value)
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
        limit = int_param(request, "limit", MAX_PAGE_SIZE) or int_param(request, "per_page", MAX_PAGE_SIZE)
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
        http=guarded_protocol(),
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        limit_concurrency=CONNECTION_LIMIT,
        h11_max_incomplete_event_size=64 * 1024,
    )
    quiet_tracebacks(quiet)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["create_app", "parse_key_path", "parse_range", "serve"]
