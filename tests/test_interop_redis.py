"""Redis written by the released anystore library is read here, and the other way round.

Each test runs the real package (0.3.0 or 1.2.6, see `tests.library_venvs`) on its own key prefix:
0.3.0 names it with `redis_prefix` (keys at `PREFIX/key`, default `anystore`), 1.2.6 with the
uri's path after the database number (`redis://host/DB/PREFIX`, keys at `PREFIX/key`).
"""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import _redis_cleanup, run_cli, unique
from tests.library_venvs import VERSIONS, run_library

pytestmark = pytest.mark.service

TEXT = "héllo wörld\nsecond line, no newline at the end"
DOC = {"name": "ünï", "n": [1, 2.5, None, True], "nested": {"a": "b"}}
ALL_BYTES = bytes(range(256))
SINGLE = {f"bytes/single/{i:03d}": bytes([i]) for i in range(256)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Side:
    """One library version's view of a fresh prefix: the uri and options it opens, and the
    `-s`/`-b` options the CLI takes for the same store."""

    def __init__(self, version: str, redis_url: str) -> None:
        self.version = version
        self.server = redis_url.split("://", 1)[1].split("/", 1)[0]
        self.db = "0"
        self.prefix = unique("interop")
        database = f"redis://{self.server}/{self.db}"
        if version.startswith("0."):
            self.lib_uri = database
            self.lib_config: dict[str, str] = {"redis_prefix": self.prefix}
            self.cli_store = ["-s", database, "-b", f"redis_prefix={self.prefix}"]
        else:
            self.lib_uri = f"{database}/{self.prefix}"
            self.lib_config = {}
            self.cli_store = ["-s", self.lib_uri]

    def cli(self, *args: str, input: bytes | None = None) -> object:
        return run_cli(*self.cli_store, *args, input=input)

    def library(self, code: str, **data: object) -> object:
        prelude = (
            "from anystore import get_store\n"
            "OPTIONS = {'backend_config': DATA['config']} if DATA['config'] else {}\n"
            "STORE = get_store(DATA['uri'], **OPTIONS)\n"
        )
        return library(self.version, prelude + code, uri=self.lib_uri, config=self.lib_config, **data)


def library(version: str, code: str, **data: object) -> object:
    """`run_library`, with the library's log lines (it prints them to stdout) sent to stderr."""
    code = "sys.stdout = sys.stderr\n" + textwrap.dedent(code) + "\nsys.stdout = sys.__stdout__\n"
    return run_library(version, code, **data)


@pytest.fixture(params=VERSIONS)
def side(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Side]:
    side = Side(request.param, redis_url)
    yield side
    _redis_cleanup(f"redis://{side.server}/{side.db}", side.prefix)


def test_library_writes_the_cli_lists_gets_and_infos(side):
    side.library(
        """
import base64
STORE.put("text/a.txt", DATA["text"], serialization_mode="auto")
STORE.put("json/deep/doc.json", DATA["doc"], serialization_mode="json")
STORE.put("bytes/all", base64.b64decode(DATA["all"]), serialization_mode="raw")
for key, value in DATA["single"].items():
    STORE.put(key, base64.b64decode(value), serialization_mode="raw")
RESULT = base64.b64encode(STORE.get("json/deep/doc.json", serialization_mode="raw")).decode()
""",
        text=TEXT,
        doc=DOC,
        all=_b64(ALL_BYTES),
        single={key: _b64(value) for key, value in SINGLE.items()},
    )
    listed = side.cli("keys", "--sort")
    assert listed.returncode == 0, listed.stderr
    expected = sorted(["text/a.txt", "json/deep/doc.json", "bytes/all", *SINGLE])
    assert listed.stdout.decode().splitlines() == expected

    text = side.cli("get", "text/a.txt")
    assert (text.returncode, text.stdout) == (0, TEXT.encode())
    doc = side.cli("get", "json/deep/doc.json", "--mode", "json")
    assert doc.returncode == 0 and json.loads(doc.stdout) == DOC
    everything = side.cli("get", "bytes/all")
    assert (everything.returncode, everything.stdout) == (0, ALL_BYTES)
    dumped = side.cli("dump", "--prefix", "bytes/single")
    assert dumped.returncode == 0, dumped.stderr
    singles = {}
    for line in dumped.stdout.splitlines():
        record = json.loads(line)
        text = record.get("value")
        singles[record["key"]] = text.encode() if text is not None else base64.b64decode(record["value_b64"])
    assert singles == SINGLE

    info = side.cli("info", "bytes/all", "--json")
    assert info.returncode == 0, info.stderr
    record = json.loads(info.stdout)
    assert (record["key"], record["size"]) == ("bytes/all", 256)
    nested = json.loads(side.cli("info", "json/deep/doc.json", "--json").stdout)
    assert nested["name"] == "doc.json"


def test_cli_writes_the_library_lists_and_reads(side, tmp_path):
    source = tmp_path / "all.bin"
    source.write_bytes(ALL_BYTES)
    assert side.cli("put", "text/a.txt", TEXT).returncode == 0
    assert side.cli("put", "json/deep/doc.json", "--mode", "json", input=json.dumps(DOC).encode()).returncode == 0
    assert side.cli("put", "bytes/all", "-i", str(source)).returncode == 0
    lines = b"".join(
        json.dumps({"key": key, "value_b64": _b64(value)}).encode() + b"\n" for key, value in SINGLE.items()
    )
    loaded = side.cli("load", input=lines)
    assert loaded.returncode == 0, loaded.stderr
    assert side.cli("touch", "stamped").returncode == 0

    result = side.library(
        """
import base64
RESULT = {
    "keys": sorted(STORE.iterate_keys()),
    "raw": {key: base64.b64encode(STORE.get(key, serialization_mode="raw")).decode() for key in DATA["keys"]},
    "doc": STORE.get("json/deep/doc.json", serialization_mode="json"),
    "text": STORE.get("text/a.txt", serialization_mode="raw").decode(),
}
""",
        keys=["bytes/all", *SINGLE],
    )
    # the timestamps this tool keeps beside each value are no keys to the library
    assert result["keys"] == sorted(["text/a.txt", "json/deep/doc.json", "bytes/all", "stamped", *SINGLE])
    assert result["text"] == TEXT
    assert result["doc"] == DOC
    assert base64.b64decode(result["raw"]["bytes/all"]) == ALL_BYTES
    assert b"".join(base64.b64decode(result["raw"][key]) for key in SINGLE) == ALL_BYTES


def test_library_ttl_is_honoured(side, redis_url):
    import redis

    client = redis.Redis.from_url(f"redis://{side.server}/{side.db}")
    side.library(
        """
STORE.put("lives", b"long", serialization_mode="raw", ttl=3600)
STORE.put("dies", b"soon", serialization_mode="raw", ttl=1)
"""
    )
    lives, dies = f"{side.prefix}/lives".encode(), f"{side.prefix}/dies".encode()
    # Redis drops the key itself: block on the server for the time it has left (BLPOP of a
    # list nobody fills), until it is gone
    for _ in range(50):
        left = client.pttl(dies)
        if left < 0:
            break
        client.blpop([f"{side.prefix}/never"], timeout=max(left, 1) / 1000)
    assert not client.exists(dies)
    assert side.cli("exists", "dies").returncode == 1
    assert side.cli("get", "dies").returncode == 1
    assert side.cli("keys").stdout == b"lives\n"
    got = side.cli("get", "lives")
    assert (got.returncode, got.stdout) == (0, b"long")
    assert side.cli("info", "lives").returncode == 0
    # reading leaves the library's expiry in place
    assert 0 < client.ttl(lives) <= 3600
    client.close()


def test_bare_keys_of_the_whole_database_hide_the_timestamps_from_1_2(redis_url):
    """`redis://host/DB` in anystore 1.2 is every key of the database: written here with
    `-b redis_prefix=`, its listing shows the values and nothing this tool keeps."""
    server = redis_url.split("://", 1)[1].split("/", 1)[0]
    database = f"redis://{server}/11"
    name = unique("bare")
    keys = [f"{name}/a", f"{name}/deep/b"]
    try:
        for key in keys:
            done = run_cli("-s", database, "-b", "redis_prefix=", "put", key, key)
            assert done.returncode == 0, done.stderr
        result = library(
            "1.2.6",
            """
from anystore import get_store
store = get_store(DATA["uri"])
RESULT = {"all": sorted(store.iterate_keys()), "value": store.get(DATA["key"], serialization_mode="raw").decode()}
""",
            uri=database,
            key=keys[1],
        )
        assert [key for key in result["all"] if key.startswith(name)] == keys
        assert not [key for key in result["all"] if "\x00" in key or "anystore-cli" in key]
        assert result["value"] == keys[1]
        listed = run_cli("-s", database, "-b", "redis_prefix=", "keys", "--sort", "--prefix", name)
        assert listed.stdout.decode().splitlines() == keys
    finally:
        run_cli("-s", database, "-b", "redis_prefix=", "rm", "-f", *keys)
