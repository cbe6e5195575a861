"""`keys`, `rm`, `exists` through the installed `anystore`."""

from __future__ import annotations

# ruff: noqa: F811  # fixtures from tests.test_cli_support reappear as arguments
import json

import pytest

from tests.test_cli_support import (  # noqa: F401 - fixtures
    CliStore,
    assert_one_line_error,
    cli_store,
    local_store,
    stderr_text,
)

ODD_KEYS = [
    "with space.txt",
    "ünïcödé/ключ.json",
    "100%_done",
    "star*q?mark",
    "bracket[1].txt",
    "a/b/c d/e",
]


def fill(store: CliStore, keys: list[str]) -> None:
    """Store `value of KEY` at each key, in one `load`."""
    lines = b"".join(json.dumps({"key": k, "value": f"value of {k}"}).encode() + b"\n" for k in keys)
    store.ok("load", input=lines)


def listed(out: bytes, end: bytes = b"\n") -> list[str]:
    return [part.decode() for part in out.split(end) if part]


def test_keys_lists_one_key_a_line(cli_store: CliStore):
    fill(cli_store, ["a", "b/c", "b/d/e"])
    assert sorted(listed(cli_store.ok("keys"))) == ["a", "b/c", "b/d/e"]


def test_keys_on_empty_store_prints_nothing(cli_store: CliStore):
    proc = cli_store("keys")
    assert (proc.returncode, proc.stdout) == (0, b"")


def test_keys_prefix_exclude_prefix_glob(cli_store: CliStore):
    fill(cli_store, ["docs/a.pdf", "docs/b.txt", "docs/old/c.pdf", "img/d.png"])
    assert sorted(listed(cli_store.ok("keys", "--prefix", "docs/"))) == ["docs/a.pdf", "docs/b.txt", "docs/old/c.pdf"]
    assert sorted(listed(cli_store.ok("keys", "--prefix", "docs/", "--exclude-prefix", "docs/old"))) == [
        "docs/a.pdf",
        "docs/b.txt",
    ]
    assert listed(cli_store.ok("keys", "--glob", "docs/*.pdf")) == ["docs/a.pdf"]
    assert sorted(listed(cli_store.ok("keys", "--glob", "**/*.pdf"))) == ["docs/a.pdf", "docs/old/c.pdf"]


def test_keys_long_json_and_dump_read_a_prefix_as_keys_does(cli_store: CliStore):
    """`./docs//` is the prefix `docs/` for every listing, with metadata or without."""
    fill(cli_store, ["docs/a.pdf", "docs/old/c.pdf", "img/d.png"])
    wanted = sorted(listed(cli_store.ok("keys", "--prefix", "docs/")))
    assert sorted(listed(cli_store.ok("keys", "--prefix", "./docs//"))) == wanted
    records = cli_store.ok("keys", "--json", "--prefix", "./docs//", "--exclude-prefix", "./docs//old").splitlines()
    assert [json.loads(line)["key"] for line in records] == ["docs/a.pdf"]
    dumped = cli_store.ok("dump", "--prefix", "./docs//").splitlines()
    assert sorted(json.loads(line)["key"] for line in dumped) == wanted


def test_keys_sort_limit_count(cli_store: CliStore):
    names = [f"k{i:03d}" for i in range(30)]
    fill(cli_store, list(reversed(names)))
    assert listed(cli_store.ok("keys", "--sort")) == names
    assert listed(cli_store.ok("keys", "--sort", "--limit", "5")) == names[:5]
    assert len(listed(cli_store.ok("keys", "--limit", "7"))) == 7
    assert cli_store.ok("keys", "--count") == b"30\n"
    assert cli_store.ok("keys", "--count", "--prefix", "k00") == b"10\n"


def test_keys_null_terminated(cli_store: CliStore):
    fill(cli_store, ["a b", "c"])
    out = cli_store.ok("keys", "-0", "--sort")
    assert out == b"a b\x00c\x00"


