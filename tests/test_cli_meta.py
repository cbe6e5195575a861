"""`info`, `checksum`, `settings` through the installed `anystore`."""

from __future__ import annotations

# ruff: noqa: F811  # fixtures from tests.test_cli_support reappear as arguments
import hashlib
import json
import os
import pty
import select
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


def test_info_prints_json_when_piped(cli_store: CliStore):
    cli_store.put("dir/file.txt", b"hello")
    out = cli_store.ok("info", "dir/file.txt")
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    record = json.loads(out)
    assert list(record) == ["key", "name", "store", "uri", "size", "created_at", "updated_at"]
    assert (record["key"], record["name"], record["size"]) == ("dir/file.txt", "file.txt", 5)
    assert datetime.fromisoformat(record["updated_at"])
    assert json.loads(cli_store.ok("info", "dir/file.txt", "--json")) == record


def test_info_uri_is_absolute_on_local_store(local_store: CliStore):
    local_store.put("a b.txt", b"x")
    record = json.loads(local_store.ok("info", "a b.txt"))
    assert record["uri"].startswith("file://")
    assert record["uri"].endswith("/a b.txt")
    assert record["store"].startswith("file://")


def run_in_terminal(args: list[str], env: dict[str, str] | None = None, timeout: float = 20) -> bytes:
    """Run the installed `anystore` with stdout (and stderr) on a pseudo-terminal; return what it drew."""
    controller, terminal = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update({"COLUMNS": "200", "TERM": "xterm-256color"})
    full_env.update(env or {})
    proc = subprocess.Popen(
        [anystore_bin(), *args], stdout=terminal, stderr=terminal, stdin=subprocess.DEVNULL, env=full_env
    )
    os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=5)
    finally:
        os.close(controller)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks)


def test_info_on_a_terminal_is_a_table(local_store: CliStore):
    local_store.put("report.pdf", b"12345")
    drawn = run_in_terminal([*local_store.global_args, "info", "report.pdf"]).decode()
    assert "report.pdf" in drawn
    assert "size" in drawn and "5" in drawn
    assert not drawn.lstrip().startswith("{")
    as_json = run_in_terminal([*local_store.global_args, "info", "report.pdf", "--json"]).decode()
    assert json.loads(as_json)["size"] == 5


def test_keys_long_on_a_terminal_is_a_table_without_color_under_no_color(local_store: CliStore):
    local_store.put("one", b"1")
    local_store.put("two", b"22")
    drawn = run_in_terminal([*local_store.global_args, "keys", "-l"], env={"NO_COLOR": "1"}).decode()
    assert "one" in drawn and "two" in drawn and "size" in drawn
    assert "\x1b[3" not in drawn  # no colour codes


def test_checksum_one_key_prints_digest_and_key_or_bare_digest(cli_store: CliStore):
    data = b"some \x00 bytes"
    cli_store.put("k", data)
    assert cli_store.ok("checksum", "k") == hashlib.sha1(data).hexdigest().encode() + b"  k\n"
    assert cli_store.ok("checksum", "k", "-a", "sha256", "--bare") == hashlib.sha256(data).hexdigest().encode() + b"\n"
    assert cli_store.ok("checksum", "k", "-a", "md5") == hashlib.md5(data).hexdigest().encode() + b"  k\n"


def test_checksum_several_keys_prints_like_sha1sum(cli_store: CliStore, tmp_path):
    values = {"a.txt": b"alpha\n", "b c.txt": b"beta"}
    for key, value in values.items():
        cli_store.put(key, value)
        (tmp_path / key).write_bytes(value)
    out = cli_store.ok("checksum", "a.txt", "b c.txt")
    native = subprocess.run(["sha1sum", "a.txt", "b c.txt"], cwd=tmp_path, capture_output=True, check=True).stdout
    assert out == native


def test_checksum_check_matches_and_mismatches(cli_store: CliStore):
    cli_store.put("k", b"abc")
    digest = hashlib.sha1(b"abc").hexdigest()
    ok = cli_store("checksum", "k", "--check", digest)
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, b"", b"")
    assert cli_store("checksum", "k", "--check", digest.upper()).returncode == 0
    bad = cli_store("checksum", "k", "--check", "0" * 40)
    assert_one_line_error(bad, 1, "k", digest)


def test_checksum_unknown_algorithm_exits_2(cli_store: CliStore):
    cli_store.put("k", b"abc")
    assert_one_line_error(cli_store("checksum", "k", "-a", "nope256"), 2, "nope256")


