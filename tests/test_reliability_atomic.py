"""Atomic writes: a write killed with SIGKILL at a random moment, or failing half-way, leaves
the old value or the new one, never a mix, on every backend.

Each kill test streams a value of a few MiB into a writer process (the library's `put_stream`,
or the `anystore put` command), feeding its stdin in chunks, and kills it at a random moment
between its start and a little after the time an uninterrupted run takes. After each kill the
key must hold exactly the value before or exactly the value being written.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from anystore_cli.core import get_store
from tests.conftest import anystore_bin
from tests.faults import core_writer_argv, pattern_value, record, run_and_kill, time_full_run

KILLS = 20
"""Kills per backend through the library"""
CLI_KILLS = 8
"""Kills per backend through the command line"""

SIZES = {"local": 4 << 20, "zip": 4 << 20, "sqlite": 2 << 20, "postgres": 2 << 20, "mysql": 2 << 20}
SIZES.update({"redis": 2 << 20, "s3": 8 << 20})
"""Value size per backend: S3 values exceed the 5 MiB block size, so they go up in several parts"""

S3_BLOCK = 5 << 20


def _store_config(store_factory: Any, backend: str) -> tuple[str, dict[str, Any]]:
    uri, config = store_factory.uri_and_config(backend)
    if backend == "s3":
        config["default_block_size"] = S3_BLOCK
    return uri, config


def _cli_argv(uri: str, config: dict[str, Any], key: str) -> list[str]:
    argv = [anystore_bin(), "-s", uri]
    for name, value in config.items():
        argv += ["-b", f"{name}={value}"]
    return [*argv, "put", key]


def _reader(uri: str, config: dict[str, Any]) -> Any:
    return get_store(uri=uri, backend_config=config or None, serialization_mode="raw")


def _kill_loop(backend: str, via: str, uri: str, config: dict[str, Any], kills: int) -> dict[str, int]:
    """Kill `kills` writers of one key at random moments; check the key after each; return counts."""
    store = _reader(uri, config)
    size = SIZES[backend]
    rng = random.Random(f"{backend}-{via}")
    append_only = backend == "zip"
    key = "atomic/value.bin"
    current = pattern_value(b"old-", size)
    if not append_only:
        store.put(key, current)

    def argv_for(target: str) -> list[str]:
        return core_writer_argv(uri, config, target) if via == "core" else _cli_argv(uri, config, target)

    calibration_key = "atomic/calibration" if append_only else key
    calibration = pattern_value(b"calibration-", size)
    duration = time_full_run(argv_for(calibration_key), calibration)
    assert _reader(uri, config).get(calibration_key) == calibration
    if not append_only:
        current = calibration

    counts = {"tried": 0, "killed": 0, "old": 0, "new": 0, "lost": 0}
    committed: dict[str, bytes] = {calibration_key: calibration}
    for attempt in range(kills):
        target = f"atomic/value-{attempt}.bin" if append_only else key
        new = pattern_value(b"new%d-" % attempt, size - rng.randrange(0, 4096))
        result = run_and_kill(argv_for(target), new, delay=rng.uniform(0.05, 1.15) * duration)
        counts["tried"] += 1
        counts["killed"] += result.returncode == -9
        found = _reader(uri, config).get(target, raise_on_nonexist=False)
        if result.returncode == 0:
            assert found == new, f"{backend} via {via}: the writer finished, but the new value is not there"
        elif result.returncode != -9:
            counts["failed"] = counts.get("failed", 0) + 1  # failed on its own (a timeout under load): old value
            assert found == (None if append_only else current), f"{backend} via {via}: exit {result.returncode}"
        if found == new:
            counts["new"] += 1
            current = new
            committed[target] = new
        elif (append_only and found is None) or (not append_only and found == current):
            counts["old"] += 1
        else:
            counts["lost"] += 1
            described = None if found is None else (len(found), found[:24])
            pytest.fail(f"{backend} via {via}: kill after {result.delay:.3f}s left {described}")
    if backend == "s3":
        counts["open_uploads"] = _open_uploads(uri, config)
    reader = _reader(uri, config)
    for done_key, value in committed.items():
        assert reader.get(done_key) == value, f"{done_key} changed after later kills"
    keys = sorted(reader.iterate_keys())
    assert keys == sorted(committed), f"keys after the kills: {keys}"
    return counts


def _open_uploads(uri: str, config: dict[str, Any]) -> int:
    """Multipart uploads left open in the bucket of `uri` (killed writers cannot abort theirs)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=config["endpoint_url"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    return len(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


ATOMIC_BACKENDS = ["local", "zip", "sqlite", "postgres", "mysql", "redis", "s3"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "zip", "sqlite", "postgres", "redis", "s3"])
def test_put_stream_killed_at_random_leaves_old_or_new_value(backend, store_factory):
    uri, config = _store_config(store_factory, backend)
    counts = _kill_loop(backend, "core", uri, config, KILLS)
    record(f"atomic-sigkill-core-{backend}", **counts)
    assert counts["lost"] == 0
    assert counts["killed"] > 0, "no writer was killed while writing: the timing needs a look"
    if backend == "zip":
        assert zipfile.ZipFile(uri.removeprefix("file://")).testzip() is None


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "zip", "postgres", "s3"])
def test_cli_put_killed_at_random_leaves_old_or_new_value(backend, store_factory):
    uri, config = _store_config(store_factory, backend)
    counts = _kill_loop(backend, "cli", uri, config, CLI_KILLS)
    record(f"atomic-sigkill-cli-{backend}", **counts)
    assert counts["lost"] == 0
    assert counts["killed"] > 0


