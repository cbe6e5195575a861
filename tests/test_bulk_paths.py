"""The bulk paths' batch-at-a-time checks agree with the per-key checks they stand in for:
`all_canonical` (a batch of keys in a few string scans), `parse_dump_block` (a block of dump
lines in one JSON parse) and `put_many`'s list path (a batch handed on whole)."""

from __future__ import annotations

import json
import string

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anystore_cli.core import get_store
from anystore_cli.errors import InvalidData, InvalidKey
from anystore_cli.services.jsonl import parse_dump_block, parse_dump_line
from anystore_cli.store.base import as_backend
from anystore_cli.util.keys import all_canonical, normalize_key
from tests.conftest import run_cli

# the characters that matter to a key's form, and a few that do not
KEY_CHARS = st.sampled_from(list('ab/.\x00 \n,}{"\\ü✓') + list(string.digits))
raw_keys = st.text(KEY_CHARS, max_size=8)


def _is_canonical(key: str) -> bool:
    try:
        return normalize_key(key) == key
    except InvalidKey:
        return False


@settings(max_examples=500, deadline=None)
@given(st.lists(raw_keys, max_size=6))
def test_all_canonical_never_passes_a_key_that_normalising_would_change(keys: list[str]) -> None:
    if all_canonical(keys):
        assert all(_is_canonical(key) for key in keys), keys


@pytest.mark.parametrize(
    "keys",
    [["a"], ["a/b", "c d/e.txt"], ["ü/✓", "x.y/z"], [f"bench/{i:03d}/{i:06d}.txt" for i in range(50)]],
)
def test_all_canonical_passes_the_common_keys(keys: list[str]) -> None:
    assert all_canonical(keys)


@pytest.mark.parametrize(
    "keys",
    [[""], ["/a"], ["a/"], ["a//b"], ["./a"], ["a/./b"], ["a/../b"], [".."], ["a\x00b"], ["ok", "a//b"], ["a", 1]],
)
def test_all_canonical_sends_every_other_key_to_the_per_key_checks(keys: list) -> None:
    assert not all_canonical(keys)


def _line(key: str, value: str) -> bytes:
    return orjson.dumps({"key": key, "value": value})


# lines a dump may hold, good and bad: whole records, extra fields, blanks, and pieces of a
# record split across lines (`{"key": "a",` then `"value": "x"}, {...}`)
record_lines = st.builds(_line, raw_keys, st.text(max_size=5))
odd_lines = st.sampled_from(
    [
        b"",
        b"   ",
        b'{"key": "a", "value": "1", "ttl": 5}',
        b'{"key": "a"',
        b'"value": "x"}, {"key": "b", "value": "y"}',
        b'{"key": "a", "value": "x"}, {"key": "b", "value": "y"}',
        b'{"key": "a", "value": "x"} ',
        b'{"key": "a", "value": null}',
        b'{"key": "a", "value_b64": "eA=="}',
        b'[{"key": "a", "value": "x"}]',
        b'"text"',
        b"{}",
        b'{"key": "a", "value": "x"}\r',
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(record_lines, record_lines, odd_lines), min_size=1, max_size=8))
def test_a_block_parses_as_its_lines_would_one_by_one(lines: list[bytes]) -> None:
    block = parse_dump_block(lines)
    if block is None:
        return  # the lines take the per-line path
    one_by_one = []
    for number, line in enumerate(lines, 1):
        parsed = parse_dump_line(line, number, "test")  # raises if the block let a bad line through
        assert parsed is not None and parsed[2] is None
        one_by_one.append(parsed[:2])
    assert block == one_by_one


@pytest.mark.parametrize(
    "lines",
    [
        [b'{"key": "a"', b'"value": "x"}, {"key": "b", "value": "y"}'],
        [b'{"key": "a", "value": "x"}', b'{"key": "b"', b'"value": "x"}, {"key": "c", "value": "y"}'],
        [b'{"key": "a", "value": "x"}, {"key": "b"', b'"value": "y"}'],
    ],
)
def test_a_block_refuses_records_split_across_lines(lines: list[bytes]) -> None:
    assert parse_dump_block(lines) is None


def test_a_record_split_across_lines_is_malformed_and_the_lines_before_it_are_kept(tmp_path) -> None:
    store = ["-s", str(tmp_path / "store")]
    # joined on `,` and a newline, lines 2 and 3 would read as two whole records
    lines = b'{"key": "first", "value": "1"}\n{"key": "b"\n"value": "x"}, {"key": "c", "value": "y"}\n'
    done = run_cli(*store, "load", input=lines)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"anystore: error: Malformed line 2 of `stdin`"), done.stderr
    assert run_cli(*store, "keys").stdout == b"first\n"


def test_load_mixes_block_and_per_line_records_in_order(tmp_path) -> None:
    """Blank lines, ttl lines, base64 and non-canonical keys among common lines: every line is
    stored under its canonical key, and a later line of the same key wins."""
    store = ["-s", f"sqlite:///{tmp_path}/kv.db"]
    lines = [json.dumps({"key": f"k/{i:04d}", "value": f"v{i}"}) for i in range(2500)]
    lines[10] = ""
    lines[700] = json.dumps({"key": "./k//0001", "value": "again"})  # overwrites line 2
    lines[1500] = json.dumps({"key": "b64", "value_b64": "aGk="})
    lines[2200] = json.dumps({"key": ".hidden/x", "value": "dot"})
    done = run_cli(*store, "load", input=("\n".join(lines) + "\n").encode())
    assert done.returncode == 0, done.stderr
    assert run_cli(*store, "get", "k/0001").stdout == b"again"
    assert run_cli(*store, "get", "b64").stdout == b"hi"
    assert run_cli(*store, "get", ".hidden/x").stdout == b"dot"
    assert run_cli(*store, "get", "k/2499").stdout == b"v2499"
    assert len(run_cli(*store, "keys").stdout.splitlines()) == 2500 - 4 + 2