def test_settings_is_json_with_secrets_masked(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("-s", "redis://:hunter2@127.0.0.1:6379/0", "-b", "redis_prefix=app", "settings")
    assert proc.returncode == 0, stderr_text(proc)
    assert b"hunter2" not in proc.stdout
    data = json.loads(proc.stdout)
    assert data["store"]["uri"] == "redis://:***@127.0.0.1:6379/0"
    assert data["store"]["backend_config"]["redis_prefix"] == "app"
    # a declared secret option (the served store's token), from -b and from the environment
    for flags, env in ((["-b", "token=tok-hunter2"], {}), ([], {"ANYSTORE_BACKEND_CONFIG__TOKEN": "tok-hunter2"})):
        proc = run_cli("-s", "anystore+http://127.0.0.1:1", *flags, "settings", env=env)
        assert proc.returncode == 0, stderr_text(proc)
        assert b"hunter2" not in proc.stdout
        assert json.loads(proc.stdout)["store"]["backend_config"]["token"] == "***"
    # an option the backend does not know is refused, named, its value never shown
    proc = run_cli("-s", "redis://127.0.0.1:6379/0", "-b", "password=hunter2", "settings")
    assert proc.returncode == 2 and b"`password`" in proc.stderr and b"hunter2" not in proc.stderr


def test_settings_shows_store_from_environment(tmp_path):
    from tests.conftest import run_cli

    proc = run_cli("settings", env={"ANYSTORE_URI": str(tmp_path / "s"), "ANYSTORE_READONLY": "1"})
    data = json.loads(proc.stdout)
    assert data["store"]["uri"].endswith("/s")
    assert data["store"]["readonly"] is True


@pytest.mark.parametrize("command", ["info", "checksum"])
def test_reading_metadata_of_invalid_key_exits_2(cli_store: CliStore, command):
    assert_one_line_error(cli_store(command, "../x"), 2, "../x")


# --- checksum as sha256sum: many keys, escapes, -c ----------------------------------------


def _store_folder(store: CliStore):
    return store.tmp_path / store.uri.rsplit("/", 1)[-1]


def test_checksum_goes_on_past_a_missing_key_and_exits_1(cli_store: CliStore):
    cli_store.put("a", b"A")
    cli_store.put("c", b"C")
    proc = cli_store("checksum", "a", "gone", "c")
    sha = lambda data: hashlib.sha1(data).hexdigest()  # noqa: E731
    assert proc.stdout.decode() == f"{sha(b'A')}  a\n{sha(b'C')}  c\n"
    assert_one_line_error(proc, 1, "`gone`")


def test_checksum_escapes_newline_and_backslash_in_keys_as_sha1sum(local_store: CliStore):
    keys = ["plain", "new\nline", "back\\slash"]
    for key in keys:
        local_store.ok("put", "--", key, key.upper())
    out = local_store.ok("checksum", *keys)
    native = subprocess.run(["sha1sum", *keys], cwd=_store_folder(local_store), capture_output=True, check=True)
    assert out == native.stdout
    assert out.count(b"\n") == 3 and out.splitlines()[1].startswith(b"\\")


def test_checksum_check_file_prints_ok_and_failed_and_exits_1(local_store: CliStore, tmp_path):
    keys = ["a", "sub/b c", "new\nline", "back\\slash"]
    for key in keys:
        local_store.ok("put", "--", key, key)
    sums = tmp_path / "SUMS"
    sums.write_bytes(local_store.ok("checksum", *keys))
    native = subprocess.run(["sha1sum", "-c", str(sums)], cwd=_store_folder(local_store), capture_output=True)
    proc = local_store("checksum", "-c", str(sums))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, native.stdout, b"")
    assert proc.stdout.splitlines()[0] == b"a: OK"
    local_store.ok("put", "sub/b c", "changed")
    proc = local_store("checksum", "-c", str(sums))
    assert proc.stdout.splitlines()[:2] == [b"a: OK", b"sub/b c: FAILED"]
    assert_one_line_error(proc, 1, "1 of 4", "did NOT match")
    quiet = local_store("-q", "checksum", "-c", str(sums))
    assert (quiet.returncode, quiet.stdout) == (1, b"sub/b c: FAILED\n")


def test_checksum_check_file_reports_a_missing_key_as_sha1sum(local_store: CliStore):
    local_store.put("a", b"A")
    listing = f"{hashlib.sha1(b'A').hexdigest()}  a\n{hashlib.sha1(b'B').hexdigest()}  gone\n"
    proc = local_store("checksum", "-c", "-", input=listing.encode())
    assert proc.stdout == b"a: OK\ngone: FAILED open or read\n"
    assert_one_line_error(proc, 1, "`gone`", local_store.uri)


def test_checksum_check_file_refuses_a_line_that_is_no_checksum_line(local_store: CliStore):
    local_store.put("a", b"A")
    proc = local_store("checksum", "-c", "-", input=b"not a checksum line\n")
    assert_one_line_error(proc, 2, "line 1")
    sha256 = hashlib.sha256(b"A").hexdigest()
    proc = local_store("checksum", "-c", "-", input=f"{sha256}  a\n".encode())
    assert_one_line_error(proc, 2, "line 1", "sha1")
    assert local_store.ok("checksum", "-a", "sha256", "-c", "-", input=f"{sha256}  a\n".encode()) == b"a: OK\n"
