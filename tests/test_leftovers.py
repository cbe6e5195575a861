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
