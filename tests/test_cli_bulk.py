"""Bulk listings and transfers at scale: `keys -l`/`--json` at listing speed and streamed, and
`dump`/`load` of large values in flat memory, through the installed `anystore`."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import anystore_bin, run_cli
from tests.test_cli_support import CliStore, make_cli_store

LISTING_KEYS = 20_000


def _fill(cli: CliStore, count: int) -> None:
    lines = "".join(json.dumps({"key": f"d{i // 1000:03d}/k{i:06d}", "value": "v" * 40}) + "\n" for i in range(count))
    proc = cli("load", input=lines.encode(), timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_keys_long_and_json_list_metadata_without_a_lookup_per_key(backend, store_factory, monkeypatch):
    """The listing carries the metadata: no lookup per key (which made `-l` 90x slower). The
    time ratio against plain `keys` is measured by bench/ (section listing)."""
    from anystore_cli.core import get_store

    cli = make_cli_store(store_factory, backend)
    _fill(cli, LISTING_KEYS)
    assert cli.ok("keys").count(b"\n") == LISTING_KEYS
    for option in ("-l", "--json"):
        lines = cli.ok("keys", option).splitlines()
        assert len(lines) == LISTING_KEYS
        if option == "--json":
            record = json.loads(lines[0])
            assert record["size"] == 40 and record["updated_at"] and record["key"].startswith("d0")
        else:
            assert lines[0].split(b"\t")[0] == b"40"
    store = get_store(uri=cli.uri, backend_config=cli.config or None)

    def no_lookup(self: object, key: str) -> None:
        raise AssertionError(f"a lookup of {key!r} while listing")

    monkeypatch.setattr(type(store), "_info", no_lookup)
    infos = list(store.iterate_infos())
    assert len(infos) == LISTING_KEYS
    assert {info.size for info in infos} == {40} and all(info.updated_at for info in infos)


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


# ---- dump and load of large values ------------------------------------------------------------------

BIG = 64 * 1024 * 1024
RSS_LIMIT = 100 * 1024 * 1024

_MEASURE = """
import os, subprocess, sys
stdin = open(sys.argv[1], "rb") if sys.argv[1] != "-" else subprocess.DEVNULL
stdout = open(sys.argv[2], "wb") if sys.argv[2] != "-" else subprocess.DEVNULL
proc = subprocess.Popen(sys.argv[3:], stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.write(proc.stderr.read().decode())
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)
"""


def _peak_rss(args: list[str], stdin: Path | None = None, stdout: Path | None = None) -> tuple[int, int, str]:
    """Run `anystore ARGS` from a small wrapper process; return its exit status, peak RSS and stderr.

    The wrapper's own few MiB are the floor a spawned child's `ru_maxrss` starts from (not the
    test process's, which can be large)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(stdin or "-"), str(stdout or "-"), anystore_bin(), *args],
        capture_output=True,
        timeout=600,
        env=env,
    )
    status, rss = done.stdout.split()
    return int(status), int(rss), done.stderr.decode()


