"""Sync: `mirror` compares before it copies (size and time, or digests), `--delete`, `check`,
the include/exclude/shard filters, and server-side copies, on real stores."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from typing import Any

import pytest

from anystore_cli.errors import InvalidData
from anystore_cli.services.check import check
from anystore_cli.services.mirror import mirror
from anystore_cli.util.keys import make_key_filter, parse_shard, shard_of
from tests.conftest import _redis_cleanup, anystore_bin, drop_sql_table, make_bucket, run_cli, s3_options, unique
from tests.test_cli_support import stderr_text


def _raw(store_factory: Any, backend: str, **config: Any) -> Any:
    return store_factory(backend, serialization_mode="raw", backend_config=config or None)


def _settle(*stores: Any) -> None:
    """Wait out the coarser store's time precision, so a later write is seen as later."""
    time.sleep(max(store.capabilities.mtime_precision for store in stores) + 0.05)


def _contents(store: Any) -> dict[str, bytes]:
    return {key: store.get(key, serialization_mode="raw") for key in store.iterate_keys()}


# ---- the compare rules, on pairs of real stores ------------------------------------------------

PAIRS = [
    ("local", "sqlite"),
    ("local", "postgres"),
    ("local", "redis"),
    ("local", "s3"),
    ("s3", "local"),
    ("redis", "postgres"),
    ("sqlite", "local"),
]


@pytest.mark.parametrize(("source_backend", "target_backend"), PAIRS)
def test_changed_values_are_copied_again_and_unchanged_ones_skipped(store_factory, source_backend, target_backend):
    source = _raw(store_factory, source_backend)
    target = _raw(store_factory, target_backend)
    for key, value in {"k1": b"one", "k2": b"two", "d/k3": b"three"}.items():
        source.put(key, value)
    status = mirror(source, target)
    assert (status.mirrored, status.skipped, status.failed) == (3, 0, 0), status
    again = mirror(source, target)
    assert (again.mirrored, again.skipped, again.failed) == (0, 3, 0), again
    source.put("k1", b"one, and longer")  # another size
    _settle(source, target)
    source.put("k2", b"TWO")  # the same size, later than the copy
    seen: list[tuple[str, str]] = []
    status = mirror(source, target, on_progress=lambda key, outcome: seen.append((key, outcome)))
    assert sorted(seen) == [("d/k3", "skipped"), ("k1", "mirrored"), ("k2", "mirrored")]
    assert _contents(target) == {"k1": b"one, and longer", "k2": b"TWO", "d/k3": b"three"}


@pytest.mark.parametrize("target_backend", ["local", "sqlite", "postgres", "redis", "s3"])
def test_checksum_finds_a_change_that_size_and_time_cannot_see(store_factory, target_backend):
    source = _raw(store_factory, "local")
    target = _raw(store_factory, target_backend)
    source.put("k", b"aaaa")
    source.put("same", b"unchanged")
    assert mirror(source, target).mirrored == 2
    target.put("k", b"bbbb")  # same size, and newer than the source: the time rule keeps it
    assert mirror(source, target).skipped == 2
    assert target.get("k") == b"bbbb"
    status = mirror(source, target, checksum=True)
    assert (status.mirrored, status.skipped, status.failed) == (1, 1, 0), status
    assert target.get("k") == b"aaaa"
    assert mirror(source, target, checksum=True).skipped == 2
    if target_backend in ("s3", "postgres"):  # the digest comes from the listing: ETag, md5() in SQL
        entries = {e.key: e.md5 for e in target.iterate_entries(md5=True)}
        assert entries["k"] == hashlib.md5(b"aaaa").hexdigest()


def test_zip_archives_as_source_and_target(store_factory):
    archive = _raw(store_factory, "zip")
    archive.put("a", b"alpha")
    folder = _raw(store_factory, "local")
    assert mirror(archive, folder).mirrored == 1
    assert mirror(archive, folder).skipped == 1
    archive.put("b", b"beta")
    status = mirror(archive, folder)
    assert (status.mirrored, status.skipped) == (1, 1)
    # into an archive: new keys are added, unchanged ones skipped, a changed one cannot be
    back = _raw(store_factory, "zip")
    assert mirror(folder, back).mirrored == 2
    assert mirror(folder, back).skipped == 2
    folder.put("a", b"alpha, changed")
    status = mirror(folder, back)
    assert (status.mirrored, status.skipped, status.failed) == (0, 1, 1)
    assert status.errors[0][0] == "a" and "append-only" in status.errors[0][1]


