"""`get`, `put`, `pop`, `stream`, `touch` through the installed `anystore`, on a local folder
and on second backends (sqlite, redis)."""

from __future__ import annotations

# ruff: noqa: F811  # fixtures from tests.test_cli_support reappear as arguments
import json
import os
import pty
import random
import subprocess
import time
from datetime import datetime

import pytest

from tests.conftest import anystore_bin
from tests.test_cli_support import (  # noqa: F401 - fixtures
    CliStore,
    assert_one_line_error,
    cli_store,
    local_store,
    stderr_text,
)

BINARY = b"a\x00b\xff\xfe\x80 no newline"


def test_put_stdin_get_stdout_roundtrips_bytes_exactly(cli_store: CliStore):
    cli_store.put("bin", BINARY)
    assert cli_store.get("bin") == BINARY


def test_put_value_argument(cli_store: CliStore):
    cli_store.ok("put", "greeting", "hello world")
    assert cli_store.get("greeting") == b"hello world"


def test_put_value_argument_wins_over_input(cli_store: CliStore, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"from file")
    cli_store.ok("put", "k", "from argument", "-i", str(source))
    assert cli_store.get("k") == b"from argument"


def test_put_from_input_file_and_get_to_output_file(cli_store: CliStore, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(BINARY * 100)
    cli_store.ok("put", "dir/k", "-i", str(source))
    target = tmp_path / "out" / "copy.bin"
    assert cli_store.ok("get", "dir/k", "-o", str(target)) == b""
    assert target.read_bytes() == BINARY * 100
    assert cli_store.ok("get", "dir/k", "-o", "-") == BINARY * 100


def test_put_empty_stdin_stores_empty_value(cli_store: CliStore):
    cli_store.put("empty", b"")
    assert cli_store.get("empty") == b""
    assert cli_store("exists", "empty").returncode == 0


def test_put_overwrites(cli_store: CliStore):
    cli_store.put("k", b"one")
    cli_store.put("k", b"two")
    assert cli_store.get("k") == b"two"


@pytest.mark.parametrize("command", ["get", "pop", "info", "checksum", "stream"])
def test_missing_key_on_reading_command_exits_1(cli_store: CliStore, command):
    proc = cli_store(command, "no/such key")
    assert proc.stdout == b""
    assert_one_line_error(proc, 1, "no/such key", "does not exist")


def test_missing_key_error_names_the_store(local_store: CliStore):
    proc = local_store("get", "nope")
    assert_one_line_error(proc, 1, "`nope`", local_store.uri)


def test_get_missing_ok_prints_nothing_and_exits_0(cli_store: CliStore):
    proc = cli_store("get", "nope", "--missing-ok")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"", b"")


def test_get_missing_key_does_not_create_output_file(local_store: CliStore, tmp_path):
    target = tmp_path / "never.bin"
    assert local_store("get", "nope", "-o", str(target)).returncode == 1
    assert not target.exists()


def test_put_no_clobber_on_existing_key_exits_1_and_keeps_value(cli_store: CliStore):
    cli_store.put("k", b"old")
    proc = cli_store("put", "k", "--no-clobber", input=b"new")
    assert_one_line_error(proc, 1, "`k`", cli_store.uri, "already exists")
    proc = cli_store("put", "k", "newer", "--no-clobber")
    assert_one_line_error(proc, 1, "`k`", cli_store.uri)
    assert cli_store.get("k") == b"old"
    cli_store.ok("put", "fresh", "--no-clobber", input=b"new")
    assert cli_store.get("fresh") == b"new"


def test_put_json_mode_normalises(cli_store: CliStore):
    cli_store.ok("put", "j", "--mode", "json", input=b'{ "a" : [1, 2,  3], "b": "\xc3\xbc" }\n')
    assert cli_store.get("j") == '{"a":[1,2,3],"b":"ü"}'.encode()


def test_put_invalid_json_exits_2_and_stores_nothing(cli_store: CliStore):
    proc = cli_store("put", "j", "--mode", "json", input=b"{not json")
    assert_one_line_error(proc, 2, "JSON", "j")
    assert cli_store("exists", "j").returncode == 1


def test_get_json_mode_prints_compact_json_and_newline(cli_store: CliStore):
    cli_store.put("j", b'{"a":  1,\n "b": [true, null]}')
    assert cli_store.ok("get", "j", "--mode", "json") == b'{"a":1,"b":[true,null]}\n'


def test_json_mode_keeps_big_integers(cli_store: CliStore):
    cli_store.ok("put", "big", "--mode", "json", input=b"[123456789012345678901234567890]")
    assert cli_store.ok("get", "big", "--mode", "json") == b"[123456789012345678901234567890]\n"