def test_local_killed_writes_leave_no_key_behind(store_factory, tmp_path):
    """Temporary files of killed writers are never listed as keys, and never read as values."""
    uri, config = _store_config(store_factory, "local")
    store = _reader(uri, config)
    store.put("a/kept", b"kept")
    folder = os.path.join(uri.removeprefix("file://"), "a")
    for attempt in range(3):
        # killed while it still waits for input: the temporary file exists, the key does not
        proc = subprocess.Popen(core_writer_argv(uri, config, f"a/partial{attempt}"), stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(b"x" * (1 << 20))
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(os.listdir(folder)) < attempt + 2:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        proc.stdin.close()
    leftovers = [name for name in os.listdir(folder) if name != "kept"]
    assert len(leftovers) == 3, f"expected the killed writers' temporary files on disk: {leftovers}"
    assert sorted(_reader(uri, config).iterate_keys()) == ["a/kept"]
    for attempt in range(3):
        assert not _reader(uri, config).exists(f"a/partial{attempt}")


class _FailingSource(io.RawIOBase):
    """A binary stream that yields `good` bytes and then fails, as a dying pipe would."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("the source broke")
        size = min(len(buffer), self.left, 1 << 16)
        buffer[:size] = b"n" * size
        self.left -= size
        return size


@pytest.mark.parametrize("backend", ["memory", *ATOMIC_BACKENDS])
def test_put_stream_failing_half_way_keeps_old_value(backend, store_factory):
    uri, config = _store_config(store_factory, backend)
    store = _reader(uri, config)
    key = "half/way"
    old = pattern_value(b"old-", 64 << 10)
    if backend != "zip":
        store.put(key, old)
    good = (S3_BLOCK * 2 + 4096) if backend == "s3" else 3 << 20
    with pytest.raises(Exception, match="the source broke"):
        store.put_stream(key, io.BufferedReader(_FailingSource(good=good)))
    if backend == "zip":
        assert not store.exists(key)
        assert list(store.iterate_keys()) == []
    else:
        assert store.get(key) == old
        assert list(store.iterate_keys()) == [key]
    if backend == "local":
        assert os.listdir(os.path.join(uri.removeprefix("file://"), "half")) == ["way"], "temporary file left"


def test_s3_failed_multipart_upload_is_aborted(store_factory):
    """A put_stream that fails after some parts went up leaves no pending multipart upload."""
    uri, config = _store_config(store_factory, "s3")
    store = _reader(uri, config)
    store.put("big", pattern_value(b"old-", 1024))
    with pytest.raises(Exception, match="the source broke"):
        store.put_stream("big", io.BufferedReader(_FailingSource(good=S3_BLOCK * 2 + 4096)))
    assert _open_uploads(uri, config) == 0, "the failed multipart upload was left open"
    assert store.get("big") == pattern_value(b"old-", 1024)


class _ShortReads(io.RawIOBase):
    """A raw binary stream that returns at most `step` bytes per read, as a pipe or socket may."""

    def __init__(self, data: bytes, step: int = 1000) -> None:
        self.data, self.offset, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.data[self.offset : self.offset + min(len(buffer), self.step)]
        buffer[: len(chunk)] = chunk
        self.offset += len(chunk)
        return len(chunk)


@pytest.mark.parametrize(
    "backend",
    ["memory", *ATOMIC_BACKENDS],
)
def test_put_stream_with_short_reads_stores_the_whole_value(backend, store_factory):
    """`read(n)` on a raw stream may return fewer than n bytes before the end: nothing is cut."""
    uri, config = _store_config(store_factory, backend)
    store = _reader(uri, config)
    value = pattern_value(b"short-", 3 << 20)
    assert store.put_stream("short", _ShortReads(value)) == len(value)
    assert store.get("short") == value


def _interrupted_put(store: Path, signum: int) -> tuple[int, list[str]]:
    """Start `anystore put` from a pipe that stalls half-way, send `signum`; return the exit
    status and what is left in the key's folder."""
    proc = subprocess.Popen(
        [anystore_bin(), "-s", str(store), "put", "sig/key"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"n" * (3 << 20))
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(os.listdir(store / "sig")) < 2:
        time.sleep(0.05)  # until the temporary file is there
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    proc.stdin.close()
    return proc.returncode, sorted(os.listdir(store / "sig"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_put_interrupted_keeps_old_value_and_cleans_up(signum, tmp_path):
    store = tmp_path / "store"
    old = pattern_value(b"old-", 64 << 10)
    get_store(uri=str(store), serialization_mode="raw").put("sig/key", old)
    status, left = _interrupted_put(store, signum)
    assert (store / "sig" / "key").read_bytes() == old
    assert _reader(str(store), {}).get("sig/key") == old
    assert sorted(_reader(str(store), {}).iterate_keys()) == ["sig/key"]
    assert status == (130 if signum == signal.SIGINT else 143)
    assert left == ["key"], f"exit {status}; a temporary file was left: {left}"