def _escaped_text(size: int) -> bytes:
    """UTF-8 text full of what JSON escapes (quotes, backslashes, newlines, tabs) and non-ASCII."""
    unit = 'line "one" \\ two\ttab é ✓ 😀\n'.encode()
    return (unit * (size // len(unit) + 1))[:size].rsplit(b"\n", 1)[0] + b"\n"


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store with three large values (text with escapes, random bytes, base64 text) and a small one."""
    folder = tmp_path_factory.mktemp("big") / "store"
    folder.mkdir()
    (folder / "text").write_bytes(_escaped_text(BIG))
    (folder / "binary").write_bytes(os.urandom(BIG))
    (folder / "plain").write_bytes(b"A" * BIG)
    (folder / "small").write_bytes(b"\xffsmall")
    return folder


@pytest.mark.slow
def test_dump_of_large_values_keeps_memory_flat_and_loads_back(big_store: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    status, rss, stderr = _peak_rss(["-s", str(big_store), "dump"], stdout=dump)
    assert status == 0, stderr
    assert rss < RSS_LIMIT, f"dump peaked at {rss / 2**20:.0f} MiB"
    import orjson

    with open(dump, "rb") as handle:
        lines = {orjson.loads(line)["key"]: line for line in handle}
    assert sorted(lines) == ["binary", "plain", "small", "text"]
    text = (big_store / "text").read_bytes()
    assert lines["text"] == orjson.dumps({"key": "text", "value": text.decode()}) + b"\n"  # as one piece would be
    del text, lines
    copy = tmp_path / "copy"
    status, rss, stderr = _peak_rss(["-s", str(copy), "load"], stdin=dump)
    assert status == 0, stderr
    assert rss < RSS_LIMIT, f"load peaked at {rss / 2**20:.0f} MiB"
    for name in ("text", "binary", "plain", "small"):
        assert (copy / name).read_bytes() == (big_store / name).read_bytes(), name


def _cpu_seconds(args: list[str], read: int | None = None) -> tuple[float, int, bytes, bytes]:
    """Run `anystore ARGS` with stdout on a pipe, read all of it (or only `read` bytes, then close
    it, as `| head -c N` does); return the child's CPU seconds, exit status, output and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    proc = subprocess.Popen([anystore_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    if read is None:
        out = b""
        while chunk := proc.stdout.read(1 << 20):
            out = out[:100] + chunk[:100]  # keep little: only the child's work is measured
    else:
        out = proc.stdout.read(read)
        proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, proc.returncode, out, proc.stderr.read()


@pytest.mark.slow
def test_dump_into_a_closed_pipe_stops_early_and_quietly(big_store: Path) -> None:
    """`dump | head -c 10` ends soon after `head` does, with no error, not after dumping it all."""
    store = ["-s", str(big_store)]
    start_up = min(_cpu_seconds([*store, "keys"])[0] for _ in range(2))
    whole, status, _, _ = _cpu_seconds([*store, "dump"])
    assert status == 0
    early, status, head, stderr = _cpu_seconds([*store, "dump"], read=10)
    assert head.startswith(b'{"key":"')
    assert status == 0 and stderr == b""
    assert early - start_up < 0.5 * (whole - start_up), (
        f"{early:.2f} s of CPU after the reader left, a whole dump {whole:.2f} s, start-up {start_up:.2f} s"
    )


# ---- the streaming codec, with tiny chunks so every boundary falls somewhere -------------------------

_TEXT = st.text(
    alphabet=st.sampled_from(['"', "\\", "\n", "\t", "\x01", "/", "a", "z", " ", "é", "✓", "😀", "\u2028"]), max_size=60
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(_TEXT.map(str.encode), st.binary(max_size=40)), min_size=1, max_size=4),
    chunk=st.integers(min_value=1, max_value=17),
    ascii_only=st.booleans(),
    key_last=st.booleans(),
)
def test_long_lines_round_trip_whatever_the_chunk_boundaries(monkeypatch, values, chunk, ascii_only, key_last):
    """Every value, as `dump` writes it (and as other JSON writers do: `\\uXXXX` escapes, the key
    last), is stored byte for byte by the streaming `load`, its line split at every possible point."""
    import io

    from anystore_cli.backends.memory import MemoryStore
    from anystore_cli.services import jsonl
    from anystore_cli.services.dump import dump_record, write_value_line
    from anystore_cli.services.jsonl import parse_dump_line
    from anystore_cli.services.load import load_long_line

    monkeypatch.setattr(jsonl, "CHUNK", chunk)
    out = io.BytesIO()
    for index, value in enumerate(values):
        record = dump_record(f"k{index}", b"")
        record.pop("value")
        write_value_line(out, record, lambda value=value: contextlib.closing(io.BytesIO(value)))
        written = json.loads(out.getvalue().splitlines()[-1])
        if key_last or ascii_only:  # as another JSON writer would put it
            field = "value" if "value" in written else "value_b64"
            moved = {field: written[field], "key": written["key"]} if key_last else written
            text = json.dumps(moved, ensure_ascii=ascii_only)
            data = out.getvalue()
            out = io.BytesIO(data[: data.rstrip(b"\n").rfind(b"\n") + 1] + text.encode() + b"\n")
            out.seek(0, 2)
    store = MemoryStore(uri=f"memory://codec-{os.getpid()}-{time.monotonic_ns()}")
    for number, line in jsonl.iter_dump_lines(io.BytesIO(out.getvalue()), "test", limit=0):
        if isinstance(line, jsonl.LongLine):
            assert load_long_line(line, store, None, False)
        elif parsed := parse_dump_line(line, number, "test"):  # a line within one chunk
            store.put(parsed[0], parsed[1], serialization_mode="raw")
    for index, value in enumerate(values):
        assert store.get(f"k{index}", serialization_mode="raw") == value


def test_dump_writes_large_values_exactly_as_one_piece_would(monkeypatch) -> None:
    import io

    import orjson

    from anystore_cli.services import jsonl
    from anystore_cli.services.dump import dump_record, write_value_line

    monkeypatch.setattr(jsonl, "CHUNK", 5)
    for value in ('a "quoted" \\ line\nwith é ✓ 😀 \x00\x1f'.encode(), b"\xff\xfe binary \x00", b""):
        record = dump_record("some/key", b"")
        record.pop("value")
        out = io.BytesIO()
        write_value_line(out, record, lambda value=value: contextlib.closing(io.BytesIO(value)))
        assert out.getvalue() == orjson.dumps(dump_record("some/key", value)) + b"\n"


_LONG = "x" * (5 * 1024 * 1024)


@pytest.mark.parametrize(
    "line",
    [
        '{"key": "k", "value": "' + _LONG,  # the input ends inside the value
        '{"key": "k", "value": "' + _LONG + '\\q"}\n',  # a bad escape
        '{"key": "k", "value": "' + _LONG + '"} trailing\n',  # text after the object
        '{"key": "k", "value": "' + _LONG + '\n{"key": "z", "value": "1"}\n',  # not closed on its line
        '{"key": "k", "value_b64": "' + "QUJD" * (2 << 20) + '!"}\n',  # bad base64
        '{"key": "k", "value": "' + _LONG + '", "ttl": 5}\n',  # a ttl after a streamed value
    ],
    ids=["truncated", "bad-escape", "trailing-text", "unclosed", "bad-base64", "late-ttl"],
)
def test_malformed_long_line_exits_2_and_keeps_the_old_value(line: str, tmp_path: Path) -> None:
    store = ["-s", f"sqlite:///{tmp_path}/kv.db"]
    assert run_cli(*store, "put", "k", "old").returncode == 0
    done = run_cli(*store, "load", input=('{"key": "first", "value": "1"}\n' + line).encode())
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"anystore: error: Malformed line 2 of `stdin`"), done.stderr
    assert run_cli(*store, "get", "k").stdout == b"old"
    assert run_cli(*store, "get", "first").stdout == b"1"


