"""Faults: a server that dies in the middle of a `load`, an S3 endpoint that stops answering, and
a disk that fills up during a `put`.

The machine's shared servers are never stopped: Redis faults use a private `redis-server`, SQL
faults a TCP proxy (`tests.faults.TcpProxy`) between the command and the real server.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from anystore_cli.core import get_store
from tests.conftest import anystore_bin, make_bucket, unique
from tests.faults import PrivateRedis, TcpProxy, check_value, make_value, record, small_tmpfs, summary_count

LINES = 12000
"""Lines of the dump loaded while the server dies (the command writes 1000 keys a batch)"""


def dump_lines(count: int = LINES, size: int = 200) -> list[bytes]:
    """`count` dump lines of self-describing values."""
    return [
        json.dumps({"key": f"load/k{i:06d}", "value": make_value(f"load/k{i:06d}", "load", i, size).decode()}).encode()
        + b"\n"
        for i in range(count)
    ]


def cli_env() -> dict[str, str]:
    """The environment of a command run by a test: ours without ANYSTORE_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}


class SlowLoad:
    """`anystore load` fed through a pipe, a chunk at a time, so a fault can strike half-way."""

    def __init__(self, args: list[str], lines: list[bytes]) -> None:
        self.lines = lines
        self.proc = subprocess.Popen(
            [anystore_bin(), *args, "load"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        self.fed = 0
        self.stdout = b""
        self.stderr = b""

    def feed(self, pause: float = 0.05) -> None:
        """Send every line from a thread, 250 at a time, pausing `pause` s in between."""

        def _run() -> None:
            assert self.proc.stdin is not None
            try:
                for start in range(0, len(self.lines), 250):
                    self.proc.stdin.write(b"".join(self.lines[start : start + 250]))
                    self.proc.stdin.flush()
                    self.fed = start + 250
                    time.sleep(pause)
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the command died: its stdin is closed

        self._feeder = threading.Thread(target=_run, daemon=True)
        self._feeder.start()

    def finish(self, timeout: float = 60) -> int:
        """Wait for the command (the feeder sends the rest); return the exit status."""
        self.proc.wait(timeout=timeout)
        self._feeder.join(timeout=10)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout, self.stderr = self.proc.stdout.read(), self.proc.stderr.read()
        return self.proc.returncode


def wait_until(predicate: Any, timeout: float = 20, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - the server may be down while we poll
            pass
        time.sleep(step)
    return False


def check_loaded(uri: str, config: dict[str, Any], count: int) -> int:
    """Check every value present under `load/` is whole and right; return how many are present."""
    store = get_store(uri=uri, backend_config=config, serialization_mode="raw")
    keys = [f"load/k{i:06d}" for i in range(count)]
    present = 0
    for key, value in store.get_many(keys):
        if value is not None:
            fields = check_value(value, key)
            assert fields["seq"] == int(key[-6:])
            present += 1
    return present


def run_load(args: list[str], lines: list[bytes], timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run `anystore ARGS load` with `lines` on stdin."""
    return subprocess.run(
        [anystore_bin(), *args, "load"], input=b"".join(lines), capture_output=True, timeout=timeout, env=cli_env()
    )


def require_count(written: int | None, stderr: str) -> None:
    """The failed load must have said how many keys it wrote (checked last, after the data)."""
    assert written is not None, f"no count of what was written on stderr: {stderr!r}"


# ---- Redis killed during a load -----------------------------------------------------------------


@pytest.mark.slow
def test_redis_killed_mid_load_exits_3_with_count_and_rerun_completes(tmp_path):
    try:
        server = PrivateRedis(tmp_path / "redis")
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    import redis

    lines = dump_lines()
    config = {"redis_prefix": unique()}
    args = ["-s", server.url, "-b", f"redis_prefix={config['redis_prefix']}"]
    with server:
        client = redis.Redis.from_url(server.url)
        load = SlowLoad(args, lines)
        load.feed()
        assert wait_until(lambda: client.dbsize() > 0), "the load wrote nothing"
        server.kill()
        started = time.monotonic()
        status = load.finish()
        elapsed = time.monotonic() - started
        assert status == 3, load.stderr
        assert elapsed < 30, f"took {elapsed:.1f}s to notice the dead server"
        stderr = load.stderr.decode()
        assert "anystore: error:" in stderr and "Traceback" not in stderr
        written = summary_count(stderr)
        assert written is None or written < len(lines), stderr
        server.start()  # comes back empty: no persistence
        done = run_load(args, lines)
        assert done.returncode == 0, done.stderr
        assert check_loaded(server.url, config, len(lines)) == len(lines)
    record("fault-redis-killed-mid-load", lines=len(lines), claimed_written=written, lost_after_rerun=0)
    require_count(written, stderr)


# ---- a SQL or Redis connection cut during a load ---------------------------------------------------


def through_proxy(url: str, port: int) -> str:
    """`url` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    netloc = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
    return urlunsplit(parts._replace(netloc=netloc))


def upstream(url: str, default_port: int) -> tuple[str, int]:
    """The (host, port) a url points at."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


SERVERS = {"postgres": ("postgres_url", 5432), "mysql": ("mysql_url", 3306), "redis": ("redis_url", 6379)}


def _present(url: str, config: dict[str, Any]) -> int:
    return check_loaded(url, config, LINES)


def _count_rows(url: str, config: dict[str, Any]) -> int:
    """How many keys the store holds (cheap enough to poll)."""
    store = get_store(uri=url, backend_config=config)
    return sum(1 for _ in store.iterate_keys(prefix="load/"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "mysql", "redis"])
def test_connection_cut_mid_load_exits_3_with_count_and_rerun_completes(backend, request, store_factory):
    fixture, port = SERVERS[backend]
    url = request.getfixturevalue(fixture)
    _, config = store_factory.uri_and_config(backend)  # a fresh table or prefix, cleaned up after
    options = [item for name, value in config.items() for item in ("-b", f"{name}={value}")]
    lines = dump_lines()
    with TcpProxy(upstream(url, port)) as proxy:
        args = ["-s", through_proxy(url, proxy.port), *options]
        load = SlowLoad(args, lines)
        load.feed()
        assert wait_until(lambda: _count_rows(url, config) > 0, timeout=30), "the load wrote nothing"
        proxy.cut()
        started = time.monotonic()
        status = load.finish()
        elapsed = time.monotonic() - started
        stderr = load.stderr.decode()
        assert status == 3, stderr
        assert elapsed < 30, f"took {elapsed:.1f}s to notice the cut"
        assert "anystore: error:" in stderr and "Traceback" not in stderr
        written = summary_count(stderr)
        present = _present(url, config)
        assert written is None or written <= present, f"claims {written} written, {present} are there"
        proxy.restore()
        done = run_load(args, lines)
        assert done.returncode == 0, done.stderr
    assert _present(url, config) == len(lines)
    record(f"fault-{backend}-cut-mid-load", lines=len(lines), claimed_written=written, present=present, lost=0)
    require_count(written, stderr)


FREEZE_HANG = 15
"""Seconds after which a load whose server stopped answering counts as hanging"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgres", "mysql"])
def test_server_that_stops_answering_mid_load_exits_3_not_a_hang(backend, request, store_factory):
    """The server stays connected but answers nothing more (stopped with SIGSTOP, a partition)."""
    fixture, port = SERVERS[backend]
    url = request.getfixturevalue(fixture)
    _, config = store_factory.uri_and_config(backend)
    options = [item for name, value in config.items() for item in ("-b", f"{name}={value}")]
    with TcpProxy(upstream(url, port)) as proxy:
        load = SlowLoad(["-s", through_proxy(url, proxy.port), *options], dump_lines())
        load.feed()
        assert wait_until(lambda: _count_rows(url, config) > 0, timeout=30), "the load wrote nothing"
        proxy.freeze()
        started = time.monotonic()
        try:
            status = load.finish(timeout=FREEZE_HANG)
        except subprocess.TimeoutExpired:
            load.proc.kill()
            load.proc.wait()
            record(f"fault-{backend}-frozen-mid-load", hung=True)
            pytest.fail(f"{backend}: `anystore load` hung for {FREEZE_HANG} s after the server stopped answering")
        elapsed = round(time.monotonic() - started, 1)
        assert status == 3, load.stderr
        assert b"anystore: error:" in load.stderr
        if backend != "redis":  # the line says what happened and names the store
            assert b"no answer from the server within 10 s" in load.stderr, load.stderr
            assert f"127.0.0.1:{proxy.port}".encode() in load.stderr, load.stderr
    record(f"fault-{backend}-frozen-mid-load", hung=False, seconds=elapsed)


SQL_HANG = 25
"""Seconds after which a command on a silent SQL server counts as hanging (default timeouts: 3 s
to connect, 10 s for an answer)"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_sql_server_that_never_answers_fails_every_command_with_exit_3(backend, request, store_factory):
    fixture, port = SERVERS[backend]
    url = request.getfixturevalue(fixture)
    _, config = store_factory.uri_and_config(backend)
    options = [item for name, value in config.items() for item in ("-b", f"{name}={value}")]
    commands = (["get", "k"], ["keys"], ["keys", "-l"], ["put", "k", "v"], ["rm", "k"], ["dump"], ["info", "k"])
    timings: dict[str, float] = {}
    with TcpProxy(upstream(url, port), mode="blackhole") as proxy:
        store = through_proxy(url, proxy.port)
        for argv in commands:
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [anystore_bin(), "-s", store, *options, *argv], capture_output=True, timeout=SQL_HANG, env=cli_env()
                )
            except subprocess.TimeoutExpired:
                pytest.fail(f"{backend}: `anystore {' '.join(argv)}` hung for {SQL_HANG} s on a silent server")
            timings[" ".join(argv)] = round(time.monotonic() - started, 1)
            assert done.returncode == 3, f"{argv}: exit {done.returncode} {done.stderr!r}"
            assert done.stderr.startswith(b"anystore: error:") and done.stderr.count(b"\n") == 1, done.stderr
            assert f"127.0.0.1:{proxy.port}".encode() in done.stderr, done.stderr
    record(f"fault-{backend}-never-answers", seconds=timings)


def test_postgres_listing_whose_server_stops_answering_exits_3(postgres_url, store_factory):
    """A `keys` streaming a big table through a server-side cursor: each fetch is watched."""
    _, config = store_factory.uri_and_config("postgres")
    options = [item for name, value in config.items() for item in ("-b", f"{name}={value}")]
    lines = b"".join(
        json.dumps({"key": f"list/{'k' * 90}{i:06d}", "value": "v"}).encode() + b"\n" for i in range(20000)
    )
    assert run_load(["-s", postgres_url, *options], [lines]).returncode == 0
    with TcpProxy(upstream(postgres_url, 5432)) as proxy:
        keys = subprocess.Popen(
            [
                anystore_bin(),
                "-s",
                through_proxy(postgres_url, proxy.port),
                *options,
                "-b",
                "timeout=2",
                "keys",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
        )
        assert keys.stdout is not None and keys.stderr is not None
        first = keys.stdout.read(1000)  # the listing has started, and waits on its full pipe
        assert first.startswith(b'{"key":"list/')
        time.sleep(1)
        proxy.freeze()
        started = time.monotonic()
        listed = len(first) + len(keys.stdout.read())  # drain: the listing goes on to the next fetch
        status = keys.wait(timeout=30)
        elapsed = time.monotonic() - started
        stderr = keys.stderr.read()
    assert status == 3, stderr
    assert b"no answer from the server within 2 s" in stderr, stderr
    assert listed < 20000 * 200 and elapsed < 20
    record("fault-postgres-frozen-mid-listing", seconds=round(elapsed, 1))


def test_sql_timeout_option_must_be_seconds(tmp_path):
    done = subprocess.run(
        [anystore_bin(), "-s", f"sqlite:///{tmp_path}/kv.db", "-b", "timeout=soon", "keys"],
        capture_output=True,
        timeout=60,
        env=cli_env(),
    )
    assert done.returncode == 2, done.stderr
    assert b"option `timeout` takes a number, not `soon`" in done.stderr


# ---- an S3 endpoint that stops answering -------------------------------------------------------


@pytest.fixture
def hanging_s3(s3_server: str) -> Iterator[tuple[str, TcpProxy]]:
    """A bucket with a key, reached through a proxy in front of moto; yields (bucket, proxy)."""
    bucket = unique("b")
    make_bucket(s3_server, bucket)
    with TcpProxy(upstream(s3_server, 80)) as proxy:
        yield bucket, proxy


S3_LIMITS = ["-b", "read_timeout=2", "-b", "connect_timeout=2", "-b", "retries=1"]
S3_HANG = 15
"""Seconds after which a command with a 2 s timeout and one attempt counts as hanging"""


@pytest.mark.slow
def test_s3_endpoint_that_stops_answering_exits_3_within_the_timeout(hanging_s3, tmp_path):
    bucket, proxy = hanging_s3
    endpoint = f"http://127.0.0.1:{proxy.port}"
    base = ["-s", f"s3://{bucket}", "-b", f"endpoint_url={endpoint}", "-b", "key=testing", "-b", "secret=testing"]
    done = subprocess.run([anystore_bin(), *base, "put", "k", "v"], capture_output=True, timeout=60, env=cli_env())
    assert done.returncode == 0, done.stderr
    proxy.blackhole()
    source = tmp_path / "value"
    source.write_bytes(b"new value")
    timings: dict[str, float] = {}
    hung: list[str] = []
    commands = (["get", "k"], ["keys"], ["rm", "k"], ["put", "k", "-i", str(source)])
    for argv in commands:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [anystore_bin(), *base, *S3_LIMITS, *argv], capture_output=True, timeout=S3_HANG, env=cli_env()
            )
        except subprocess.TimeoutExpired:
            hung.append(" ".join(argv[:2]))
            continue
        timings[argv[0]] = round(time.monotonic() - started, 1)
        assert done.returncode == 3, f"{argv}: exit {done.returncode} {done.stderr!r}"
        assert b"anystore: error:" in done.stderr
    record("fault-s3-blackhole", tried=len(commands), hung=hung, seconds=timings)
    assert hung == [], f"hung for {S3_HANG} s with a 2 s read timeout and one attempt"


# ---- a full disk ----------------------------------------------------------------------------------


def _put_file(store: str, key: str, source: Path, preexec: Any = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [anystore_bin(), "-s", store, "put", key, "-i", str(source)],
        capture_output=True,
        timeout=60,
        env=cli_env(),
        preexec_fn=preexec,
    )


def _check_full_disk_put(store_path: Path, big: Path, preexec: Any = None) -> None:
    """`put` of `big` fails with exit 3 and leaves the old value whole and no stray files."""
    store = str(store_path)
    old = make_value("disk/key", "old", 0, 100 << 10)
    store_path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [anystore_bin(), "-s", store, "put", "disk/key"], input=old, capture_output=True, timeout=60, env=cli_env()
    )
    assert done.returncode == 0, done.stderr
    done = _put_file(store, "disk/key", big, preexec)
    assert done.returncode == 3, done.stderr
    assert b"anystore: error:" in done.stderr and b"Traceback" not in done.stderr
    assert (store_path / "disk" / "key").read_bytes() == old
    assert sorted(os.listdir(store_path / "disk")) == ["key"], "a temporary file was left behind"
    done = _put_file(store, "disk/other", big, preexec)
    assert done.returncode == 3
    assert not (store_path / "disk" / "other").exists()
    listed = subprocess.run([anystore_bin(), "-s", store, "keys"], capture_output=True, env=cli_env())
    assert listed.stdout.decode().split() == ["disk/key"]


def test_put_on_a_full_tmpfs_exits_3_and_keeps_the_old_value(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 << 20))
    with small_tmpfs(tmp_path / "small", "1m") as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here (the file-size limit test covers a full disk)")
        _check_full_disk_put(tmp_path / "small" / "store", big)
    record("fault-full-tmpfs-put", tried=2, old_value_lost=0)


def test_put_over_the_file_size_limit_exits_3_and_keeps_the_old_value(tmp_path):
    from tests.faults import limit_file_size

    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 << 20))
    _check_full_disk_put(tmp_path / "store", big, preexec=limit_file_size(1 << 20))
    record("fault-fsize-limit-put", tried=2, old_value_lost=0)


def test_zip_append_on_a_full_disk_keeps_the_archive(tmp_path):
    from tests.faults import limit_file_size

    archive = tmp_path / "store.zip"
    big = tmp_path / "big"
    big.write_bytes(os.urandom(3 << 20))
    done = subprocess.run(
        [anystore_bin(), "-s", str(archive), "put", "a", "first"], capture_output=True, timeout=60, env=cli_env()
    )
    assert done.returncode == 0, done.stderr
    before = archive.read_bytes()
    done = _put_file(str(archive), "b", big, preexec=limit_file_size(1 << 20))
    assert done.returncode == 3, done.stderr
    assert archive.read_bytes() == before
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".~anystore-store.zip.lock")  # the writers' lock
    assert left == ["big", "store.zip"], "a temporary archive was left"


@pytest.mark.slow
def test_s3_stream_whose_endpoint_stops_mid_value_fails_instead_of_hanging(hanging_s3):
    bucket, proxy = hanging_s3
    options = {
        "endpoint_url": f"http://127.0.0.1:{proxy.port}",
        "key": "testing",
        "secret": "testing",
        "read_timeout": 2,
        "retries": 1,
    }
    store = get_store(f"s3://{bucket}", backend_config=options)
    store.put("big", b"x" * (64 * 1024 * 1024), serialization_mode="raw")
    started = None
    # the store's error, whatever it is
    with pytest.raises(Exception) as failed, store.open("big", "rb") as handle:  # noqa: B017
        assert handle.read(1024 * 1024) == b"x" * (1024 * 1024)
        proxy.freeze()  # the rest of the body is dropped on the way, then the server closes
        started = time.monotonic()
        while handle.read(1024 * 1024):
            pass
    assert started is not None, failed.value
    waited = time.monotonic() - started
    record("fault-s3-stream-freeze", seconds=round(waited, 1), error=type(failed.value).__name__)
    assert waited < 10, f"a body that stopped took {waited:.1f} s to fail (2 s read timeout, one attempt)"