def test_a_failed_copy_stops_delete(store_factory):
    source = _raw(store_factory, "local")
    target = _raw(store_factory, "zip")
    source.put("a", b"1")
    target.put("a", b"22")  # cannot be replaced in an archive
    target.put("extra", b"x")
    status = mirror(source, target, delete=True)
    assert status.failed == 1 and status.delete_skipped and status.deleted == 0


def test_delete_makes_the_target_equal_and_check_agrees(store_factory):
    source = _raw(store_factory, "redis")
    target = _raw(store_factory, "s3")
    for i in range(5):
        source.put(f"k{i}", f"v{i}".encode())
    target.put("k0", b"v0")
    target.put("old/1", b"gone")
    target.put("old/2", b"gone")
    dry = mirror(source, target, delete=True, dry_run=True)
    assert (dry.mirrored, dry.skipped, dry.deleted) == (4, 1, 2)  # k0: same size, the target's is newer
    assert sorted(target.iterate_keys()) == ["k0", "old/1", "old/2"]
    status = mirror(source, target, delete=True)
    assert (status.deleted, status.failed) == (2, 0)
    assert _contents(target) == _contents(source)
    assert check(source, target).same
    assert check(source, target, checksum=True).same


# ---- the command line ------------------------------------------------------------------------


def _uri_env(store_factory: Any, backend: str) -> tuple[str, list[str], dict[str, str]]:
    """(uri, global -b args, env) for a fresh store on `backend`, for `anystore` processes."""
    uri, config = store_factory.uri_and_config(backend)
    env: dict[str, str] = {}
    args: list[str] = []
    if backend == "s3":
        env["AWS_ENDPOINT_URL"] = config.pop("endpoint_url")
        config = {}
    for name, value in config.items():
        args += ["--to-config", f"{name}={value}"]  # the target's options (mirror, check)
    return uri, args, env


def _put(uri: str, args: list[str], env: dict[str, str], key: str, value: bytes) -> None:
    store_args = [arg if arg != "--to-config" else "-b" for arg in args]  # the store's own options
    proc = run_cli(*store_args, "-s", uri, "put", key, input=value, env=env)
    assert proc.returncode == 0, stderr_text(proc)


@pytest.mark.parametrize("target_backend", ["redis", "s3", "postgres", "sqlite"])
def test_cli_delete_dry_run_lists_then_mirror_makes_check_exit_0(store_factory, target_backend):
    source = str(store_factory.tmp_path / unique("src"))
    target, args, env = _uri_env(store_factory, target_backend)
    for key in ["a", "b/c", "d"]:
        _put(source, [], {}, key, f"value {key}".encode())
    _put(target, args, env, "a", b"value a")
    _put(target, args, env, "stale/1", b"x")
    dry = run_cli("mirror", "-i", source, "-o", target, *args, "--delete", "--dry-run", env=env)
    assert dry.returncode == 0, stderr_text(dry)
    assert sorted(dry.stdout.decode().splitlines()) == ["copy b/c", "copy d", "delete stale/1"]
    differ = run_cli("check", "-i", source, "-o", target, *args, env=env)
    assert differ.returncode == 1, stderr_text(differ)
    assert sorted(differ.stdout.decode().splitlines()) == ["+ b/c", "+ d", "- stale/1"]
    proc = run_cli("mirror", "-i", source, "-o", target, *args, "--delete", env=env)
    err = stderr_text(proc)
    assert proc.returncode == 0, err
    assert "2 copied" in err and "1 skipped" in err and "1 deleted" in err and "0 failed" in err
    same = run_cli("check", "-i", source, "-o", target, *args, "--checksum", env=env)
    assert (same.returncode, same.stdout) == (0, b""), stderr_text(same)


def test_cli_check_finds_changed_missing_and_extra_keys(store_factory):
    source = str(store_factory.tmp_path / unique("src"))
    target, args, env = _uri_env(store_factory, "redis")
    for key, value in {"same": b"1", "changed": b"old", "missing": b"m", "twin": b"aaaa"}.items():
        _put(source, [], {}, key, value)
    for key, value in {"same": b"1", "changed": b"new value", "extra": b"e", "twin": b"bbbb"}.items():
        _put(target, args, env, key, value)
    proc = run_cli("check", "-i", source, "-o", target, *args, env=env)
    assert proc.returncode == 1, stderr_text(proc)
    assert sorted(proc.stdout.decode().splitlines()) == ["* changed", "+ missing", "- extra"]
    assert "2 equal, 1 differ, 1 only in SRC, 1 only in DST" in stderr_text(proc)
    proc = run_cli("check", "-i", source, "-o", target, *args, "--json", "--checksum", "-j", "2", env=env)
    assert proc.returncode == 1
    records = {r["key"]: r for r in map(json.loads, proc.stdout.decode().splitlines())}
    assert {k: r["status"] for k, r in records.items()} == {
        "changed": "differ",
        "twin": "differ",  # same size, another digest
        "missing": "only_source",
        "extra": "only_target",
    }
    assert (records["changed"]["source_size"], records["changed"]["target_size"]) == (3, 9)
    assert records["extra"]["source_size"] is None