def test_get_json_mode_on_non_json_exits_2(cli_store: CliStore):
    cli_store.put("text", b"plain text")
    proc = cli_store("get", "text", "--mode", "json")
    assert_one_line_error(proc, 2, "text")


def test_get_auto_mode_json_else_bytes_never_unpickles(cli_store: CliStore):
    import pickle

    cli_store.put("j", b'{"x": 1}')
    cli_store.put("t", b"just text")
    cli_store.put("b", BINARY)
    pickled = pickle.dumps({"a": 1})
    cli_store.put("p", pickled)
    assert cli_store.ok("get", "j", "--mode", "auto") == b'{"x":1}\n'
    assert cli_store.ok("get", "t", "--mode", "auto") == b"just text"
    assert cli_store.ok("get", "b", "--mode", "auto") == BINARY
    assert cli_store.ok("get", "p", "--mode", "auto") == pickled


def test_pickle_mode_only_by_name(cli_store: CliStore):
    cli_store.ok("put", "p", "--mode", "pickle", input=b"hello")
    assert cli_store.get("p") != b"hello"
    assert cli_store.ok("get", "p", "--mode", "pickle") == b"hello"


def test_unknown_mode_exits_2(cli_store: CliStore):
    proc = cli_store("get", "k", "--mode", "yaml")
    assert_one_line_error(proc, 2, "--mode")


def test_pop_prints_value_then_deletes(cli_store: CliStore):
    cli_store.put("queue/1", BINARY)
    assert cli_store.ok("pop", "queue/1") == BINARY
    assert cli_store("exists", "queue/1").returncode == 1
    assert_one_line_error(cli_store("pop", "queue/1"), 1, "queue/1")


def test_pop_to_output_file_with_json_mode(cli_store: CliStore, tmp_path):
    cli_store.put("j", b'{ "a": 1 }')
    target = tmp_path / "popped.json"
    cli_store.ok("pop", "j", "-o", str(target), "--mode", "json")
    assert target.read_bytes() == b'{"a":1}\n'
    assert cli_store("exists", "j").returncode == 1


def test_stream_prints_lines_of_several_keys_in_order(cli_store: CliStore):
    cli_store.put("a", b"1\n2\n")
    cli_store.put("b", b"3\n4")
    assert cli_store.ok("stream", "a", "b") == b"1\n2\n3\n4"  # the last line as stored


def test_stream_json_mode_reemits_compact_json(cli_store: CliStore):
    cli_store.put("a.jsonl", b'{"a": 1}\n\n[1,  2]\n')
    assert cli_store.ok("stream", "a.jsonl", "--mode", "json") == b'{"a":1}\n[1,2]\n'


def test_stream_json_mode_bad_line_exits_2_naming_key_and_line(cli_store: CliStore):
    cli_store.put("bad.jsonl", b'{"a": 1}\n{"b": 2}\nnot json\n{"c": 3}\n')
    proc = cli_store("stream", "bad.jsonl", "--mode", "json")
    assert_one_line_error(proc, 2, "bad.jsonl", "line 3")
    assert proc.stdout == b'{"a":1}\n{"b":2}\n'


def test_touch_prints_and_stores_iso_timestamp(cli_store: CliStore):
    out = cli_store.ok("touch", "stamp", "other").decode()
    stamp = out.strip()
    assert out == stamp + "\n"
    when = datetime.fromisoformat(stamp)
    assert when.tzinfo is not None
    assert abs(time.time() - when.timestamp()) < 120
    assert cli_store.get("stamp").decode() == stamp
    assert cli_store.get("other").decode() == stamp


def test_put_ttl_expires_key(store_factory):
    from tests.test_cli_support import make_cli_store

    store = make_cli_store(store_factory, "redis")
    store.ok("put", "short", "v", "--ttl", "1")
    assert store.get("short") == b"v"
    time.sleep(2.2)
    assert store("get", "short").returncode == 1


@pytest.mark.parametrize("key", ["../x", "/abs", "a/../../b", ""])
@pytest.mark.parametrize("command", [["get"], ["put", "KEY", "v"], ["info"], ["exists"], ["rm"], ["touch"]])
def test_invalid_key_exits_2(local_store: CliStore, command, key):
    args = [key if part == "KEY" else part for part in command]
    if len(args) == 1:
        args.append(key)
    proc = local_store(*args)
    assert_one_line_error(proc, 2, "key")
    assert not (local_store.tmp_path / "x").exists()


def test_invalid_key_on_second_backend_exits_2(cli_store: CliStore):
    assert_one_line_error(cli_store("get", "../x"), 2, "../x")
    assert_one_line_error(cli_store("put", "../x", "v"), 2, "../x")


