"""`keys -l` and `keys --json` on a local folder: the lines formatted straight from each file's
`stat` say what `os.stat` says, in the order the plain listing gives, byte for byte what the
library's records (`iterate_infos` and `RecordMaker`) make."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from anystore_cli.backends.local import LocalStore, stat_created
from anystore_cli.cli.commands.common import readable_text
from anystore_cli.cli.output.records import RecordMaker
from tests.conftest import run_cli

NAMES = [
    "a.txt",
    "sp ace/x y.txt",
    "üni/cødé €.json",
    "nl\nkey",
    "tab\tkey",
    'q"uo\\te',
    "at@host",
    "eq=val",
    "pct%20_*?[x].txt",
    "ctl\x01\x1f",
    'x"},{"key":"evil',
    'y","z',
    "d/e/f/g.json",
    "d/e/h.json",
    "d/i.pdf",
    ".dot",
    "docs/a.pdf",
    "docs/sub/b.pdf",
    "docsx/c.pdf",
]

TIMES = {  # file name: (atime, mtime) in ns; the inode changes now, after some of them
    "a.txt": (1_600_000_000_999_999_500, 1_600_000_000_999_999_500),  # rounds up to a whole second
    "d/i.pdf": (1_700_000_000_000_000_000, 1_700_000_000_000_000_000),  # no microseconds
    "docs/a.pdf": (-34_560_000_250_000_000, -34_560_000_250_000_000),  # before 1970
    "docsx/c.pdf": (4_102_444_800_123_456_789, 4_102_444_800_123_456_789),  # after the inode change
}


def make_folder(root: Path) -> Path:
    """A store folder holding NAMES (value: `i` bytes), a name that is not UTF-8, a temporary
    file, a symlink to a file and one to nowhere, with the modification times of TIMES."""
    for index, name in enumerate(NAMES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"v" * index)
    (root / ".~anystore-tmp").write_bytes(b"t")  # never listed
    os.symlink("a.txt", root / "link")
    os.symlink("nowhere", root / "dangling")
    for name, times in TIMES.items():
        os.utime(root / name, ns=times)
    return root


def cli(root: Path, *args: str) -> bytes:
    proc = run_cli("-s", str(root), "keys", *args)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "store")


def test_long_and_json_say_what_os_stat_says(folder: Path):
    listed = cli(folder, "-0").split(b"\0")[:-1]
    assert sorted(key.decode() for key in listed) == sorted([*NAMES, "link"])
    rows = [line.decode().split("\t", 2) for line in cli(folder, "-l", "-0").split(b"\0")[:-1]]
    assert [key.encode() for _, _, key in rows] == listed  # the plain listing's order
    for size, updated, key in rows:
        info = os.stat(folder / key)
        assert (int(size), updated) == (info.st_size, iso(info.st_mtime)), key
    records = [json.loads(line) for line in cli(folder, "--json").splitlines()]
    assert [record["key"].encode() for record in records] == listed
    for record in records:
        key = record["key"]
        info = os.stat(folder / key)
        assert record == {
            "key": key,
            "name": key.rsplit("/", 1)[-1],
            "store": f"file://{folder}",
            "uri": f"file://{folder}/{key}",
            "size": info.st_size,
            "created_at": iso(min(info.st_ctime, info.st_mtime)),
            "updated_at": iso(info.st_mtime),
        }
    by_key = {record["key"]: record for record in records}
    assert by_key["a.txt"]["updated_at"] == "2020-09-13T12:26:41+00:00"
    assert by_key["d/i.pdf"]["updated_at"] == "2023-11-14T22:13:20+00:00"
    assert by_key["docs/a.pdf"]["updated_at"] == "1968-11-26T23:59:59.750000+00:00"
    assert by_key["docsx/c.pdf"]["created_at"] < by_key["docsx/c.pdf"]["updated_at"]
    assert by_key["link"]["size"] == by_key["a.txt"]["size"] == 0


def expected(folder: Path, json_lines: bool, null: bool = False, **options: object) -> bytes:
    """What `keys --json` / `keys -l` printed before their local fast path: the library's
    `Stats` through `RecordMaker`, written by orjson, or as `size TAB updated TAB key`."""
    store = LocalStore(uri=str(folder))
    infos = list(store.iterate_infos(**options))  # type: ignore[arg-type]
    maker = RecordMaker(store, iso=not json_lines)
    if json_lines:
        return b"".join(orjson.dumps(maker(stats)) + b"\n" for stats in infos)
    end = "\0" if null else "\n"
    lines = []
    for stats in infos:
        record = maker(stats)
        lines.append(f"{record['size']}\t{record['updated_at'] or ''}\t{record['key']}{end}")
    return "".join(lines).encode("utf-8", "surrogateescape")


FILTERS = [
    {},
    {"glob": "**/*.json"},
    {"prefix": "d"},
    {"prefix": "docs", "glob": "*.pdf"},
    {"exclude_prefix": "d"},
    {"prefix": "./docs//"},
    {"prefix": "nope/"},
    {"filters": ["+ *.pdf", "- **"]},
    {"shard": "1/3"},
]


def cli_options(options: dict[str, object]) -> list[str]:
    args: list[str] = []
    for name, value in options.items():
        if name == "filters":
            args += ["--include", "*.pdf", "--exclude", "**"]
        else:
            args += [f"--{name.replace('_', '-')}", str(value)]
    return args


@pytest.mark.parametrize("options", FILTERS, ids=lambda options: ",".join(options) or "all")
def test_long_and_json_bytes_are_the_library_records(folder: Path, options: dict[str, object]):
    args = cli_options(options)
    assert cli(folder, "--json", *args) == expected(folder, True, **options)
    assert cli(folder, "-l", *args) == expected(folder, False, **options)
    assert cli(folder, "-l", "-0", *args) == expected(folder, False, null=True, **options)
    plain = cli(folder, "-0", *args).split(b"\0")[:-1]
    assert [line.split(b"\t", 2)[2] for line in cli(folder, "-l", "-0", *args).split(b"\0")[:-1]] == plain


def test_sort_and_limit(folder: Path):
    everything = sorted(cli(folder, "--json").splitlines(), key=lambda line: json.loads(line)["key"])
    assert cli(folder, "--json", "--sort").splitlines() == everything
    assert cli(folder, "--json", "--sort", "--limit", "5").splitlines() == everything[:5]
    assert len(cli(folder, "--json", "--limit", "3").splitlines()) == 3
    assert cli(folder, "-l", "--sort", "--limit", "0") == b""
    keys = [json.loads(line)["key"] for line in everything]
    rows = cli(folder, "-l", "-0", "--sort").split(b"\0")[:-1]
    assert [row.decode().split("\t", 2)[2] for row in rows] == keys


def test_names_that_are_not_utf8_and_uris_to_mask(tmp_path: Path):
    """A batch with a key that is not UTF-8 (or a uri a password could hide in) is written as
    the records of `info` show it: `key_b64`, U+FFFD, a percent-encoded uri."""
    folder = make_folder(tmp_path / "at@x=y" / "store")
    (folder / "d").mkdir(exist_ok=True)
    with open(os.fsencode(folder) + b"/d/bad\xe9name\xff.bin", "wb") as handle:
        handle.write(b"12")
    assert cli(folder, "--json") == expected(folder, True)
    assert cli(folder, "-l") == expected(folder, False)
    record = next(json.loads(line) for line in cli(folder, "--json").splitlines() if b"key_b64" in line)
    assert record["key"] == readable_text(os.fsdecode(b"d/bad\xe9name\xff.bin"))
    assert record["uri"].endswith("/d/bad%E9name%FF.bin")


def test_orjson_writes_times_as_isoformat_does():
    # `keys --json` hands datetimes to orjson, `keys -l` writes `isoformat()`: the same text
    times = [
        datetime.fromtimestamp(seconds, tz=timezone.utc)
        for seconds in (0, 0.5, 1_600_000_000.9999995, -34_560_000.25, 4_102_444_800.123457, -62_135_596_800)
    ]
    assert [orjson.dumps(when).decode()[1:-1] for when in times] == [when.isoformat() for when in times]


def test_entry_batches_are_the_listing_of_iterate_infos(folder: Path):
    # `keys -l/--json` on a local folder formats these entries as `iterate_infos` would
    store = LocalStore(uri=str(folder))
    entries = [entry for batch in store.iterate_entry_batches(prefix="d", shard="0/2") for entry in batch]
    infos = list(store.iterate_infos(prefix="d", shard="0/2"))
    assert [entry.key for entry in entries] == [stats.key for stats in infos]
    for entry, stats in zip(entries, infos, strict=True):
        info = os.stat(folder / entry.key)
        assert stats.size == entry.size == info.st_size
        assert stats.updated_at == datetime.fromtimestamp(entry.mtime, tz=timezone.utc)
        assert entry.created == stat_created(info) <= entry.mtime
        assert stats.created_at == datetime.fromtimestamp(entry.created, tz=timezone.utc)
    assert all(batch for batch in store.iterate_entry_batches())