def test_cli_failed_copy_exits_3_names_the_key_and_deletes_nothing(tmp_path):
    source, archive = str(tmp_path / "src"), str(tmp_path / "t.zip")
    for key, value in {"a": b"new a", "b": b"b"}.items():
        _put(source, [], {}, key, value)
    for key, value in {"a": b"old", "gone": b"g"}.items():
        _put(archive, [], {}, key, value)
    proc = run_cli("mirror", "-i", source, "-o", archive, "--delete")
    err = stderr_text(proc)
    assert proc.returncode == 3, err
    assert "1 copied" in err and "1 failed" in err and "0 deleted" in err
    assert "key `a`" in err and "nothing deleted" in err
    assert run_cli("-s", archive, "exists", "gone").returncode == 0


def test_cli_compare_options_are_exclusive_and_shard_is_checked(tmp_path):
    source = str(tmp_path / "src")
    proc = run_cli("mirror", "-i", source, "-o", str(tmp_path / "t"), "--overwrite", "--checksum")
    assert proc.returncode == 2 and "--overwrite" in stderr_text(proc)
    for shard in ("4/4", "-1/3", "1/0", "x", "1"):
        proc = run_cli("-s", source, "keys", "--shard", shard)
        assert proc.returncode == 2, (shard, stderr_text(proc))
        assert stderr_text(proc).startswith("anystore: error: ") and "shard" in stderr_text(proc)


# ---- filters ---------------------------------------------------------------------------------


KEYS = ["a.json", "a.tmp", "docs/b.json", "docs/c.txt", "cache/d.json", "x/cache/e.txt", "secret/f.json"]


def test_filter_rules_first_match_wins_as_rclone():
    def keep(**criteria: Any) -> list[str]:
        match = make_key_filter(**criteria)
        return [key for key in KEYS if match(key)]

    assert keep(exclude=["*.tmp", "cache/"]) == ["a.json", "docs/b.json", "docs/c.txt", "secret/f.json"]
    assert keep(include=["*.json"]) == ["a.json", "docs/b.json", "cache/d.json", "secret/f.json"]
    assert keep(include=["/docs/**"]) == ["docs/b.json", "docs/c.txt"]
    # order decides: the exclude first leaves secret/ out, the include first keeps it
    assert keep(filters=["- secret/**", "+ *.json"]) == ["a.json", "docs/b.json", "cache/d.json"]
    assert keep(filters=["+ *.json", "- secret/**"]) == ["a.json", "docs/b.json", "cache/d.json", "secret/f.json"]
    assert keep(prefix="docs/", exclude=["*.txt"]) == ["docs/b.json"]


def test_shards_partition_the_keys_stably():
    keys = [f"key/{i}" for i in range(2000)]
    shards = [[k for k in keys if make_key_filter(shard=f"{i}/5")(k)] for i in range(5)]
    assert sorted(k for shard in shards for k in shard) == sorted(keys)
    assert all(250 < len(shard) < 550 for shard in shards)
    # the documented hash: first 8 bytes of the key's SHA-1, big-endian, modulo N
    assert shard_of("key/7", 5) == int(hashlib.sha1(b"key/7").hexdigest()[:16], 16) % 5
    assert parse_shard("2/3") == (2, 3)
    with pytest.raises(InvalidData):
        parse_shard("3/3")


def test_cli_include_exclude_in_command_line_order_on_keys_rm_dump(tmp_path):
    store = str(tmp_path / "s")
    for key in KEYS:
        _put(store, [], {}, key, key.encode())

    def listed(*options: str) -> list[str]:
        proc = run_cli("-s", store, "keys", "--sort", *options)
        assert proc.returncode == 0, stderr_text(proc)
        return proc.stdout.decode().split()

    assert listed("--exclude", "secret/**", "--include", "*.json") == ["a.json", "cache/d.json", "docs/b.json"]
    assert listed("--include", "*.json", "--exclude", "secret/**") == [
        "a.json",
        "cache/d.json",
        "docs/b.json",
        "secret/f.json",
    ]
    shards = [listed("--shard", f"{i}/3") for i in range(3)]
    assert sorted(k for s in shards for k in s) == sorted(KEYS)
    dump = run_cli("-s", store, "dump", "--exclude", "*.txt", "--include", "docs/")
    assert [json.loads(line)["key"] for line in dump.stdout.decode().splitlines()] == ["docs/b.json"]
    proc = run_cli("-s", store, "rm", "--include", "*.tmp", "--include", "/cache/")  # anchored: not x/cache/
    assert proc.returncode == 0, stderr_text(proc)
    assert listed() == ["a.json", "docs/b.json", "docs/c.txt", "secret/f.json", "x/cache/e.txt"]
    assert run_cli("-s", store, "rm", "--exclude", "*.json").returncode == 2  # would delete the rest


