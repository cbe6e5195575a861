"""S3 through s3fs against a real S3 endpoint (moto in server mode on loopback, over HTTP).

Request counts are taken by a reverse proxy in front of moto that counts what reaches the
endpoint; peak memory by running the upload in a child process.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from anystore_cli.core import AlreadyExists, DoesNotExist, InvalidUri, StoreError, get_store
from anystore_cli.errors import MissingDependency
from tests.conftest import make_bucket, s3_options, unique

pytestmark = pytest.mark.service

MIB = 1024 * 1024
HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


# ---- fixtures -------------------------------------------------------------------------------


class CountingProxy:
    """A reverse proxy on loopback that forwards to the S3 endpoint and records every request."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def forward(self) -> None:
                parts = urlsplit(self.path)
                with proxy.lock:
                    proxy.requests.append((self.command, parts.path, parse_qs(parts.query, keep_blank_values=True)))
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else None
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                    conn = proxy.connection()
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() in HOP_HEADERS or (name.lower() == "content-length" and self.command != "HEAD"):
                        continue
                    self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def connection(self) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to the endpoint."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        return conn

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.max_in_flight = 0

    def list_requests(self) -> list[dict[str, list[str]]]:
        """The query of every ListObjectsV2 request received."""
        return [query for method, _, query in self.requests if method == "GET" and query.get("list-type") == ["2"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(s3_server: str) -> Iterator[CountingProxy]:
    counting = CountingProxy(s3_server)
    yield counting
    counting.close()


@pytest.fixture
def bucket(s3_server: str) -> str:
    name = unique("b")
    make_bucket(s3_server, name)
    return name


def s3_store(bucket: str, endpoint: str, **options: Any) -> Any:
    return get_store(f"s3://{bucket}", backend_config={**s3_options(endpoint), **options})


def boto_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


# ---- listing --------------------------------------------------------------------------------


def test_listing_5000_keys_takes_at_most_six_list_requests(s3_server, proxy, bucket):
    items = {f"p{i % 100:03d}/sub/k{i:05d}": b"v" for i in range(5000)}
    writer = s3_store(bucket, proxy.url)
    assert writer.put_many(items, serialization_mode="raw") == 5000
    # put_many uploads from a thread pool: several PUTs were in flight at once
    assert proxy.max_in_flight > 1
    proxy.reset()

    reader = s3_store(bucket, proxy.url, max_workers=1)
    keys = list(reader.iterate_keys())

    assert sorted(keys) == sorted(items)
    lists = proxy.list_requests()
    assert len(lists) <= math.ceil(5000 / 1000) + 1
    assert len(proxy.requests) == len(lists)  # nothing but the listing
    # one recursive listing: no delimiter, so no request per "directory"
    assert all("delimiter" not in query for query in lists)
    print(f"\n5000 keys over 100 prefixes: {len(lists)} ListObjectsV2 requests, {len(proxy.requests)} in all")


def test_glob_narrows_the_server_side_prefix(proxy, bucket):
    store = s3_store(bucket, proxy.url)
    store.put_many({f"p{i % 10}/x{i}.{'json' if i % 2 else 'txt'}": i for i in range(100)})
    proxy.reset()
    keys = sorted(store.iterate_keys(glob="p3/*.json"))
    assert keys == sorted(f"p3/x{i}.json" for i in range(100) if i % 10 == 3 and i % 2)
    assert [q["prefix"] for q in proxy.list_requests()] == [["p3/"]]
    proxy.reset()
    assert len(list(store.iterate_keys(prefix="p1", glob="**/*.json"))) == 10
    # the glob is relative to the prefix taken as a folder: `p1/**/*.json`, listed under `p1/`
    assert [q["prefix"] for q in proxy.list_requests()] == [["p1/"]]


def test_store_under_a_prefix_lists_only_its_keys(s3_server, bucket):
    root = s3_store(bucket, s3_server)
    root.put_many({"sub/a": 1, "sub/b/c": 2, "subway/x": 3, "top": 4})
    child = get_store(f"s3://{bucket}/sub", backend_config=s3_options(s3_server))
    assert sorted(child.iterate_keys()) == ["a", "b/c"]
    assert child.get("b/c") == 2
    assert not child.exists("way/x")


def test_writes_by_another_process_are_visible(s3_server, bucket):
    store = s3_store(bucket, s3_server)
    store.put("first", b"1", serialization_mode="raw")
    assert list(store.iterate_keys()) == ["first"]
    assert store.info("first").size == 1
    script = (
        "import sys, json\n"
        "from anystore_cli.core import get_store\n"
        "store = get_store(sys.argv[1], backend_config=json.loads(sys.argv[2]))\n"
        "store.put('second', b'22', serialization_mode='raw')\n"
        "store.put('first', b'333', serialization_mode='raw')\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, f"s3://{bucket}", json.dumps(s3_options(s3_server))], check=True, timeout=60
    )
    assert sorted(store.iterate_keys()) == ["first", "second"]
    assert store.info("first").size == 3
    assert store.get("first", serialization_mode="raw") == b"333"


# ---- streaming and memory -------------------------------------------------------------------

PUT_SCRIPT = """
import json, resource, sys
from anystore_cli.core import get_store


def rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])


store = get_store(sys.argv[1], backend_config=json.loads(sys.argv[2]))
store.exists("warm-up")  # imports, connection, bucket
baseline = rss_kib("VmRSS")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # reset the peak (VmHWM) to the current size: import-time peaks do not count
if sys.argv[3] == "put":
    size = store.put_stream(sys.argv[4], sys.stdin.buffer)
else:
    import hashlib
    hasher = hashlib.sha256()
    size = 0
    with store.open(sys.argv[4], "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    sys.stderr.write(hasher.hexdigest())
peak = rss_kib("VmHWM")
print(json.dumps({"size": size, "baseline_kib": baseline, "peak_kib": peak}))
"""


def _pump(pipe: Any, size: int, hasher: Any) -> None:
    rng = random.Random(5)
    left = size
    try:
        while left:
            chunk = rng.randbytes(min(MIB, left))
            hasher.update(chunk)
            pipe.write(chunk)
            left -= len(chunk)
    finally:
        pipe.close()


def test_64_mib_value_from_a_pipe_streams_with_flat_memory(s3_server, bucket):
    size = 64 * MIB
    config = json.dumps(s3_options(s3_server))
    sent = hashlib.sha256()
    child = subprocess.Popen(
        [sys.executable, "-c", PUT_SCRIPT, f"s3://{bucket}", config, "put", "big"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    pump = threading.Thread(target=_pump, args=(child.stdin, size, sent))
    pump.start()
    out = child.stdout.read()
    child.wait(timeout=300)
    pump.join()
    assert child.returncode == 0
    put = json.loads(out)
    assert put["size"] == size

    store = s3_store(bucket, s3_server)
    assert store.info("big").size == size
    assert store.checksum("big", "sha256") == sent.hexdigest()

    got = subprocess.run(
        [sys.executable, "-c", PUT_SCRIPT, f"s3://{bucket}", config, "get", "big"],
        capture_output=True,
        timeout=300,
        check=True,
    )
    read = json.loads(got.stdout)
    assert got.stderr.decode().strip().endswith(sent.hexdigest())

    put_growth = (put["peak_kib"] - put["baseline_kib"]) / 1024
    get_growth = (read["peak_kib"] - read["baseline_kib"]) / 1024
    print(f"\n64 MiB through S3: peak memory above baseline put {put_growth:.1f} MiB, get {get_growth:.1f} MiB")
    assert put_growth < 32
    assert get_growth < 32


def test_streaming_a_value_is_one_get_request(s3_server, proxy, bucket, tmp_path, cli):
    value = random.Random(16).randbytes(12 * MIB + 5)  # more than two of fsspec's 5 MiB blocks
    s3_store(bucket, s3_server).put("big", value, serialization_mode="raw")
    store = s3_store(bucket, proxy.url)
    with store.open("big", "rb") as handle:
        chunks = iter(lambda: handle.read(MIB), b"")
        assert b"".join(chunks) == value
    assert [(method, path) for method, path, _ in proxy.requests] == [("GET", f"/{bucket}/big")]

    proxy.reset()
    target = tmp_path / "big"
    done = cli("-s", f"s3://{bucket}", "-b", f"endpoint_url={proxy.url}", "get", "big", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == value
    assert [method for method, _, _ in proxy.requests].count("GET") == 1


def test_seek_in_a_streamed_value_reads_from_the_offset(s3_server, bucket):
    value = bytes(range(256)) * 4096  # 1 MiB
    store = s3_store(bucket, s3_server)
    store.put("v", value, serialization_mode="raw")
    with store.open("v", "rb") as handle:
        assert handle.read(10) == value[:10]
        handle.seek(500_000)
        assert handle.read(7) == value[500_000:500_007]
        assert handle.tell() == 500_007
        handle.seek(-3, io.SEEK_END)
        assert handle.read() == value[-3:]
        assert handle.read(5) == b""
        handle.seek(0)
        assert handle.read() == value
    with pytest.raises(DoesNotExist), store.open("missing", "rb"):
        pass


def test_a_stream_cut_part_way_asks_again_from_the_offset(s3_server, proxy, bucket):
    from aiohttp.client_exceptions import ClientPayloadError

    value = random.Random(7).randbytes(3 * MIB)
    s3_store(bucket, s3_server).put("cut", value, serialization_mode="raw")
    with s3_store(bucket, proxy.url).open("cut", "rb") as handle:
        first = handle.read(MIB)  # the reader's buffer: exactly one read of the body
        body = handle.raw._body
        real_read = body.read

        async def cut(*args: Any) -> bytes:
            body.read = real_read
            raise ClientPayloadError("connection cut")

        body.read = cut  # the connection drops at the next read
        rest = handle.read()
    assert first + rest == value
    gets = [(method, path) for method, path, _ in proxy.requests if method == "GET"]
    assert gets == [("GET", f"/{bucket}/cut")] * 2  # the second from offset 1 MiB


def test_a_value_replaced_while_streamed_fails_the_read_instead_of_mixing(s3_server, bucket):
    store = s3_store(bucket, s3_server)
    store.put("moving", b"a" * (2 * MIB), serialization_mode="raw")
    with store.open("moving", "rb") as handle:
        assert handle.read(MIB) == b"a" * MIB
        store.put("moving", b"b" * (2 * MIB), serialization_mode="raw")
        handle.seek(10)  # the next read asks again from the offset, if the value is the same
        with pytest.raises((OSError, StoreError)):
            handle.read()


class BrokenSource(io.RawIOBase):
    """A stream that gives `size` bytes, then fails."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise RuntimeError("the source broke")
        n = min(len(buffer), self.left)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_failed_multipart_upload_keeps_old_value_and_is_aborted(s3_server, bucket):
    store = s3_store(bucket, s3_server)
    store.put("k", b"old", serialization_mode="raw")
    with pytest.raises(RuntimeError, match="broke"):
        store.put_stream("k", io.BufferedReader(BrokenSource(20 * MIB)))  # parts were uploaded
    assert store.get("k", serialization_mode="raw") == b"old"
    with pytest.raises(RuntimeError, match="broke"):
        store.put_stream("new", io.BufferedReader(BrokenSource(1000)))
    assert not store.exists("new")
    assert not boto_client(s3_server).list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_no_clobber_stream_refuses_existing_key(s3_server, bucket):
    store = s3_store(bucket, s3_server)
    assert store.put_stream("k", io.BytesIO(b"one"), no_clobber=True) == 3
    with pytest.raises(AlreadyExists):
        store.put_stream("k", io.BytesIO(b"two"), no_clobber=True)
    assert store.get("k", serialization_mode="raw") == b"one"


def test_info_comes_from_metadata(s3_server, bucket):
    store = s3_store(bucket, s3_server)
    store.put("dir/obj", b"x" * 1234, serialization_mode="raw")
    info = store.info("dir/obj")
    assert info.size == 1234
    # the library gives naive local time, as the original did (it compares with `datetime.now()`)
    from datetime import datetime

    assert info.updated_at is not None and abs((datetime.now() - info.updated_at).total_seconds()) < 600
    with pytest.raises(DoesNotExist):
        store.info("dir")


# ---- configuration and failures -------------------------------------------------------------


def test_aws_endpoint_url_from_the_environment(s3_server, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    store = get_store(f"s3://{bucket}")
    store.put("env", "works")
    assert store.get("env") == "works"
    assert list(store.iterate_keys()) == ["env"]


def test_missing_bucket_is_a_store_error(s3_server):
    name = unique("missing")
    store = s3_store(name, s3_server)
    calls = [
        lambda: store.get("k"),
        lambda: store.get("k", raise_on_nonexist=False),
        lambda: store.exists("k"),
        lambda: store.info("k"),
        lambda: list(store.iterate_keys()),
        lambda: store.put("k", "v"),
        lambda: store.put_stream("k", io.BytesIO(b"v")),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=f"bucket `{name}` does not exist"):
            call()
    # the bucket was not created on the way
    assert name not in [b["Name"] for b in boto_client(s3_server).list_buckets()["Buckets"]]


class RefusingEndpoint(BaseHTTPRequestHandler):
    """An S3 endpoint that refuses every access key."""

    protocol_version = "HTTP/1.1"
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
        b"<Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>"
    )

    def log_message(self, *args: Any) -> None:
        pass

    def refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = refuse


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_refused_credentials_are_a_store_error(refusing_endpoint):
    store = get_store("s3://bucket", backend_config={"endpoint_url": refusing_endpoint, "key": "bad", "secret": "bad"})
    for call in (lambda: store.get("k"), lambda: list(store.iterate_keys()), lambda: store.put("k", "v")):
        with pytest.raises(StoreError, match="credentials refused.*InvalidAccessKeyId"):
            call()


def test_endpoint_that_stops_answering_fails_within_the_timeout():
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = get_store(
            "s3://bucket",
            backend_config={
                "endpoint_url": endpoint,
                "key": "k",
                "secret": "s",
                "connect_timeout": 1,
                "read_timeout": 1,
                "retries": 2,
            },
        )
        calls = {
            "get": lambda: store.get("k"),
            "keys": lambda: list(store.iterate_keys()),
            "put": lambda: store.put("k", "v"),  # no `Expect: 100-continue` wait, which no timeout bounds
            "put_stream": lambda: store.put_stream("k", io.BytesIO(b"v" * 1000)),
            "exists": lambda: store.exists("k"),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(StoreError, match="timeout"):
                call()
            elapsed = time.monotonic() - started
            assert elapsed < 10, (name, elapsed)


@pytest.mark.parametrize(
    ("uri", "package"),
    [("gs://bucket/x", "gcsfs"), ("az://container/x", "adlfs"), ("sftp://host/x", "paramiko")],
)
def test_missing_fsspec_package_is_named(uri, package):
    try:
        __import__(package)
    except ImportError:
        with pytest.raises(MissingDependency, match=package):
            get_store(uri)
    else:
        pytest.skip(f"{package} is installed")


def test_unknown_scheme_is_invalid_uri():
    with pytest.raises(InvalidUri):
        get_store("nosuchscheme://bucket/x")


def test_endpoint_is_honoured_by_smart_open(s3_server, bucket, monkeypatch):
    from anystore_cli.store.io import smart_read, smart_write

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    smart_write(f"s3://{bucket}/io/file.txt", b"through io")
    assert smart_read(f"s3://{bucket}/io/file.txt") == b"through io"
    assert os.environ["AWS_ENDPOINT_URL"] == s3_server


# ---- through the installed command line ------------------------------------------------------

PEAK_WRAPPER = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(json.dumps({"returncode": done.returncode, "peak_kib": peak}))
"""


def _cli_peak(args: list[str], stdin_size: int = 0, hasher: Any = None) -> tuple[dict[str, Any], Any]:
    """Run `anystore ARGS` with `stdin_size` bytes piped in (hashed into `hasher`).

    Returns:
        Its exit status and peak RSS, and the sha256 of what it wrote to stdout
    """
    from tests.conftest import anystore_bin

    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    wrapper = subprocess.Popen(
        [sys.executable, "-c", PEAK_WRAPPER, anystore_bin(), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    pump = threading.Thread(target=_pump, args=(wrapper.stdin, stdin_size, hasher or hashlib.sha256()))
    pump.start()
    received = hashlib.sha256()
    while chunk := wrapper.stdout.read(MIB):
        received.update(chunk)
    errors = wrapper.stderr.read()
    wrapper.wait(timeout=300)
    pump.join()
    return json.loads(errors[errors.rindex(b'{"returncode"') :]), received


def test_cli_puts_64_mib_from_a_pipe_and_gets_it_back(s3_server, bucket, cli):
    options = ["-s", f"s3://{bucket}", "-b", f"endpoint_url={s3_server}"]
    small, _ = _cli_peak([*options, "put", "small"], 1024)
    sent = hashlib.sha256()
    big, _ = _cli_peak([*options, "put", "big"], 64 * MIB, sent)
    assert small["returncode"] == 0 and big["returncode"] == 0
    get_small, _ = _cli_peak([*options, "get", "small"])
    get_big, received = _cli_peak([*options, "get", "big"])
    assert get_small["returncode"] == 0 and get_big["returncode"] == 0
    assert received.hexdigest() == sent.hexdigest()
    done = cli(*options, "checksum", "--bare", "-a", "sha256", "big")
    assert (done.returncode, done.stdout.decode().strip()) == (0, sent.hexdigest())

    put_growth = (big["peak_kib"] - small["peak_kib"]) / 1024
    get_growth = (get_big["peak_kib"] - get_small["peak_kib"]) / 1024
    print(
        f"\nanystore put/get of 64 MiB through a pipe: peak RSS {big['peak_kib'] / 1024:.1f} / "
        f"{get_big['peak_kib'] / 1024:.1f} MiB, {put_growth:.1f} / {get_growth:.1f} MiB above 1 KiB"
    )
    assert put_growth < 32
    assert get_growth < 32


def test_cli_missing_bucket_exits_3_naming_the_bucket(s3_server, cli):
    name = unique("missing")
    for args in (["get", "k"], ["put", "k", "v"], ["keys"], ["exists", "k"]):
        done = cli("-s", f"s3://{name}", "-b", f"endpoint_url={s3_server}", *args)
        assert done.returncode == 3, (args, done.stderr)
        assert f"bucket `{name}` does not exist" in done.stderr.decode()


def test_cli_missing_key_exits_1_and_refused_credentials_exit_3(s3_server, bucket, refusing_endpoint, cli):
    done = cli("-s", f"s3://{bucket}", "-b", f"endpoint_url={s3_server}", "get", "nothing")
    assert done.returncode == 1, done.stderr
    done = cli("-s", "s3://bucket", "-b", f"endpoint_url={refusing_endpoint}", "get", "k")
    assert done.returncode == 3
    assert "credentials refused" in done.stderr.decode()


def test_cli_uses_aws_environment_variables(s3_server, bucket, cli):
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    assert cli("-s", f"s3://{bucket}/env", "put", "k", "from env", env=env).returncode == 0
    done = cli("-s", f"s3://{bucket}/env", "get", "k", env=env)
    assert (done.returncode, done.stdout) == (0, b"from env")


def test_cli_exit_status_for_missing_package_unknown_scheme_and_http_writes(cli):
    import importlib.util

    if importlib.util.find_spec("gcsfs") is None:
        done = cli("-s", "gs://bucket/x", "get", "k")
        assert done.returncode == 3 and b"gcsfs" in done.stderr
    assert cli("-s", "nosuchscheme://bucket", "get", "k").returncode == 2
    done = cli("-s", "http://127.0.0.1:1/x", "put", "k", "v")
    assert done.returncode == 3 and b"readonly" in done.stderr