def test_keys_json_has_info_fields(cli_store: CliStore):
    cli_store.put("dir/x.bin", b"12345")
    lines = cli_store.ok("keys", "--json").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert list(record) == ["key", "name", "store", "uri", "size", "created_at", "updated_at"]
    assert record["key"] == "dir/x.bin"
    assert record["name"] == "x.bin"
    assert record["size"] == 5
    assert record["updated_at"]
    # `info` prints the record `keys --json` prints (one builder makes both); the times may
    # come from another call to the backend (a listing, a HEAD)
    info = json.loads(cli_store.ok("info", "dir/x.bin", "--json"))
    assert list(info) == list(record)
    assert {k: v for k, v in info.items() if not k.endswith("_at")} == {
        k: v for k, v in record.items() if not k.endswith("_at")
    }


def test_keys_info_of_the_0_3_0_cli_is_json(local_store: CliStore):
    """`keys --info` (anystore 0.3.0's spelling) keeps working: one info object a line."""
    local_store.put("dir/x.bin", b"12345")
    assert local_store.ok("keys", "--info") == local_store.ok("keys", "--json")
    assert json.loads(local_store.ok("keys", "--info", "--prefix", "dir"))["size"] == 5
    assert local_store.ok("keys", "--no-info") == b"dir/x.bin\n"


def test_keys_long_piped_is_plain_tab_separated(cli_store: CliStore):
    cli_store.put("k", b"abc")
    out = cli_store.ok("keys", "-l")
    assert b"\x1b" not in out
    size, updated, key = out.decode().rstrip("\n").split("\t")
    assert (size, key) == ("3", "k")
    assert updated


def test_keys_output_file(cli_store: CliStore, tmp_path):
    fill(cli_store, ["a", "b"])
    target = tmp_path / "keys.txt"
    assert cli_store.ok("keys", "--sort", "-o", str(target)) == b""
    assert target.read_text() == "a\nb\n"


def test_odd_keys_roundtrip_through_xargs_newline(cli_store: CliStore):
    fill(cli_store, ODD_KEYS)
    assert sorted(listed(cli_store.ok("keys"))) == sorted(ODD_KEYS)
    proc = cli_store.shell("$ANYSTORE keys --sort | xargs -d '\\n' -n1 $ANYSTORE get | tr -d '\\000'; echo")
    assert proc.returncode == 0, stderr_text(proc)
    assert proc.stdout.decode() == "".join(f"value of {k}" for k in sorted(ODD_KEYS)) + "\n"


def test_odd_keys_roundtrip_through_xargs_null(cli_store: CliStore):
    keys = [*ODD_KEYS, "new\nline"]
    fill(cli_store, keys)
    proc = cli_store.shell("$ANYSTORE keys -0 --sort | xargs -0 -n1 $ANYSTORE checksum")
    assert proc.returncode == 0, stderr_text(proc)
    assert len(proc.stdout.splitlines()) == len(keys)


def test_prefix_and_glob_match_special_characters_literally(cli_store: CliStore):
    fill(cli_store, ["100%_done", "100xydone", "a_b", "axb", "q?1", "qz1", "s[1]", "s1"])
    assert listed(cli_store.ok("keys", "--prefix", "100%_")) == ["100%_done"]
    assert listed(cli_store.ok("keys", "--prefix", "a_")) == ["a_b"]
    assert listed(cli_store.ok("keys", "--glob", "100%*")) == ["100%_done"]
    assert listed(cli_store.ok("keys", "--glob", "*_b")) == ["a_b"]
    assert listed(cli_store.ok("keys", "--prefix", "q?")) == ["q?1"]
    assert listed(cli_store.ok("keys", "--prefix", "s[")) == ["s[1]"]


def test_keys_into_closed_stdout_ends_quietly(cli_store: CliStore):
    fill(cli_store, [f"many/{i:05d}" for i in range(5000)])
    proc = cli_store.shell("$ANYSTORE keys | head -1")
    err = stderr_text(proc)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception" not in err
    assert err == ""
    assert proc.returncode == 0  # bash -o pipefail: anystore's own status is 0 too
    assert proc.stdout.startswith(b"many/") and proc.stdout.count(b"\n") == 1