@pytest.mark.parametrize("target_backend", ["local", "redis"])
def test_shards_run_as_processes_copy_each_key_exactly_once(store_factory, target_backend):
    source = str(store_factory.tmp_path / unique("src"))
    keys = [f"part/{i:03d}" for i in range(120)]
    proc = run_cli(
        "-s", source, "load", input="".join(json.dumps({"key": k, "value": k}) + "\n" for k in keys).encode()
    )
    assert proc.returncode == 0, stderr_text(proc)
    target, args, env = _uri_env(store_factory, target_backend)
    count = 4
    runs = [
        subprocess.Popen(
            [anystore_bin(), "-v", "mirror", "-i", source, "-o", target, *args, "--shard", f"{i}/{count}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}, **env},
        )
        for i in range(count)
    ]
    copied: list[str] = []
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err.decode()
        copied += [line.split(" ", 1)[1] for line in err.decode().splitlines() if line.startswith("mirrored part/")]
    assert sorted(copied) == keys  # every key, each once
    same = run_cli("check", "-i", source, "-o", target, *args, env=env)
    assert same.returncode == 0, same.stdout.decode()


# ---- server-side copies ----------------------------------------------------------------------


def test_s3_to_s3_copies_no_value_bytes_through_the_client(s3_server):
    from urllib.parse import urlsplit

    from anystore_cli.core import get_store
    from tests.faults import TcpProxy

    source_bucket, target_bucket = unique("src"), unique("dst")
    make_bucket(s3_server, source_bucket)
    make_bucket(s3_server, target_bucket)
    direct = get_store(f"s3://{source_bucket}", backend_config=s3_options(s3_server), serialization_mode="raw")
    values = {f"big/{i}": bytes([i]) * (2 * 1024 * 1024) for i in range(4)}
    for key, value in values.items():
        direct.put(key, value)
    parts = urlsplit(s3_server)
    with TcpProxy((parts.hostname, parts.port)) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}"
        source = get_store(f"s3://{source_bucket}", backend_config=s3_options(endpoint))
        target = get_store(f"s3://{target_bucket}", backend_config=s3_options(endpoint), serialization_mode="raw")
        status = mirror(source, target, workers=2)
        assert (status.mirrored, status.server_side, status.failed) == (4, 4, 0), status
        assert status.bytes == sum(map(len, values.values()))
        assert proxy.forwarded < 100_000, proxy.forwarded  # 8 MiB copied, a few requests passed
        assert mirror(source, target).skipped == 4
    copied = get_store(f"s3://{target_bucket}", backend_config=s3_options(s3_server), serialization_mode="raw")
    assert _contents(copied) == values


def test_sql_and_redis_copy_on_the_server(store_factory):
    from anystore_cli.core import get_store

    for backend, option in (("sqlite", "table"), ("postgres", "table"), ("redis", "redis_prefix")):
        uri, config = store_factory.uri_and_config(backend)
        source = get_store(uri, backend_config=config or None, serialization_mode="raw")
        other = dict(config, **{option: unique("copy")})
        cleanup = _redis_cleanup if backend == "redis" else drop_sql_table
        store_factory.cleanups.append(lambda cleanup=cleanup, uri=uri, name=other[option]: cleanup(uri, name))
        target = get_store(uri, backend_config=other, serialization_mode="raw")
        values = {f"k{i}": f"value {i}".encode() * (i + 1) for i in range(5)}
        for key, value in values.items():
            source.put(key, value)
        status = mirror(source, target)
        assert (status.mirrored, status.server_side, status.failed) == (5, 5, 0), (backend, status)
        assert status.bytes == sum(map(len, values.values()))
        assert _contents(target) == values
        assert mirror(source, target).skipped == 5, backend


# ---- sync that feels like rclone's ---------------------------------------------------------


def test_mirror_copies_four_keys_at_once_by_default():
    proc = run_cli("mirror", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.decode().split())
    assert "-j, --jobs N" in text and "[default: 4;" in text.split("-j, --jobs N", 1)[1].split("--dry-run", 1)[0]