@pytest.fixture
def counted_memory_store(monkeypatch):
    store = get_store("memory://")
    backend = as_backend(store)
    batches: list[int] = []
    original = type(backend)._put_many

    def counting(self, items, ttl=None):
        batches.append(len(items))
        return original(self, items, ttl=ttl)

    monkeypatch.setattr(type(backend), "_put_many", counting)
    return store, batches


def test_put_many_of_raw_bytes_writes_batches_of_batch_size(counted_memory_store) -> None:
    store, batches = counted_memory_store
    items = [(f"k{i}", b"v%d" % i) for i in range(25)]
    assert store.put_many(items, serialization_mode="raw", batch_size=10) == 25
    assert batches == [10, 10, 5]
    assert store.get("k24", serialization_mode="raw") == b"v24"
    batches.clear()
    # a generator takes the per-key path, in the same batches
    assert store.put_many(iter(items), serialization_mode="raw", batch_size=10) == 25
    assert batches == [10, 10, 5]
    batches.clear()
    assert store.put_many([], serialization_mode="raw") == 0
    assert store.put_many(items[:3], serialization_mode="raw", batch_size=0) == 3  # a batch a key
    assert batches == [1, 1, 1]


def test_put_many_normalises_keys_and_converts_values_in_a_batch_that_needs_it(counted_memory_store) -> None:
    store, _ = counted_memory_store
    assert store.put_many([("a", b"1"), ("./b//c", b"2"), ("d", "text")], serialization_mode="raw") == 3
    assert sorted(store.iterate_keys()) == ["a", "b/c", "d"]
    assert store.get("d", serialization_mode="raw") == b"text"
    with pytest.raises(InvalidKey):
        store.put_many([("a", b"1"), ("../up", b"2")], serialization_mode="raw")
    with pytest.raises((TypeError, ValueError, InvalidData)):
        store.put_many([("a", b"1"), ("b", b"2", b"3")], serialization_mode="raw")


def test_a_load_into_a_zip_that_hits_an_existing_key_loads_nothing_and_says_so(tmp_path) -> None:
    """An append-only archive refuses the batch whole: the archive is as it was, and the summary
    does not count the refused keys as loaded (their values were already there)."""
    archive = str(tmp_path / "a.zip")
    lines = "".join(json.dumps({"key": f"k/{i:05d}", "value": f"v{i}"}) + "\n" for i in range(2500)).encode()
    assert run_cli("-s", archive, "load", input=lines).returncode == 0
    assert len(run_cli("-s", archive, "keys").stdout.splitlines()) == 2500
    with open(archive, "rb") as handle:
        before = handle.read()
    extra = json.dumps({"key": "new", "value": "n"}).encode() + b"\n"
    done = run_cli("-s", archive, "load", input=extra + lines)
    assert done.returncode != 0
    assert b"already exists" in done.stderr and b"(loaded 0 keys before the failure)" in done.stderr, done.stderr
    with open(archive, "rb") as handle:
        assert handle.read() == before


@pytest.mark.parametrize("backend", ["local", "sqlite", "redis", "zip"])
def test_load_no_clobber_keeps_existing_keys_asking_a_batch_at_a_time(backend, store_factory, monkeypatch) -> None:
    """`load --no-clobber` over 3,000 lines of which 1,000 keys exist: those keep their values,
    the rest are loaded, the summary counts both (exit 1); the existence check is one `info_many`
    a batch (the single-key check made to fail shows no key is asked about alone)."""
    from anystore_cli.services.load import Loader

    uri, config = store_factory.uri_and_config(backend)
    flags = [arg for name, value in config.items() for arg in ("-b", f"{name}={value}")]
    store = get_store(uri, backend_config=config or None, serialization_mode="raw")
    store.put_many([(f"k/{i:05d}", b"old") for i in range(0, 3000, 3)])
    lines = b"".join(orjson.dumps({"key": f"k/{i:05d}", "value": "new"}) + b"\n" for i in range(3000))
    proc = run_cli("-s", uri, *flags, "load", "--no-clobber", input=lines)
    assert proc.returncode == 1, proc.stderr
    assert "loaded 2000 keys" in proc.stderr.decode() and "kept 1000 existing keys" in proc.stderr.decode()
    values = dict(store.get_many([f"k/{i:05d}" for i in range(3000)], serialization_mode="raw"))
    assert [i for i in range(3000) if values[f"k/{i:05d}"] == b"old"] == list(range(0, 3000, 3))
    assert sum(1 for value in values.values() if value == b"new") == 2000

    class Progress:
        def advance(self, count: int) -> None:
            pass

    backend_store = as_backend(store)

    def no_single_check(key: str) -> bool:
        raise AssertionError(f"`exists` of {key!r} alone")

    monkeypatch.setattr(type(backend_store), "_exists", no_single_check)
    loader = Loader(store, no_clobber=True, jobs=1, progress=Progress())
    loader.submit([(f"k/{i:05d}", b"newer") for i in range(2990, 3010)], None)
    loader.close()
    assert (loader.loaded, loader.skipped) == (10, 10)
    assert store.get("k/03005", serialization_mode="raw") == b"newer"
    assert store.get("k/02995", serialization_mode="raw") == b"new"