def test_keys_json_into_closed_stdout_ends_quietly(local_store: CliStore):
    fill(local_store, [f"k{i}" for i in range(3000)])
    proc = local_store.shell("$ANYSTORE keys --json | head -c 5")
    assert stderr_text(proc) == ""
    assert proc.returncode == 0


def test_exists_exit_status_and_no_output(cli_store: CliStore):
    cli_store.put("here", b"x")
    yes = cli_store("exists", "here")
    no = cli_store("exists", "not-here")
    assert (yes.returncode, yes.stdout, yes.stderr) == (0, b"", b"")
    assert (no.returncode, no.stdout, no.stderr) == (1, b"", b"")


def test_rm_deletes_keys(cli_store: CliStore):
    fill(cli_store, ["a", "b", "c"])
    proc = cli_store("rm", "a", "b")
    assert (proc.returncode, proc.stdout) == (0, b"")
    assert listed(cli_store.ok("keys")) == ["c"]


def test_rm_missing_key_exits_1_unless_force(cli_store: CliStore):
    fill(cli_store, ["a"])
    proc = cli_store("rm", "a", "missing")
    assert_one_line_error(proc, 1, "missing")
    assert cli_store("exists", "a").returncode == 1  # the existing key went anyway
    forced = cli_store("rm", "-f", "missing")
    assert (forced.returncode, forced.stdout, forced.stderr) == (0, b"", b"")


def test_rm_prefix_and_glob_count_on_stderr(cli_store: CliStore):
    fill(cli_store, ["tmp/a", "tmp/b", "tmp/c.log", "keep/d"])
    proc = cli_store("rm", "--glob", "tmp/*.log")
    assert proc.returncode == 0
    assert "1 key" in stderr_text(proc)
    proc = cli_store("rm", "--prefix", "tmp/")
    assert proc.returncode == 0
    assert "2 keys" in stderr_text(proc)
    assert proc.stdout == b""
    assert listed(cli_store.ok("keys")) == ["keep/d"]


def test_rm_dry_run_lists_and_keeps(cli_store: CliStore):
    fill(cli_store, ["tmp/a", "tmp/b", "keep"])
    proc = cli_store("rm", "--prefix", "tmp/", "--dry-run")
    assert proc.returncode == 0
    assert sorted(listed(proc.stdout)) == ["tmp/a", "tmp/b"]
    assert "2" in stderr_text(proc)
    assert sorted(listed(cli_store.ok("keys"))) == ["keep", "tmp/a", "tmp/b"]
    assert listed(cli_store.ok("rm", "keep", "--dry-run")) == ["keep"]
    assert cli_store("exists", "keep").returncode == 0


def test_rm_without_keys_or_pattern_exits_2(cli_store: CliStore):
    assert_one_line_error(cli_store("rm"), 2)


def test_rm_bulk_with_no_match_is_not_an_error(cli_store: CliStore):
    proc = cli_store("rm", "--prefix", "nothing/")
    assert proc.returncode == 0
    assert "0 keys" in stderr_text(proc)


def test_quiet_drops_the_summary(cli_store: CliStore):
    fill(cli_store, ["tmp/a"])
    proc = _quiet(cli_store, "rm", "--prefix", "tmp/")
    assert (proc.returncode, proc.stderr) == (0, b"")


def _quiet(store: CliStore, *args: str):
    from tests.conftest import run_cli

    return run_cli("-q", *store.global_args, *args, cwd=store.tmp_path)


@pytest.mark.parametrize("args", [["keys", "--limit", "x"], ["keys", "--bogus"], ["bogus-command"]])
def test_bad_option_or_command_exits_2(local_store: CliStore, args):
    assert_one_line_error(local_store(*args), 2)


def test_verbose_names_each_deleted_key(cli_store: CliStore):
    from tests.conftest import run_cli

    fill(cli_store, ["v/a", "v/b"])
    proc = run_cli("-v", *cli_store.global_args, "rm", "--prefix", "v/", cwd=cli_store.tmp_path)
    assert proc.returncode == 0
    err = stderr_text(proc)
    assert "deleted v/a" in err and "deleted v/b" in err and "2 keys" in err
