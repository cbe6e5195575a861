"""Nothing from the store runs as code unless asked: the CLI unpickles only under `--mode pickle`,
and `ANYSTORE_ALLOW_PICKLE=false` stops the library's auto mode from unpickling.

The stored value is a pickle whose `__reduce__` creates a marker folder when it is loaded: the
marker appearing is the proof that code from the store ran.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from anystore_cli.core import get_store
from anystore_cli.util.serialize import from_store
from tests.faults import record


class _Trap:
    """Unpickling this creates the folder `marker` (`os.makedirs(marker)`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (self.marker,))


def trap_bytes(marker: Path) -> bytes:
    """A pickle that creates `marker` when loaded."""
    return pickle.dumps(_Trap(marker))


@pytest.fixture
def trapped(tmp_path: Path) -> tuple[str, Path]:
    """A local store holding the trap at `trap`, a JSON value at `ok` and the marker path."""
    marker = tmp_path / "MARKER-code-ran"
    uri = str(tmp_path / "store")
    store = get_store(uri=uri, serialization_mode="raw")
    store.put("trap", trap_bytes(marker))
    store.put("ok", b'{"fine": true}')
    return uri, marker


READS = [
    ["get", "trap"],
    ["get", "trap", "--mode", "auto"],
    ["get", "trap", "--mode", "raw"],
    ["get", "trap", "--mode", "json"],
    ["stream", "trap"],
    ["stream", "trap", "--mode", "json"],
    ["checksum", "trap"],
    ["info", "trap"],
    ["dump"],
    ["dump", "--prefix", "tr"],
    ["keys", "--json"],
    ["keys", "-l"],
]


def test_cli_never_unpickles_without_mode_pickle(cli, trapped, tmp_path):
    uri, marker = trapped
    tried = 0
    for argv in READS:
        done = cli("-s", uri, *argv)
        tried += 1
        assert done.returncode in (0, 2), f"{argv}: {done.returncode} {done.stderr!r}"
        assert not marker.exists(), f"`anystore {' '.join(argv)}` ran code from the store"
    for env in ({"ANYSTORE_SERIALIZATION_MODE": "pickle"}, {"ANYSTORE_SERIALIZATION_MODE": "auto"}):
        for argv in (["get", "trap"], ["get", "trap", "--mode", "auto"], ["stream", "trap"], ["dump"]):
            cli("-s", uri, *argv, env=env)
            tried += 1
            assert not marker.exists(), f"`anystore {' '.join(argv)}` with {env} ran code from the store"
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {uri}\nserialization_mode: pickle\n")
    for argv in (["get", "trap"], ["get", "trap", "--mode", "auto"], ["stream", "trap"], ["dump"]):
        cli("--config", str(config), *argv)
        tried += 1
        assert not marker.exists(), f"`anystore --config ... {' '.join(argv)}` ran code from the store"
    done = cli("mirror", "-i", uri, "-o", str(tmp_path / "copy"))
    assert done.returncode == 0
    assert not marker.exists()
    done = cli("-s", uri, "pop", "trap", "--mode", "auto")
    tried += 2
    assert not marker.exists(), "`anystore pop --mode auto` ran code from the store"
    record("pickle-cli-no-unpickle", tried=tried, ran_code=0)


def test_cli_get_mode_auto_gives_the_pickle_bytes(cli, trapped):
    uri, marker = trapped
    done = cli("-s", uri, "get", "trap", "--mode", "auto")
    assert done.returncode == 0
    assert done.stdout.rstrip(b"\n") == trap_bytes(marker)
    assert not marker.exists()


def test_cli_mode_pickle_is_the_only_way_in(cli, trapped):
    """The positive control: the trap does work when pickle is asked for by name."""
    uri, marker = trapped
    cli("-s", uri, "get", "trap", "--mode", "pickle")
    assert marker.exists()


def test_library_auto_mode_unpickles_only_when_allowed(monkeypatch, tmp_path):
    marker = tmp_path / "MARKER-library"
    data = trap_bytes(marker)
    monkeypatch.setenv("ANYSTORE_ALLOW_PICKLE", "false")
    assert from_store(data, "auto") == data
    store = get_store(uri=str(tmp_path / "store"))
    store.put("trap", data, serialization_mode="raw")
    assert store.get("trap") == data
    assert store.get("trap", serialization_mode="auto") == data
    list(store.stream("trap"))
    assert list(store.iterate_values()) == [data]
    assert dict(store.get_many(["trap"])) == {"trap": data}
    assert not marker.exists()
    monkeypatch.setenv("ANYSTORE_ALLOW_PICKLE", "0")
    assert from_store(data, "auto") == data
    assert not marker.exists()
    monkeypatch.setenv("ANYSTORE_ALLOW_PICKLE", "true")
    from_store(data, "auto")
    assert marker.exists(), "with pickle allowed, auto mode unpickles (the original library's behaviour)"


def test_library_raw_and_json_modes_never_unpickle(tmp_path):
    marker = tmp_path / "MARKER-modes"
    data = trap_bytes(marker)
    assert from_store(data, "raw") == data
    with pytest.raises(ValueError):
        from_store(data, "json")
    assert not marker.exists()
