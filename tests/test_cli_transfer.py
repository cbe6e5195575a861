"""`dump`, `load`, `mirror`, `io` through the installed `anystore`."""

from __future__ import annotations

# ruff: noqa: F811  # fixtures from tests.test_cli_support reappear as arguments
import base64
import json
import random
import time

import pytest

from tests.conftest import run_cli
from tests.test_cli_support import (  # noqa: F401 - fixtures
    CliStore,
    assert_one_line_error,
    cli_store,
    local_store,
    make_cli_store,
    stderr_text,
)

BINARY = b"\x00\xff\xfebinary\x80"


def dump_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_dump_writes_text_and_base64_lines(cli_store: CliStore):
    cli_store.put("text", "ünï\ncode".encode())
    cli_store.put("bin", BINARY)
    records = sorted(dump_lines(cli_store.ok("dump")), key=lambda r: r["key"])
    assert records == [
        {"key": "bin", "value_b64": base64.b64encode(BINARY).decode()},
        {"key": "text", "value": "ünï\ncode"},
    ]


def test_dump_filters_keys_from_and_output(cli_store: CliStore, tmp_path):
    for key in ["a/1", "a/2", "a/old/3", "b/4"]:
        cli_store.put(key, key.encode())
    keys = lambda out: sorted(r["key"] for r in dump_lines(out))  # noqa: E731
    assert keys(cli_store.ok("dump", "--prefix", "a/", "--exclude-prefix", "a/old")) == ["a/1", "a/2"]
    assert keys(cli_store.ok("dump", "--glob", "*/4")) == ["b/4"]
    listing = tmp_path / "keys.txt"
    listing.write_text("b/4\na/1\n\n")
    assert [r["key"] for r in dump_lines(cli_store.ok("dump", "--keys-from", str(listing)))] == ["b/4", "a/1"]
    assert keys(cli_store.ok("dump", "--keys-from", "-", input=b"a/2\n")) == ["a/2"]
    target = tmp_path / "out.jsonl"
    assert cli_store.ok("dump", "-o", str(target)) == b""
    assert len(dump_lines(target.read_bytes())) == 4


def test_dump_keys_from_missing_key_exits_1(cli_store: CliStore):
    cli_store.put("here", b"1")
    proc = cli_store("dump", "--keys-from", "-", input=b"here\nmissing\n")
    assert proc.returncode == 1
    assert "missing" in stderr_text(proc)
    assert [r["key"] for r in dump_lines(proc.stdout)] == ["here"]


def test_dump_load_roundtrip_between_backends(cli_store: CliStore, store_factory):
    values = {"text": b"hello", "bin": BINARY, "nested/dir/k": b"", "sp ace/ü": "ü".encode()}
    for key, value in values.items():
        cli_store.put(key, value)
    target = make_cli_store(store_factory, "local")
    target.ok("load", input=cli_store.ok("dump"))
    for key, value in values.items():
        assert target.get(key) == value


def test_twenty_mib_binary_roundtrips_through_dump_and_load(cli_store: CliStore, store_factory):
    data = random.Random(7).randbytes(20 * 1024 * 1024) + b"\x00\xff"
    source = make_cli_store(store_factory, "local")
    source.ok("put", "big.bin", input=data)
    source.ok("put", "small", input=b"s")
    dumped = source.ok("dump")
    assert b'"value_b64"' in dumped
    cli_store.ok("load", input=dumped)
    assert cli_store.get("big.bin") == data
    assert cli_store.get("small") == b"s"
    # and back again
    again = make_cli_store(store_factory, "local")
    again.ok("load", input=cli_store.ok("dump"))
    assert again.get("big.bin") == data


def test_load_reports_summary_on_stderr(cli_store: CliStore):
    lines = b"".join(json.dumps({"key": f"k{i}", "value": str(i)}).encode() + b"\n" for i in range(2500))
    proc = cli_store("load", "-j", "4", input=lines)
    assert proc.returncode == 0, stderr_text(proc)
    assert proc.stdout == b""
    assert "2500" in stderr_text(proc)
    assert cli_store.ok("keys", "--count") == b"2500\n"
    assert cli_store.get("k1234") == b"1234"


def test_load_accepts_json_values_and_blank_lines(cli_store: CliStore):
    cli_store.ok("load", input=b'{"key": "obj", "value": {"a": [1, 2]}}\n\n{"key": "n", "value": 5}\n')
    assert cli_store.get("obj") == b'{"a":[1,2]}'
    assert cli_store.get("n") == b"5"


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'["key", "value"]',
        b'{"value": "x"}',
        b'{"key": "k"}',
        b'{"key": "../x", "value": "v"}',
        b'{"key": "k", "value_b64": "***"}',
        b'{"key": "k", "value": "v", "ttl": "soon"}',
    ],
    ids=["not-json", "array", "no-key", "no-value", "bad-key", "bad-base64", "bad-ttl"],
)
def test_load_malformed_line_exits_2_naming_line_and_keeps_lines_before(cli_store: CliStore, bad):
    good = b'{"key": "first", "value": "1"}\n{"key": "second", "value": "2"}\n'
    after = b'{"key": "after", "value": "3"}\n'
    proc = cli_store("load", input=good + bad + b"\n" + after)
    err = stderr_text(proc)
    assert proc.returncode == 2, err
    assert "line 3" in err
    assert "loaded 2 keys" in err
    assert "Traceback" not in err
    assert cli_store.get("first") == b"1"
    assert cli_store.get("second") == b"2"
    assert cli_store("exists", "after").returncode == 1