# ---- load: every field in bounded memory, one answer whatever the line's length --------------------

HUGE = 300 * 1024 * 1024


def _huge_line_file(path: Path, head: bytes, unit: bytes, tail: bytes) -> Path:
    """Write a dump whose second line is `head`, then `unit` repeated to HUGE bytes, then `tail`
    (a megabyte at a time: the test never holds the line)."""
    block = unit * (1024 * 1024 // len(unit))
    with open(path, "wb") as out:
        out.write(b'{"key": "first", "value": "1"}\n' + head)
        for _ in range(HUGE // len(block)):
            out.write(block)
        out.write(tail + b"\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "head, unit, tail, why",
    [
        (b'{"key": "', b"k", b'", "value": "x"}', "`key` longer than"),
        (b'{"key_b64": "', b"QUJD", b'", "value": "x"}', "`key_b64` longer than"),
        (b'{"', b"n", b'": 1, "key": "k", "value": "x"}', "unknown field `nnnn"),
        (b'{"key": "k", "extra": [', b"1,", b'1], "value": "x"}', "unknown field `extra`"),
        (b'{"extra": "', b"x", b'", "key": "k", "value": "x"}', "unknown field `extra`"),
        (b'{"key": "k", "value": [', b"1,", b"1]}", "`value` is JSON over"),
        (b'{"key": "k", "value": "x", "value": "', b"x", b'"}', "`value` twice"),
    ],
    ids=["key", "key_b64", "field-name", "field-array", "field-string", "value-array", "value-twice"],
)
def test_load_refuses_a_huge_field_early_in_flat_memory(
    head: bytes, unit: bytes, tail: bytes, why: str, tmp_path: Path
) -> None:
    """A 300 MB key, field name, unknown field or JSON value is refused (exit 2, naming the line)
    without being read whole: the process stays far under the field's size."""
    dump = _huge_line_file(tmp_path / "huge.jsonl", head, unit, tail)
    store = tmp_path / "store"
    status, rss, stderr = _peak_rss(["-s", str(store), "load", "-i", str(dump)])
    dump.unlink()
    assert status == 2, stderr
    assert stderr.startswith(f"anystore: error: Malformed line 2 of `{dump}`: {why}"), stderr
    assert rss < RSS_LIMIT, f"load peaked at {rss / 2**20:.0f} MiB"
    assert sorted(os.listdir(store)) == ["first"]


# each a line with one fault (or none), as `dump` and other JSON writers put it
_FAULTS = [
    b'{"key": "a", "value": "x", "key": "b"}',
    b'{"key":"a","value":"x","key":"b"}',
    b'{"key": "a", "value": "x", "value": "y"}',
    b'{"key": "a", "value": "x", "value_b64": "eA=="}',
    b'{"value_b64": "eA==", "key": "a", "value": "x"}',
    b'{"key": "a", "key_b64": "YQ==", "value": "x"}',
    b'{"key": "a", "value": "x", "zz": 1}',
    b'{"zz": [1, {"b": "]"}], "key": "a", "value": "x"}',
    b'{"key": "a", "value": "x", "ttl": 5, "ttl": 5}',
    b'{"' + b"n" * 100 + b'": 1, "key": "a", "value": "x"}',
    b'{"key": "' + b"k" * 70000 + b'", "value": "x"}',
    b'{"key": "a", "value_b64": "eA="}',
    b'{"key": "a", "value_b64": "e!A=="}',
    b'{"key": "a", "value_b64": 5}',
    b'{"key": "a", "value": "\\q"}',
    b'{"key": "a", "value": "\\ud800"}',
    b'{"key": "a", "value": "x"} t',
    b'{"key": "a", "value": "x",}',
    b'{"value": "x"}',
    b'{"key": "a"}',
    b'{"key": 5, "value": "x"}',
    b'{"key": "../a", "value": "x"}',
    b'{"value": "x", "key": "../a"}',
    b'{"key": "a", "value": "x", "ttl": -1}',
    b'{"key": "a", "value": "x", "ttl": "soon"}',
    b"not json",
    b'["a"]',
    b'{"key": "a", "value": [1, {"b": "]"}]}',
    b'{"value": "x", "key": "a"}',
    b'{"key_b64": "YQ==", "value_b64": "eA==", "ttl": null}',
]


def _whole(raw: bytes) -> Any:
    """What `load` makes of `raw` read as a line held whole: `(key, bytes, ttl)` or the error."""
    from anystore_cli.errors import InvalidData
    from anystore_cli.services.jsonl import parse_dump_line

    try:
        return parse_dump_line(raw, 1, "t")
    except InvalidData as exc:
        return str(exc)


def _streamed(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What `load` makes of `raw` read as a long line, a byte at a time."""
    import io

    from anystore_cli.backends.memory import MemoryStore
    from anystore_cli.errors import InvalidData
    from anystore_cli.services import jsonl
    from anystore_cli.services.load import load_long_line

    monkeypatch.setattr(jsonl, "CHUNK", 1)  # every line long, every boundary somewhere
    store = MemoryStore(uri=f"memory://faults-{os.getpid()}-{time.monotonic_ns()}")
    try:
        for _, line in jsonl.iter_dump_lines(io.BytesIO(raw + b"\n"), "t", limit=0):
            assert isinstance(line, jsonl.LongLine)
            assert load_long_line(line, store, None, False)
    except InvalidData as exc:
        return str(exc)
    finally:
        monkeypatch.undo()
    (key,) = store.iterate_keys()
    return key, store.get(key, serialization_mode="raw"), None


@pytest.mark.parametrize("raw", _FAULTS, ids=range(len(_FAULTS)))
def test_a_line_gives_one_answer_read_whole_or_streamed(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated field, both value fields, an unknown field, a bad value: the same error (or
    the same stored value) whether the line is short (read whole) or long (streamed)."""
    whole = _whole(raw)
    streamed = _streamed(raw, monkeypatch)
    if isinstance(whole, tuple):
        whole = (*whole[:2], None)  # the streamed side reports no ttl
    assert whole == streamed


_FIELD_NAMES = st.sampled_from(["key", "key_b64", "value", "value_b64", "ttl", "zz", "k\\u0065y"])
_FIELD_VALUES = st.sampled_from(
    ['"a"', '"../a"', '"eA=="', '"e!"', "5", "-1", "null", '[1, "]"]', '{"a": "}"}', '"\\q"', '"\\u00e9"', "true"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=5))
def test_any_line_gives_one_answer_read_whole_or_streamed(monkeypatch, fields) -> None:
    raw = ("{" + ", ".join(f'"{name}": {value}' for name, value in fields) + "}").encode()
    whole = _whole(raw)
    streamed = _streamed(raw, monkeypatch)
    if isinstance(whole, tuple):
        whole = (*whole[:2], None)
    assert whole == streamed
