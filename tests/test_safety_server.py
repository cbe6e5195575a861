"""Safety of the served store and its client: what a hostile or misplaced server (a proxy that
redirects, an endless error body, a listing cut by a closed connection) can make the
`anystore+http` client do, and what the server itself refuses (issue 23)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.test_cli_support import CliStore, make_cli_store
from tests.test_serve import TOKEN, Server, http, vm_hwm_mib

Behaviour = Callable[[BaseHTTPRequestHandler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    behaviour: Behaviour

    def log_message(self, *args: Any) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        elif "chunked" in self.headers.get("Transfer-Encoding", ""):
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        try:
            type(self).behaviour(self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_HEAD = do_PUT = do_DELETE = _any


@pytest.fixture
def hostile() -> Iterator[Callable[[Behaviour], str]]:
    """Start a local http server answering every request with a given behaviour; gives its uri."""
    servers: list[ThreadingHTTPServer] = []

    def start(behaviour: Behaviour) -> str:
        handler = type("Handler", (_Handler,), {"behaviour": staticmethod(behaviour)})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"anystore+http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _redirect(status: int) -> Behaviour:
    def behaviour(handler: BaseHTTPRequestHandler) -> None:
        body = b"<html>moved</html>"
        handler.send_response(status)
        handler.send_header("Location", "https://elsewhere.example/new")
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    return behaviour


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_a_store_failure_for_every_command(hostile, tmp_path: Path, status: int) -> None:
    uri = hostile(_redirect(status))
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_bytes(b"A")
    commands = [
        ["put", "k", "v"],
        ["put", "--no-clobber", "k", "v"],
        ["rm", "k"],
        ["get", "k"],
        ["exists", "k"],
        ["keys"],
        ["info", "k"],
    ]
    for command in commands:
        proc = run_cli("-s", uri, *command, input=b"")
        assert proc.returncode == 3, (command, proc.stdout, proc.stderr)
        assert proc.stdout == b"", command
        err = proc.stderr.decode()
        assert str(status) in err and "https://elsewhere.example/new" in err, (command, err)
        assert err.startswith("anystore: error: ") and err.count("\n") == 1, err
    proc = run_cli("mirror", "-i", str(source), "-o", uri, "--delete")
    assert proc.returncode == 3, proc.stderr
    assert str(status).encode() in proc.stderr


def _endless_500(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(500)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    while sent < 4 * 1024**3:  # far more than any client should read; a broken pipe ends it early
        handler.wfile.write(frame)
        sent += len(chunk)


def test_an_endless_error_body_is_not_read_whole(hostile) -> None:
    uri = hostile(_endless_500)
    for command in (["get", "k"], ["keys"], ["put", "k", "v"]):
        proc = run_cli("-s", uri, *command, timeout=120)
        assert proc.returncode == 3, (command, proc.stderr)
        assert b"500" in proc.stderr
        assert len(proc.stderr) < 1000


def _listing_without_length(handler: BaseHTTPRequestHandler) -> None:
    # HTTP/1.0 style: no length, no chunks; the body ends when the connection closes
    handler.protocol_version = "HTTP/1.0"
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.end_headers()
    handler.wfile.write(b'"a"\n"b"\n')
    handler.close_connection = True


def test_a_listing_ended_by_a_closed_connection_is_incomplete(hostile) -> None:
    uri = hostile(_listing_without_length)
    proc = run_cli("-s", uri, "keys")
    assert proc.returncode == 3, proc.stderr
    assert b"incomplete" in proc.stderr
    assert proc.stdout == b""


def _cut_chunked(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b'8\r\n"a"\n"b"\n\r\n')  # and no final zero-length chunk
    handler.close_connection = True


def _cut_by_length(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    handler.wfile.write(b'"a"\n"b"\n')
    handler.close_connection = True


@pytest.mark.parametrize("behaviour", [_cut_chunked, _cut_by_length])
def test_a_listing_cut_short_is_an_error_and_mirror_deletes_nothing(hostile, tmp_path: Path, behaviour) -> None:
    uri = hostile(behaviour)
    destination = tmp_path / "dst"
    destination.mkdir()
    (destination / "keep").write_bytes(b"K")
    proc = run_cli("-s", uri, "keys")
    assert proc.returncode == 3, proc.stderr
    proc = run_cli("mirror", "-i", uri, "-o", str(destination), "--delete")
    assert proc.returncode == 3, proc.stderr
    assert (destination / "keep").read_bytes() == b"K"


def _not_a_listing(handler: BaseHTTPRequestHandler) -> None:
    body = b"<html><body>a web page</body></html>\n" if handler.path == "/" else b'"a"\n1\n'
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_an_answer_that_is_no_listing_is_a_store_failure(hostile) -> None:
    uri = hostile(_not_a_listing)
    for store in (uri, uri + "/sub"):
        proc = run_cli("-s", store, "keys")
        assert proc.returncode == 3, proc.stderr
        assert b"not JSON lines" in proc.stderr and b"Traceback" not in proc.stderr


def _not_found(handler: BaseHTTPRequestHandler) -> None:
    body = b'{"error": "not here"}\n'
    handler.send_response(404)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_served_prefix_answering_404_is_a_store_failure(hostile, tmp_path: Path) -> None:
    uri = hostile(_not_found) + "/nope"
    destination = tmp_path / "dst"
    destination.mkdir()
    (destination / "keep").write_bytes(b"K")
    for args in (
        ["-s", uri, "keys"],
        ["-s", uri, "dump"],
        ["-s", uri, "rm", "--glob", "*"],
        ["mirror", "-i", uri, "-o", str(destination), "--delete"],
        ["check", "-i", uri, "-o", str(destination)],
    ):
        proc = run_cli(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert b"nope/" in proc.stderr and b"404" in proc.stderr, (args, proc.stderr)
    assert (destination / "keep").read_bytes() == b"K"


def _long_line(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-ndjson")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    piece = b"a" * 65536
    for _ in range(64):  # a 4 MiB line, no newline
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
    handler.wfile.write(b"0\r\n\r\n")


def test_an_over_long_listing_line_is_refused(hostile) -> None:
    uri = hostile(_long_line)
    proc = run_cli("-s", uri, "keys")
    assert proc.returncode == 3, proc.stderr
    assert b"longer than" in proc.stderr


def test_listing_lines_are_joined_in_linear_time() -> None:
    # one-byte chunks of a 1 MB line: a join that re-copies (and re-scans) what it holds at each
    # chunk moves 500 GB here and never finishes; a linear one copies the line once
    from anystore_cli.backends.http_client import LineTooLong, split_lines

    size = 1_000_000
    lines = list(split_lines(iter([b"a"] * size + [b"\n", b'"b"\n']), 1024 * 1024))
    assert [len(line) for line in lines] == [size, 3]
    with pytest.raises(LineTooLong):
        list(split_lines(iter([b"a" * 1000] * 2000), 1024 * 1024))


# ---- globs match in linear time ---------------------------------------------------------------

_GLOB_ALPHABET = "ab/.*?[]!-"


@settings(max_examples=2000, deadline=None)
@given(
    pattern=st.text(alphabet=_GLOB_ALPHABET, max_size=9),
    key=st.text(alphabet="ab/.-!", max_size=9),
)
def test_the_linear_glob_matcher_agrees_with_the_regex(pattern: str, key: str) -> None:
    from anystore_cli.errors import InvalidData
    from anystore_cli.util.keys import _Automaton, glob_matcher, glob_to_regex, glob_tokens

    try:
        expected = glob_to_regex(pattern).match(key) is not None
    except InvalidData:  # `[z-a]`: refused the same way by both
        return
    assert _Automaton(glob_tokens(pattern)).matches(key) == expected
    assert glob_matcher(pattern)(key) == expected


PATHOLOGICAL = "*?" * 10


def test_a_pathological_glob_finishes_in_the_cli_and_the_library(tmp_path: Path) -> None:
    # a backtracking match of ten stars against a 60-character name that almost matches tries
    # every way to split it among them: hours; a linear matcher reads it once
    long_name = "a" * 60
    root = tmp_path / "store"
    root.mkdir()
    (root / long_name).write_bytes(b"x")
    (root / "short").write_bytes(b"y")
    hopeless = PATHOLOGICAL + "x"
    for args in (["keys", "--glob", hopeless], ["keys", "--include", hopeless], ["keys", "--exclude", hopeless]):
        proc = run_cli("-s", str(root), *args, timeout=120)
        assert proc.returncode == 0, proc.stderr
        expected = {long_name, "short"} if "--exclude" in args else set()
        assert set(proc.stdout.decode().split()) == expected, args
    code = (
        "from anystore_cli.core import get_store\n"
        f"s = get_store({str(root)!r})\n"
        f"print(sorted(s.iterate_keys(glob={hopeless!r})), sorted(s.iterate_keys(glob={PATHOLOGICAL!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().split() == ["[]", f"['{long_name}']"]


# ---- the server ---------------------------------------------------------------------------------


@pytest.fixture
def folder(store_factory: Any) -> CliStore:
    """A fresh local-folder store."""
    return make_cli_store(store_factory, "local")


@pytest.fixture
def token_path(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(TOKEN + "\n")
    return path


def _raw(port: int, request: bytes) -> bytes:
    """One raw request on a new connection; the whole answer (the server closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"connection: close" not in request.lower():
                head, _, body = data.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
        return data


def test_the_host_header_is_checked_on_loopback(folder, tmp_path: Path) -> None:
    folder.put("a.txt", b"A")
    server = Server(folder, "--allow-host", "files.example")
    try:
        for host, status in (
            ("evil.example", 421),
            (f"evil.example:{server.port}", 421),
            ("127.0.0.1.evil.example", 421),
            ("", 421),
            ("127.0.0.1", 200),
            (f"127.0.0.1:{server.port}", 200),
            (f"localhost:{server.port}", 200),
            ("files.example", 200),
            ("FILES.example:8000", 200),
        ):
            answer = _raw(server.port, f"GET /a.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (host, answer[:200])
            if status == 421:
                assert answer.rsplit(b"\r\n\r\n", 1)[1] != b"A"
        # the page names the store without the server's absolute path
        status, _, body = http("GET", f"{server.url}/", headers={"Accept": "text/html"})
        assert status == 200 and b"a.txt" in body
        assert str(tmp_path).encode() not in body and b"file://" not in body
    finally:
        server.stop()


def test_slow_headers_are_cut_off_and_do_not_starve_readers(folder) -> None:
    folder.put("a.txt", b"A")
    server = Server(folder)
    slow: list[socket.socket] = []
    try:
        for _ in range(150):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the end of the headers
            slow.append(sock)
        status, _, body = http("GET", f"{server.url}/a.txt")
        assert (status, body) == (200, b"A")
        # the server closes a connection whose headers do not arrive in time (recv sees the end)
        assert slow[0].recv(1024) == b""
        # and an idle keep-alive connection after its answer
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(b"GET /a.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while not data.endswith(b"\r\n\r\nA"):
                data += sock.recv(1024)
            assert sock.recv(1024) == b""
    finally:
        for sock in slow:
            sock.close()
        server.stop()


def test_bad_paths_and_parameters_are_400_and_empty_ranges_416(folder, token_path: Path) -> None:
    folder.put("empty", b"")
    server = Server(folder, "--writable", "--token-file", str(token_path))
    try:
        for path in ("/%c0%ae/x", "/%c0%ae%c0%ae/etc/passwd", "/%e0%80%ae/x"):
            status, headers, body = http("GET", server.url + path)
            assert status == 400 and headers["content-type"] == "application/json", (path, body)
            assert json.loads(body)["error"]
        for query in ("limit=99999999999999999999999", "limit=abc", "limit=-1"):
            status, _, body = http("GET", f"{server.url}/?{query}")
            assert status == 400, (query, body)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for ttl in ("99999999999999999999999", "9" * 12, "x"):
            status, _, body = http("PUT", f"{server.url}/k?ttl={ttl}", data=b"v", headers=auth)
            assert status == 400, (ttl, body)
        status, headers, body = http("GET", f"{server.url}/empty", headers={"Range": "bytes=-5"})
        assert status == 416 and headers.get("content-range") == "bytes */0", (status, headers)
        assert "0--1" not in server.log
    finally:
        server.stop()


def test_serve_warns_of_short_tokens_and_every_interface(folder, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("abc123\n")
    server = Server(folder, "--host", "0.0.0.0", "--writable", "--token-file", str(short))
    try:
        status, _, _ = http("GET", f"{server.url}/")
        assert status == 200
        assert "shorter than 16 characters" in server.log
        assert "every interface" in server.log
    finally:
        server.stop()


def test_head_reads_no_value(store_factory) -> None:
    store = make_cli_store(store_factory, "redis")
    store.put("big", b"x" * (50 * 1024 * 1024))
    server = Server(store)
    try:
        status, headers, _ = http("HEAD", f"{server.url}/big")
        assert status == 200 and headers["content-length"] == str(50 * 1024 * 1024)
        before = server.peak_rss_mib()
        threads = [threading.Thread(target=http, args=("HEAD", f"{server.url}/big")) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # reading the value would hold 50 MiB a request; metadata alone adds next to nothing
        assert vm_hwm_mib(server.proc.pid) - before < 60
    finally:
        server.stop()


def test_the_page_pages_by_name_opens_text_inline_and_logs_the_query(folder) -> None:
    for name in ("c.txt", "a.json", "b.html", "d.bin"):
        folder.put(name, b"<script>alert(1)</script>" if name == "b.html" else b'{"x": 1}')
    folder.put("sub/e.txt", b"e")
    server = Server(folder)
    try:
        status, _, body = http("GET", f"{server.url}/?limit=2", headers={"Accept": "text/html"})
        assert status == 200
        page = body.decode()
        assert "a.json" in page and "b.html" in page and "c.txt" not in page
        assert 'href="/?limit=2&amp;after=b.html"' in page
        status, _, body = http("GET", f"{server.url}/?limit=2&after=b.html", headers={"Accept": "text/html"})
        page = body.decode()
        assert "c.txt" in page and "d.bin" in page and "a.json" not in page and "after=d.bin" in page
        status, _, body = http("GET", f"{server.url}/?limit=2&after=d.bin", headers={"Accept": "text/html"})
        assert "sub/" in body.decode() and "after=" not in body.decode().split("</table>")[1]
        # text opens in the browser (no download attribute), a binary value downloads
        first = http("GET", f"{server.url}/", headers={"Accept": "text/html"})[2].decode()
        assert 'href="/c.txt">' in first and 'href="/d.bin" download>' in first
        for key, kind in (("a.json", "application/json"), ("b.html", "text/plain"), ("c.txt", "text/plain")):
            status, headers, _ = http("GET", f"{server.url}/{key}")
            assert status == 200 and headers["content-type"].startswith(kind), (key, headers)
            assert headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in headers["content-security-policy"]
        assert http("GET", f"{server.url}/d.bin")[1]["content-type"] == "application/octet-stream"
        http("GET", f"{server.url}/?glob=*.txt&limit=1")
        line = next(line for line in server.log.splitlines() if "glob=*.txt&limit=1" in line)
        assert re.search(r"serve: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1 \"GET /\?glob=", line), line
    finally:
        server.stop()


def test_a_pathological_glob_does_not_stall_the_server(folder) -> None:
    folder.put("a" * 60, b"x")
    folder.put("short", b"y")
    server = Server(folder)
    try:
        # the request would hold the interpreter for hours with a backtracking matcher
        status, _, body = http("GET", f"{server.url}/?glob={PATHOLOGICAL}x")
        assert (status, body) == (200, b"")
        status, _, body = http("GET", f"{server.url}/?glob={PATHOLOGICAL}")
        assert (status, body) == (200, b"a" * 60 + b"\n")
    finally:
        server.stop()


def test_a_stalled_upload_is_given_up_and_keeps_the_old_value(folder, token_path: Path) -> None:
    folder.put("kept", b"old")
    server = Server(folder, "--writable", "--token-file", str(token_path))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
            sock.sendall(
                b"PUT /kept HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n"
                + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
                + b"new"  # and then nothing more
            )
            answer = b""
            while chunk := sock.recv(65536):  # the server answers and closes
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"stalled" in answer
        assert http("GET", f"{server.url}/kept")[2] == b"old"
        assert "Traceback" not in server.log
    finally:
        server.stop()