def test_load_into_unreachable_store_exits_3_and_says_how_many_were_loaded():
    lines = b'{"key": "a", "value": "1"}\n'
    proc = run_cli("-s", "redis://:pw@127.0.0.1:1/0", "load", input=lines, timeout=30)
    line = assert_one_line_error(proc, 3, "loaded 0 keys", "127.0.0.1:1")
    assert ":pw@" not in line


def test_load_no_clobber_keeps_existing_and_exits_1(cli_store: CliStore):
    cli_store.put("old", b"kept")
    proc = cli_store("load", "--no-clobber", input=b'{"key": "old", "value": "new"}\n{"key": "fresh", "value": "f"}\n')
    assert proc.returncode == 1, stderr_text(proc)
    assert cli_store.get("old") == b"kept"
    assert cli_store.get("fresh") == b"f"


def test_load_ttl_per_line_and_default(store_factory):
    store = make_cli_store(store_factory, "redis")
    lines = (
        b'{"key": "short", "value": "s", "ttl": 1}\n{"key": "long", "value": "l"}\n{"key": "forever", "value": "f"}\n'
    )
    store.ok("load", "--ttl", "1000", input=lines)
    assert store.get("short") == b"s"
    time.sleep(2.2)
    assert store("exists", "short").returncode == 1
    assert store.get("long") == b"l"


def test_mirror_ignore_existing_skips_existing_keys_and_overwrite_copies_them(cli_store: CliStore, store_factory):
    source = make_cli_store(store_factory, "local")
    for key in ["a", "b/c", "d"]:
        source.put(key, f"src {key}".encode())
    cli_store.put("a", b"already")
    proc = run_cli("mirror", "-i", source.uri, "-o", cli_store.uri, *_config_args(cli_store), "--ignore-existing")
    assert proc.returncode == 0, stderr_text(proc)
    err = stderr_text(proc)
    assert "2 copied" in err and "1 skipped" in err and "0 failed" in err
    assert cli_store.get("a") == b"already"
    assert cli_store.get("b/c") == b"src b/c"
    proc = run_cli("mirror", "-i", source.uri, "-o", cli_store.uri, "--overwrite", "-j", "3", *_config_args(cli_store))
    assert proc.returncode == 0, stderr_text(proc)
    assert cli_store.get("a") == b"src a"


def _config_args(store: CliStore) -> list[str]:
    """The `--to-config NAME=VALUE` options of `store` as a mirror's target."""
    return [arg for name, value in store.config.items() for arg in ("--to-config", f"{name}={value}")]


def test_mirror_from_second_backend_with_filters_and_dry_run(cli_store: CliStore, store_factory):
    for key in ["keep/1.json", "keep/2.txt", "skip/3.json"]:
        cli_store.put(key, key.encode())
    target = make_cli_store(store_factory, "local")
    dry = cli_store("mirror", "-o", target.uri, "--glob", "**/*.json", "--dry-run")
    assert dry.returncode == 0, stderr_text(dry)
    assert sorted(dry.stdout.decode().splitlines()) == ["copy keep/1.json", "copy skip/3.json"]
    listed = target("keys")  # the dry run wrote nothing (an empty folder, or none at all)
    assert listed.stdout == b"" and listed.returncode in (0, 3), stderr_text(listed)
    proc = cli_store("mirror", "-o", target.uri, "--prefix", "keep/")
    assert proc.returncode == 0, stderr_text(proc)
    assert sorted(target.ok("keys").decode().split()) == ["keep/1.json", "keep/2.txt"]
    assert target.get("keep/2.txt") == b"keep/2.txt"


def test_mirror_into_readonly_target_exits_3(local_store: CliStore, store_factory):
    local_store.put("k", b"v")
    target = make_cli_store(store_factory, "local")
    proc = run_cli("--readonly", "mirror", "-i", local_store.uri, "-o", target.uri)
    err = stderr_text(proc)
    assert proc.returncode == 3, err
    assert "1 failed" in err
    assert "Traceback" not in err
    assert target("exists", "k").returncode == 1


def test_io_copies_between_uris_and_std_streams(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(BINARY * 1000)
    target = tmp_path / "sub" / "out.bin"
    proc = run_cli("io", "-i", str(source), "-o", str(target))
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert target.read_bytes() == BINARY * 1000
    assert run_cli("io", "-i", str(source)).stdout == BINARY * 1000
    proc = run_cli("io", "-o", f"file://{tmp_path}/from-stdin.bin", input=BINARY)
    assert proc.returncode == 0
    assert (tmp_path / "from-stdin.bin").read_bytes() == BINARY


def test_io_missing_input_exits_1_and_writes_nothing(tmp_path):
    proc = run_cli("io", "-i", str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert_one_line_error(proc, 1, "nope")
    assert not (tmp_path / "out").exists()


def test_io_unknown_scheme_exits_2(tmp_path):
    assert_one_line_error(run_cli("io", "-i", "nosuchscheme://x/y"), 2, "nosuchscheme")