def test_verbose_dry_run_never_says_mirrored_or_copied(tmp_path):
    source, target = tmp_path / "src", tmp_path / "dst"
    for key in ("a", "b/c"):
        _put(str(source), [], {}, key, b"v")
    _put(str(target), [], {}, "stale", b"x")
    proc = run_cli("-v", "mirror", "-i", str(source), "-o", str(target), "--delete", "--dry-run")
    err = stderr_text(proc)
    assert proc.returncode == 0, err
    assert "mirrored" not in err and "copied" not in err, err
    assert "would copy a" in err and "would copy b/c" in err and "would delete stale" in err
    assert "would copy 2 keys" in err
    assert sorted(proc.stdout.decode().splitlines()) == ["copy a", "copy b/c", "delete stale"]
    assert run_cli("-s", str(target), "exists", "a").returncode == 1


def test_mirror_into_a_bucket_that_does_not_exist_creates_it_or_refuses(tmp_path, s3_server):
    source = str(tmp_path / "src")
    for key in ("a", "b/c"):
        _put(source, [], {}, key, key.encode())
    bucket = unique("new")
    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    refused = run_cli("mirror", "-i", source, "-o", f"s3://{bucket}/site", "--no-create", env=env)
    assert refused.returncode == 3, stderr_text(refused)
    assert f"bucket `{bucket}` does not exist" in stderr_text(refused).splitlines()[-1]
    dry = run_cli("mirror", "-i", source, "-o", f"s3://{bucket}/site", "--dry-run", env=env)
    assert dry.returncode == 0, stderr_text(dry)
    assert run_cli("-s", f"s3://{bucket}/site", "keys", env=env).returncode == 3  # a dry run makes nothing
    proc = run_cli("mirror", "-i", source, "-o", f"s3://{bucket}/site", env=env)
    err = stderr_text(proc)
    assert proc.returncode == 0, err
    assert "created the bucket" in err and "2 copied" in err
    keys = run_cli("-s", f"s3://{bucket}/site", "keys", "--sort", env=env)
    assert (keys.returncode, keys.stdout) == (0, b"a\nb/c\n"), stderr_text(keys)


def test_mirror_progress_on_a_terminal_shows_keys_bytes_and_an_eta(tmp_path):
    from tests.test_terminal import run_on_terminal

    source = tmp_path / "src"
    for index in range(20):
        _put(str(source), [], {}, f"k{index:02d}", b"x" * 1000)
    run = run_on_terminal("mirror", "-i", str(source), "-o", str(tmp_path / "dst"), cwd=tmp_path, columns=160)
    assert run.returncode == 0, run.terminal
    shown = run.terminal.decode("utf-8", "replace")
    assert "mirroring" in shown and "ETA" in shown, shown
    assert "20/20 keys" in shown and "20.0/20.0 kB" in shown, shown


class _SlowSource:
    """An http index of two values; the second one's body waits until `release` is set."""

    def __init__(self) -> None:
        import http.server

        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._answer(body=False)

            def do_GET(self) -> None:
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                if self.path.rstrip("/") == "/src":
                    data, kind = b'<a href="a">a</a> <a href="b">b</a>', "text/html"
                elif self.path in ("/src/a", "/src/b"):
                    data, kind = b"value " + self.path[-1:].encode(), "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    if self.path == "/src/b":
                        owner.release.wait(60)
                    self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/src"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_ctrl_c_prints_the_partial_summary_and_exits_130(tmp_path):
    import signal

    slow = _SlowSource()
    target = tmp_path / "dst"
    _put(str(target), [], {}, "stale", b"x")
    try:
        proc = subprocess.Popen(
            [anystore_bin(), "-v", "mirror", "-i", slow.url, "-o", str(target), "--delete"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        lines: list[str] = []
        assert proc.stderr is not None
        for raw in proc.stderr:  # `a` is copied while `b` waits
            lines.append(raw.decode())
            if raw.startswith(b"mirrored a"):
                break
        proc.send_signal(signal.SIGINT)
        for raw in proc.stderr:
            lines.append(raw.decode())
            if raw.startswith(b"interrupted:"):
                break
        slow.release.set()
        rest = proc.stderr.read().decode()
        assert proc.wait(60) == 130, "".join(lines) + rest
    finally:
        if proc.poll() is None:
            proc.kill()
        slow.close()
    summary = lines[-1]
    assert summary.startswith("interrupted: copied 1 key (7 bytes)"), "".join(lines)
    assert "0 deleted" in summary
    assert (target / "a").read_bytes() == b"value a"
    assert (target / "stale").exists()  # nothing deleted after an interrupt
