"""`anystore serve`: the server as a real process, checked with curl (or urllib), with the
`anystore+http://` client, and with a real headless browser for the page."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, anystore_bin, run_cli
from tests.test_cli_support import CLI_BACKENDS, CliStore, make_cli_store

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

TOKEN = "s3cret-token-for-tests"
MIB = 1024 * 1024


class Server:
    """`anystore -s URI serve --port 0 ...` running in the background."""

    def __init__(self, store: CliStore, *args: str, env: dict[str, str] | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [anystore_bin(), *store.global_args, "serve", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=environ,
            cwd=store.tmp_path,
        )
        self.lines: list[str] = []
        self.port: int | None = None
        ready = threading.Event()

        def _drain() -> None:
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", "replace")
                self.lines.append(line)
                if self.port is None and " on http://" in line:
                    self.port = int(line.split(" on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
                    ready.set()
            ready.set()

        threading.Thread(target=_drain, daemon=True).start()
        ready.wait(30)
        assert self.port is not None, self.log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_uri(self) -> str:
        return f"anystore+http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def peak_rss_mib(self) -> float:
        """The server's peak resident memory so far (VmHWM)."""
        return vm_hwm_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def vm_hwm_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a running process, in MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def http(
    method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib: (status, headers, body), error statuses included."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


CURL = shutil.which("curl")


def curl(*args: str) -> tuple[int, bytes]:
    """curl with the status code on the last line of stdout: (status, body)."""
    assert CURL is not None
    proc = subprocess.run(
        [CURL, "-sS", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    body, _, status = proc.stdout.rpartition(b"\n")
    return int(status), body


def assert_json_error(body: bytes, *fragments: str) -> str:
    """A one-line JSON error: `{"error": "..."}`, no traceback, no token."""
    assert body.endswith(b"\n") and body.count(b"\n") == 1, body
    message = json.loads(body)["error"]
    assert "Traceback" not in message and TOKEN not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token.txt"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def folder_store(store_factory: Any) -> CliStore:
    """A fresh local-folder store."""
    return make_cli_store(store_factory, "local")


@pytest.fixture(params=CLI_BACKENDS)
def served(request: pytest.FixtureRequest, store_factory: Any, token_file: Path) -> Any:
    """A writable server in front of a fresh store on local, sqlite and Redis."""
    store = make_cli_store(store_factory, request.param)
    server = Server(store, "--writable", "--token-file", str(token_file))
    yield store, server
    server.stop()


def client(server: Server, *args: str, token: bool = False, input: bytes | None = None) -> Any:
    """`anystore -s anystore+http://... ARGS` (with `-b token=...` when asked)."""
    extra = ["-b", f"token={TOKEN}"] if token else []
    return run_cli("-s", server.store_uri, *extra, *args, input=input)


def test_read_write_list_and_range_with_curl_and_the_client(served: Any) -> None:
    store, server = served
    value = bytes(range(256)) * 40 + b"\x00tail"
    # write with the token through the client, read back with curl and with the store's own cli
    proc = client(server, "put", "dir/a.bin", token=True, input=value)
    assert proc.returncode == 0, proc.stderr
    assert store.get("dir/a.bin") == value
    if CURL:
        status, body = curl(f"{server.url}/dir/a.bin")
        assert (status, body) == (200, value)
        status, body = curl("-r", "10-19", f"{server.url}/dir/a.bin")
        assert (status, body) == (206, value[10:20])
        status, body = curl("-r", "-5", f"{server.url}/dir/a.bin")
        assert (status, body) == (206, b"\x00tail"[-5:])
        status, body = curl("-r", f"{len(value)}-", f"{server.url}/dir/a.bin")
        assert status == 416
        assert_json_error(body, "Range")
        # write with curl and the token
        status, body = curl(
            "-X", "PUT", "-H", f"Authorization: Bearer {TOKEN}", "--data-binary", "from curl", f"{server.url}/c/d.txt"
        )
        assert status == 201, body
        assert store.get("c/d.txt") == b"from curl"
    else:  # pragma: no cover - machines without curl
        status, _, body = http("GET", f"{server.url}/dir/a.bin", headers={"Range": "bytes=10-19"})
        assert (status, body) == (206, value[10:20])
        store.put("c/d.txt", b"from curl")
    # metadata
    status, headers, body = http("HEAD", f"{server.url}/dir/a.bin")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) == len(value)
    assert headers["etag"].startswith('"') and headers["last-modified"].endswith("GMT")
    status, _, _ = http("GET", f"{server.url}/dir/a.bin", headers={"If-None-Match": headers["etag"]})
    assert status == 304
    # listings: text for scripts, JSON with Accept, filters as query parameters
    status, _, body = http("GET", f"{server.url}/")
    assert status == 200 and sorted(body.decode().splitlines()) == ["c/d.txt", "dir/a.bin"]
    status, _, body = http("GET", f"{server.url}/dir/")
    assert body.decode().splitlines() == ["dir/a.bin"]
    status, headers, body = http("GET", f"{server.url}/?glob=**/*.txt", headers={"Accept": "application/json"})
    assert headers["content-type"].startswith("application/json") and json.loads(body) == ["c/d.txt"]
    status, _, body = http("GET", f"{server.url}/?info=1&prefix=dir", headers={"Accept": "application/x-ndjson"})
    (record,) = [json.loads(line) for line in body.splitlines()]
    assert record["key"] == "dir/a.bin" and record["size"] == len(value)
    status, _, body = http("GET", f"{server.url}/?limit=1")
    assert len(body.splitlines()) == 1
    status, _, body = http("GET", f"{server.url}/?limit=x")
    assert status == 400
    # the client: every command
    assert client(server, "get", "dir/a.bin").stdout == value
    assert sorted(client(server, "keys").stdout.decode().split()) == ["c/d.txt", "dir/a.bin"]
    assert client(server, "keys", "--prefix", "dir").stdout == b"dir/a.bin\n"
    info = json.loads(client(server, "info", "dir/a.bin", "--json").stdout)
    assert info["size"] == len(value) and info["updated_at"] and info["created_at"]
    assert client(server, "exists", "dir/a.bin").returncode == 0
    assert client(server, "exists", "nope").returncode == 1
    assert client(server, "get", "nope").returncode == 1
    dumped = client(server, "dump").stdout
    assert sorted(json.loads(line)["key"] for line in dumped.splitlines()) == ["c/d.txt", "dir/a.bin"]
    proc = client(server, "load", token=True, input=b'{"key": "loaded/x", "value": "y"}\n')
    assert proc.returncode == 0, proc.stderr
    assert store.get("loaded/x") == b"y"
    target = store.tmp_path / "mirrored"
    proc = run_cli("mirror", "-i", server.store_uri, "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert (target / "dir" / "a.bin").read_bytes() == value
    proc = run_cli("mirror", "-i", str(target), "-o", f"{server.store_uri}/copy", "--to-config", f"token={TOKEN}")
    assert proc.returncode == 0, proc.stderr
    assert store.get("copy/dir/a.bin") == value
    proc = client(server, "rm", "loaded/x", "c/d.txt", token=True)
    assert proc.returncode == 0, proc.stderr
    assert store("exists", "c/d.txt").returncode == 1
    # token from a file, as the server reads it
    token_path = store.tmp_path / "token.txt"
    proc = run_cli("-s", server.store_uri, "-b", f"token_file={token_path}", "put", "t", "v")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in server.log


def test_write_without_the_token_gets_401_and_changes_nothing(served: Any) -> None:
    store, server = served
    store.put("kept", b"old")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        status, answer, body = http("PUT", f"{server.url}/kept", data=b"new", headers=headers)
        assert status == 401 and answer["www-authenticate"] == "Bearer"
        assert_json_error(body, "token")
        status, _, body = http("DELETE", f"{server.url}/kept", headers=headers)
        assert status == 401
    status, _, body = http("PUT", f"{server.url}/fresh", data=b"new")
    assert status == 401
    assert store.get("kept") == b"old"
    assert store("exists", "fresh").returncode == 1
    proc = client(server, "put", "kept", "new")
    assert proc.returncode == 3 and b"unauthorized" in proc.stderr
    assert store.get("kept") == b"old"


def test_an_interrupted_upload_leaves_the_old_value(served: Any) -> None:
    import socket

    store, server = served
    store.put("kept", b"old")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"PUT /kept HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n"
            + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
            + b"n" * 3_000_000
        )
        time.sleep(0.5)
    time.sleep(1)
    assert store.get("kept") == b"old"
    assert store.ok("keys").split() == [b"kept"]
    status, _, body = http("GET", f"{server.url}/kept")
    assert (status, body) == (200, b"old")
    assert "Traceback" not in server.log


@pytest.mark.parametrize(
    "path",
    ["/../x", "/%2e%2e/x", "/%2E%2E/%2e%2e/etc/passwd", "/a/../../x", "/a/%2e%2e/%2e%2e/x", "/%2e%2e%2fx", "/./x"],
)
def test_keys_that_try_to_escape_get_400(folder_store: CliStore, token_file: Path, path: str) -> None:
    folder_store.put("a/inside", b"v")
    (folder_store.tmp_path / "x").write_bytes(b"outside")
    server = Server(folder_store, "--writable", "--token-file", str(token_file))
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        if CURL:
            status, body = curl(f"{server.url}{path}")
            assert status == 400, body
            assert_json_error(body, "Invalid key")
            status, body = curl("-X", "PUT", "-H", f"Authorization: Bearer {TOKEN}", "-d", "x", f"{server.url}{path}")
            assert status == 400, body
        else:  # pragma: no cover - urllib keeps the path as given
            status, _, body = http("GET", f"{server.url}{path}")
            assert status == 400
        status, _, body = http("DELETE", f"{server.url}{path}", headers=auth)
        assert status == 400
        assert (folder_store.tmp_path / "x").read_bytes() == b"outside"
    finally:
        server.stop()


def test_read_only_by_default_and_writable_needs_a_token(folder_store: CliStore, token_file: Path) -> None:
    folder_store.put("k", b"v")
    server = Server(folder_store)
    try:
        assert "read-only" in server.log and "127.0.0.1" in server.log
        status, headers, body = http("PUT", f"{server.url}/k", data=b"w", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 405
        assert_json_error(body, "read-only")
        assert folder_store.get("k") == b"v"
    finally:
        server.stop()
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = folder_store("serve", "--port", str(taken.getsockname()[1]))
    assert proc.returncode == 3
    assert proc.stderr.decode().endswith("Address already in use\n") and proc.stderr.count(b"\n") == 1
    proc = folder_store("serve", "--port", "0", "--writable")
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("anystore: error: serve: --writable needs a bearer token")
    assert "--token-file F" in proc.stderr.decode() and "***" not in proc.stderr.decode()  # the hint is no secret
    # the token may come from the environment instead of a file
    server = Server(folder_store, "--writable", env={"ANYSTORE_SERVE_TOKEN": TOKEN})
    try:
        status, _, _ = http("PUT", f"{server.url}/k", data=b"w", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 204
        assert folder_store.get("k") == b"w"
    finally:
        server.stop()


def test_store_failures_are_one_json_line_without_secrets(tmp_path: Path) -> None:
    store = CliStore("redis", "redis://:hunter2pass@127.0.0.1:1/0", {"socket_connect_timeout": 1}, tmp_path)
    server = Server(store)
    try:
        for path in ("/key", "/", "/dir/"):
            status, _, body = http("GET", f"{server.url}{path}")
            assert status in (502, 503), body
            message = assert_json_error(body)
            assert "hunter2pass" not in message
        assert "hunter2pass" not in server.log and "Traceback" not in server.log
    finally:
        server.stop()


def test_other_commands_do_not_import_the_server_packages(folder_store: CliStore) -> None:
    folder_store.put("k", b"v")
    code = (
        "import sys\n"
        "from anystore_cli.cli.app import run\n"
        f"status = run(['-s', {folder_store.uri!r}, 'get', 'k'])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'uvicorn', 'anyio'})\n"
        "sys.stderr.write(repr((status, loaded)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.stdout == b"v"
    assert proc.stderr.decode().strip() == "(0, [])"


def _stream_big_value(store: CliStore, token_file: Path, size: int) -> None:
    source = store.tmp_path / "big.in"
    with open(source, "wb") as handle:
        block = os.urandom(MIB)
        for index in range(size // MIB):
            handle.write(index.to_bytes(8, "big") + block[8:])
    server = Server(store, "--writable", "--token-file", str(token_file))
    try:
        peaks = {}
        for name, args in (
            ("put", ["-b", f"token={TOKEN}", "put", "big", "-i", str(source)]),
            ("get", ["get", "big", "-o", str(store.tmp_path / "big.out")]),
        ):
            proc = subprocess.Popen(
                [anystore_bin(), "-q", "-s", server.store_uri, *args], stderr=subprocess.PIPE, cwd=store.tmp_path
            )
            sampled = 0.0
            while proc.poll() is None:
                try:
                    sampled = max(sampled, vm_hwm_mib(proc.pid))
                except (OSError, AssertionError):
                    pass
                time.sleep(0.05)
            assert proc.returncode == 0, proc.stderr.read() if proc.stderr else b""
            peaks[name] = sampled
        peaks["server"] = server.peak_rss_mib()
        print(f"peak RSS (VmHWM) moving {size // MIB} MiB: {', '.join(f'{k} {v:.1f} MiB' for k, v in peaks.items())}")
        assert os.path.getsize(store.tmp_path / "big.out") == size
        assert subprocess.run(["cmp", str(source), str(store.tmp_path / "big.out")]).returncode == 0
        for name, peak in peaks.items():
            assert peak < 100, (name, peaks)
        if CURL:
            status, body = curl("-r", f"{size - 16}-", f"{server.url}/big")
            assert status == 206 and body == source.read_bytes()[-16:]
    finally:
        server.stop()


def test_a_big_value_streams_through_with_flat_memory(folder_store: CliStore, token_file: Path) -> None:
    _stream_big_value(folder_store, token_file, 256 * MIB)


@pytest.mark.slow
def test_a_1gib_value_streams_through_with_flat_memory(folder_store: CliStore, token_file: Path) -> None:
    _stream_big_value(folder_store, token_file, 1024 * MIB)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_the_page_in_a_headless_browser(folder_store: CliStore, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if IN_CI:
            pytest.fail("CI is set but chromium is missing (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    lines = [json.dumps({"key": f"reports/2024/report-{i:03d}.json", "value": f'{{"n": {i}}}'}) for i in range(130)]
    folder_store.ok("load", input="\n".join(lines).encode() + b"\n")
    folder_store.put("reports/summary with space & more.txt", b"x" * 12345)
    folder_store.put("images/logo.png", b"\x89PNG" + b"\x00" * 2048)
    folder_store.put("readme.txt", b"hello")
    server = Server(folder_store)
    try:
        profile = tmp_path / "chromium-profile"
        common = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
        ]
        shots = {}
        for name, path in (("root", "/"), ("folder", "/reports/2024/?limit=50&after=report-049.json")):
            shot = tmp_path / f"serve-page-{name}.png"
            proc = subprocess.run(
                [*common, f"--screenshot={shot}", "--window-size=1200,800", f"{server.url}{path}"],
                capture_output=True,
                timeout=120,
            )
            assert shot.exists() and shot.stat().st_size > 5000, proc.stderr.decode(errors="replace")[-2000:]
            print(f"screenshot of {path}: {shot}")
            shots[name] = shot
        proc = subprocess.run([*common, "--dump-dom", f"{server.url}/reports/2024/"], capture_output=True, timeout=120)
        dom = proc.stdout.decode()
        assert "report-000.json" in dom and "next" in dom
        for path in ("/", "/reports/", "/reports/2024/", "/reports/2024/?after=report-099.json&glob=*.json"):
            status, headers, body = http("GET", f"{server.url}{path}", headers={"Accept": "text/html"})
            assert status == 200 and headers["content-type"].startswith("text/html")
            assert b"<script" not in body
            parser = _Links()
            parser.feed(body.decode())
            assert parser.links
            for link in parser.links:
                status, _, _ = http("GET", f"{server.url}{link}", headers={"Accept": "text/html"})
                assert status == 200, (path, link, status)
        url = f"{server.url}/reports/2024/?glob=report-12*.json"
        status, _, body = http("GET", url, headers={"Accept": "text/html"})
        assert b"report-120.json" in body and b"report-001.json" not in body
        # a folder without its slash leads to the folder
        status, _, body = http("GET", f"{server.url}/reports", headers={"Accept": "text/html"})
        assert status == 200 and b"2024/" in body
    finally:
        server.stop()


def test_names_that_are_not_utf8_pass_through(folder_store: CliStore) -> None:
    folder_store.put("ok.txt", b"fine")
    root = os.fsencode(folder_store.uri)
    with open(os.path.join(root, b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"latin-1 name")
    server = Server(folder_store)
    try:
        status, _, body = http("GET", f"{server.url}/", headers={"Accept": "application/x-ndjson"})
        assert status == 200 and len(body.splitlines()) == 2
        proc = client(server, "keys", "--sort")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == b"caf\xe9.txt\nok.txt\n"
        status, _, body = http("GET", f"{server.url}/caf%E9.txt")
        assert (status, body) == (200, b"latin-1 name")
        assert client(server, "get", os.fsdecode(b"caf\xe9.txt")).stdout == b"latin-1 name"
    finally:
        server.stop()