def test_put_with_terminal_stdin_is_a_usage_error(local_store: CliStore):
    controller, terminal = pty.openpty()
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [anystore_bin(), *local_store.global_args, "put", "k"],
            stdin=terminal,
            capture_output=True,
            timeout=20,
            env={k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")},
        )
        elapsed = time.monotonic() - started
    finally:
        os.close(controller)
        os.close(terminal)
    assert_one_line_error(proc, 2, "terminal")
    assert elapsed < 15
    assert local_store("exists", "k").returncode == 1


def test_twenty_mib_binary_value_roundtrips_through_put_and_get(cli_store: CliStore, tmp_path):
    data = random.Random(20).randbytes(20 * 1024 * 1024) + b"\x00\xff\xfe"
    assert b"\x00" in data
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    cli_store.ok("put", "big.bin", input=data)
    out = cli_store.get("big.bin")
    assert len(out) == len(data)
    assert out == data
    info = json.loads(cli_store.ok("info", "big.bin"))
    assert info["size"] == len(data)


def test_get_streams_to_a_closed_pipe_quietly(local_store: CliStore):
    local_store.put("big", b"x" * (8 * 1024 * 1024))
    proc = local_store.shell("$ANYSTORE get big | head -c 10")
    assert proc.stdout == b"x" * 10
    assert proc.returncode == 0, stderr_text(proc)
    assert stderr_text(proc) == ""


def test_large_get_draws_progress_only_on_a_terminal_stderr(local_store: CliStore, tmp_path):
    import select

    data = random.Random(3).randbytes(20 * 1024 * 1024)
    local_store.put("big", data)
    piped = local_store("get", "big")
    assert piped.stdout == data
    assert piped.stderr == b""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    env.update({"TERM": "xterm", "COLUMNS": "120"})
    proc = subprocess.Popen(
        [anystore_bin(), *local_store.global_args, "get", "big"], stdout=subprocess.PIPE, stderr=terminal, env=env
    )
    os.close(terminal)
    out = proc.stdout.read()
    proc.wait(timeout=30)
    drawn = b""
    while select.select([controller], [], [], 0.2)[0]:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    assert proc.returncode == 0
    assert out == data
    assert b"get big" in drawn


def test_touch_with_ttl_expires(store_factory):
    from tests.test_cli_support import make_cli_store

    store = make_cli_store(store_factory, "redis")
    stamp = store.ok("touch", "beat", "--ttl", "1").strip()
    assert store.get("beat") == stamp
    time.sleep(2.2)
    assert store("exists", "beat").returncode == 1


# --- get of several keys, as cat -----------------------------------------------------------


def test_get_several_keys_prints_their_bytes_one_after_the_other(cli_store: CliStore):
    cli_store.put("a", BINARY)
    cli_store.put("b", b"second\n")
    proc = cli_store("get", "a", "b", "a")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, BINARY + b"second\n" + BINARY, b"")


def test_get_several_keys_reports_a_missing_one_goes_on_and_exits_1(local_store: CliStore):
    local_store.put("a", b"A")
    local_store.put("c", b"C")
    proc = local_store("get", "a", "gone", "c")
    assert proc.stdout == b"AC"
    assert_one_line_error(proc, 1, "`gone`", local_store.uri)


def test_get_several_keys_missing_ok_skips_a_missing_one(local_store: CliStore):
    local_store.put("a", b"A")
    proc = local_store("get", "gone", "a", "--missing-ok")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"A", b"")


def test_get_several_keys_to_output_concatenates_them(local_store: CliStore, tmp_path):
    local_store.put("a", b"A\x00")
    local_store.put("b", b"B")
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    proc = local_store("get", "a", "b", "-o", str(out))
    assert (proc.returncode, proc.stdout) == (0, b""), stderr_text(proc)
    assert out.read_bytes() == b"A\x00B"


def test_get_several_keys_json_mode_prints_a_line_each(local_store: CliStore):
    local_store.put("a", b'{"x": 1}')
    local_store.put("b", b"[1, 2]")
    assert local_store.ok("get", "a", "b", "--mode", "json") == b'{"x":1}\n[1,2]\n'


def test_keys_piped_to_xargs_get_prints_every_value(local_store: CliStore):
    for key in ("d/1.json", "d/2.json", "d/3.json"):
        local_store.put(key, key.encode() + b";")
    proc = local_store.shell("$ANYSTORE keys --glob 'd/*.json' --sort | xargs $ANYSTORE get")
    assert (proc.returncode, proc.stdout) == (0, b"d/1.json;d/2.json;d/3.json;"), stderr_text(proc)
