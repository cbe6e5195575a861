"""Leftovers of the field trials: stale temporary files of killed writes are swept, `--shard`
takes ASCII I/N only, `stream` keeps a value's last line as it is, `rm` filters as `keys` does,
sizes read alike in `info` and `keys -l`, and a store under /proc fails as a store (3)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

DAY = 24 * 3600


def _dead_pid() -> int:
    """A pid no process can have on this host."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def _temp(folder: Path, name: str, pid: int, age: float) -> Path:
    """A temporary file as a write of `name` by process `pid` leaves it, last touched `age` seconds ago."""
    path = folder / f".~anystore-{name}.{pid}-abc123-{int(age)}"
    path.write_bytes(b"partial value")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_a_write_sweeps_stale_temp_files_of_killed_writes_from_its_folder(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "sub").mkdir(parents=True)
    (store / "other").mkdir()
    stale = _temp(store / "sub", "big.bin", _dead_pid(), 2 * DAY)
    young = _temp(store / "sub", "big.bin", _dead_pid(), 60)  # perhaps a write in progress elsewhere
    alive = _temp(store / "sub", "x", os.getpid(), 2 * DAY)  # its writer still runs
    lookalike = store / "sub" / ".~anystore-notes"  # not a name this tool makes
    lookalike.write_bytes(b"mine")
    os.utime(lookalike, (time.time() - 2 * DAY,) * 2)
    elsewhere = _temp(store / "other", "y", _dead_pid(), 2 * DAY)  # not the folder written to

    done = run_cli("-s", str(store), "put", "sub/new", "v")
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert young.exists() and alive.exists() and lookalike.exists()
    assert elsewhere.exists()
    assert (store / "sub" / "new").read_bytes() == b"v"

    done = run_cli("-s", str(store), "load", input=b'{"key": "other/z", "value": "w"}\n')
    assert done.returncode == 0, done.stderr
    assert not elsewhere.exists()


def test_a_stream_write_sweeps_its_folder_too(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    stale = _temp(store, "k", _dead_pid(), 2 * DAY)
    done = run_cli("-s", str(store), "put", "k", input=b"streamed")
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert (store / "k").read_bytes() == b"streamed"


@pytest.mark.parametrize("shard", ["", "３/４", "١/٢", "1_0/20", " 0/2", "+0/2"])
@pytest.mark.parametrize("command", ["keys", "dump", "rm"])
def test_shard_takes_ascii_digits_only(tmp_path: Path, command: str, shard: str) -> None:
    store = tmp_path / "store"
    assert run_cli("-s", str(store), "put", "k", "v").returncode == 0
    extra = ["--glob", "**"] if command == "rm" else []
    done = run_cli("-s", str(store), command, *extra, "--shard", shard)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"anystore: error: --shard"), done.stderr
    assert (store / "k").read_bytes() == b"v"


# ---- stream keeps a value's bytes ------------------------------------------------------------------


def test_stream_writes_a_binary_value_as_stored(tmp_path: Path) -> None:
    store = tmp_path / "store"
    png = b"\x89PNG\r\n\x1a\n\x00\xff no newline at the end"
    assert run_cli("-s", str(store), "put", "img.png", input=png).returncode == 0
    done = run_cli("-s", str(store), "stream", "img.png")
    assert done.returncode == 0, done.stderr
    assert done.stdout == png


def test_stream_keeps_the_lines_of_several_values_apart(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("-s", str(store), "put", "a", input=b"1\n2").returncode == 0
    assert run_cli("-s", str(store), "put", "b", input=b"3\n").returncode == 0
    done = run_cli("-s", str(store), "stream", "a", "b", "a")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"1\n2\n3\n1\n2"  # the last line of the last value as stored


# ---- rm filters as keys does --------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_rm_takes_exclude_prefix_like_keys(tmp_path: Path, dry_run: bool) -> None:
    store = tmp_path / "store"
    for key in ("logs/a", "logs/b", "logs/keep/c", "other/d"):
        assert run_cli("-s", str(store), "put", key, "v").returncode == 0
    filters = ["--prefix", "logs/", "--exclude-prefix", "logs/keep"]
    listed = run_cli("-s", str(store), "keys", "--sort", *filters).stdout
    assert listed == b"logs/a\nlogs/b\n"
    done = run_cli("-s", str(store), "rm", *filters, *(["--dry-run"] if dry_run else []))
    assert done.returncode == 0, done.stderr
    left = run_cli("-s", str(store), "keys", "--sort").stdout
    if dry_run:
        assert sorted(done.stdout.splitlines()) == listed.splitlines()
        assert left == b"logs/a\nlogs/b\nlogs/keep/c\nother/d\n"
    else:
        assert left == b"logs/keep/c\nother/d\n"


# ---- sizes read alike ------------------------------------------------------------------------------


def test_info_and_keys_long_show_a_size_the_same_way_on_a_terminal(tmp_path: Path) -> None:
    from tests.test_terminal import SGR, run_on_terminal

    store = tmp_path / "store"
    assert run_cli("-s", str(store), "put", "big", input=b"x" * 123456).returncode == 0
    screens = []
    for command in (["keys", "-l"], ["info", "big"]):
        run = run_on_terminal("-s", str(store), *command, cwd=tmp_path, columns=200)
        assert run.returncode == 0, run.screen
        screens.append(SGR.sub(b"", run.screen.encode()).decode())
    assert "120.6 KiB" in screens[0]
    assert "120.6 KiB" in screens[1] and "123456" not in screens[1]


# ---- a store that cannot be made is a store failure -----------------------------------------------


@pytest.mark.parametrize(
    "command, input",
    [(["put", "a", "b"], None), (["touch", "a"], None), (["load"], b'{"key": "a", "value": "b"}\n')],
    ids=["put", "touch", "load"],
)
def test_a_write_to_a_store_that_cannot_be_made_exits_3(command: list[str], input: bytes | None) -> None:
    done = run_cli("-s", "/proc/anystore-nothing-here", *command, input=input)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith(b"anystore: error: Store `/proc/anystore-nothing-here`"), done.stderr
    assert b"does not exist" not in done.stderr
