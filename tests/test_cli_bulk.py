"""Bulk listings and transfers at scale: `keys -l`/`--json` at listing speed and streamed, and
`dump`/`load` of large values in flat memory, through the installed `anystore`."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import anystore_bin
from tests.test_cli_support import CliStore, make_cli_store

LISTING_KEYS = 20_000


def _fill(cli: CliStore, count: int) -> None:
    lines = "".join(json.dumps({"key": f"d{i // 1000:03d}/k{i:06d}", "value": "v" * 40}) + "\n" for i in range(count))
    proc = cli("load", input=lines.encode(), timeout=300)
    assert proc.returncode == 0, proc.stderr


def _best_time(cli: CliStore, *args: str, runs: int = 3) -> tuple[float, bytes]:
    best, out = float("inf"), b""
    for _ in range(runs):
        started = time.perf_counter()
        out = cli.ok(*args)
        best = min(best, time.perf_counter() - started)
    return best, out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_keys_long_and_json_take_at_most_3x_plain_keys(backend, store_factory):
    """The listing carries the metadata: no lookup per key (which made `-l` 90x slower)."""
    cli = make_cli_store(store_factory, backend)
    _fill(cli, LISTING_KEYS)
    plain, out = _best_time(cli, "keys")
    assert out.count(b"\n") == LISTING_KEYS
    for option in ("-l", "--json"):
        seconds, out = _best_time(cli, "keys", option)
        lines = out.splitlines()
        assert len(lines) == LISTING_KEYS
        if option == "--json":
            record = json.loads(lines[0])
            assert record["size"] == 40 and record["updated_at"] and record["key"].startswith("d0")
        else:
            assert lines[0].split(b"\t")[0] == b"40"
        assert seconds <= 3 * plain + 0.3, f"`keys {option}` took {seconds:.2f}s, `keys` {plain:.2f}s"


def test_keys_long_table_shows_rows_before_the_listing_ends(tmp_path: Path) -> None:
    """On a terminal the table comes in batches as the listing goes, not all at the end."""
    import pty

    folder = tmp_path / "store"
    for i in range(6000):
        path = folder / f"d{i // 500:02d}" / f"key-{i:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (i % 50))
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_") and k not in ("NO_COLOR", "TERM")}
    env.update({"TERM": "xterm-256color", "COLUMNS": "100"})
    started = time.monotonic()
    proc = subprocess.Popen([anystore_bin(), "-s", str(folder), "keys", "-l"], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    arrivals: list[tuple[float, bytes]] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            arrivals.append((time.monotonic(), data))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.wait(timeout=120) == 0
    ended = time.monotonic()
    reader.join(10)
    os.close(master)
    screen = b"".join(data for _, data in arrivals).decode("utf-8", "replace")
    assert screen.count("key-0") == 6000 and screen.count("size") == 1  # one header, every row
    first = arrivals[0][0]
    assert ended - first > 0.3 * (ended - started), (
        f"the first rows came {first - started:.2f}s after the start, the command ended at {ended - started:.2f}s"
    )
