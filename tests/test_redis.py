"""The Redis backend beyond the shared contract: layout, exact matching, ttl, failures."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import time
from collections.abc import Iterator

import pytest

from anystore_cli.backends.redis import RedisStore, escape_match
from anystore_cli.core import AlreadyExists, DoesNotExist, InvalidData, StoreError, get_store
from tests.conftest import _redis_cleanup, run_cli, unique

pytestmark = pytest.mark.service


@pytest.fixture
def store(store_factory) -> RedisStore:
    return store_factory("redis")


@pytest.fixture
def raw(redis_url) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_values_live_at_prefix_slash_key(store, raw):
    store.put("foo/bar", b"value", serialization_mode="raw")
    assert raw.get(f"{store.redis_prefix}/foo/bar".encode()) == b"value"
    assert store.get_key("foo/bar") == f"{store.redis_prefix}/foo/bar"


def test_default_prefix_is_anystore(redis_url):
    assert get_store(redis_url).redis_prefix == "anystore"


def test_escape_match_escapes_every_glob_character():
    assert escape_match("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"


SPECIAL = ["a*b", "aXb", "a?b", "a[b]c", "ab]c", "back\\slash", "backXslash", "100%", "1_0", "ünï/cödé", "ü"]


def test_prefix_and_glob_match_special_keys_exactly(store):
    for key in SPECIAL:
        store.put(key, key)
    assert sorted(store.iterate_keys()) == sorted(SPECIAL)
    assert list(store.iterate_keys(prefix="a*")) == ["a*b"]
    assert list(store.iterate_keys(prefix="a?")) == ["a?b"]
    assert list(store.iterate_keys(prefix="a[")) == ["a[b]c"]
    assert list(store.iterate_keys(prefix="ab]")) == ["ab]c"]
    assert list(store.iterate_keys(prefix="back\\")) == ["back\\slash"]
    assert list(store.iterate_keys(prefix="1_")) == ["1_0"]
    assert list(store.iterate_keys(prefix="100%")) == ["100%"]
    assert sorted(store.iterate_keys(prefix="ü")) == ["ü", "ünï/cödé"]
    assert sorted(store.iterate_keys(glob="a?b")) == ["a*b", "a?b", "aXb"]
    assert list(store.iterate_keys(glob="a[*]b")) == ["a*b"]
    assert list(store.iterate_keys(glob="ünï/*")) == ["ünï/cödé"]
    assert list(store.iterate_keys(glob="back[\\]*")) == ["back\\slash"]


def test_glob_characters_in_redis_prefix_are_literal(store_factory, redis_url):
    name = unique()
    store_factory.cleanups.append(lambda: _redis_cleanup(redis_url, name))  # both prefixes start with it
    starred = store_factory("redis", backend_config={"redis_prefix": f"{name}*"})
    plain = store_factory("redis", backend_config={"redis_prefix": f"{name}x"})
    starred.put("k", 1)
    plain.put("k", 2)
    assert list(starred.iterate_keys()) == ["k"]
    assert list(plain.iterate_keys()) == ["k"]
    assert starred.get("k") == 1 and plain.get("k") == 2


def test_timestamp_hashes_are_not_listed(store, raw):
    store.put("k", 1)
    names = list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000))
    assert len(names) == 2  # the value and its timestamps
    assert list(store.iterate_keys()) == ["k"]


def test_large_value_roundtrip(store):
    data = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
    store.put("big", data, serialization_mode="raw")
    assert store.get("big", serialization_mode="raw") == data
    assert store.info("big").size == len(data)


def test_put_stream_of_large_value_is_renamed_into_place(store, raw):
    data = bytes(range(256)) * (5 * 1024 * 4) + b"tail"
    assert store.put_stream("big", io.BytesIO(data)) == len(data)
    got = store.get("big", serialization_mode="raw")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    # no upload key is left behind
    assert len(list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000))) == 2
    with pytest.raises(AlreadyExists):
        store.put_stream("big", io.BytesIO(data), no_clobber=True)
    assert len(list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000))) == 2


def test_info_reads_no_value_and_keeps_created_at(store, monkeypatch):
    store.put("k", b"12345", serialization_mode="raw")
    first = store.info("k")
    time.sleep(0.02)
    store.put("k", b"123", serialization_mode="raw")

    def refuse(*args, **kwargs):
        raise AssertionError("info must not read the value")

    monkeypatch.setattr(store._client, "get", refuse)
    second = store.info("k")
    assert second.size == 3
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at


def test_no_clobber_uses_set_nx(store):
    store.put("k", "one", no_clobber=True)
    with pytest.raises(AlreadyExists):
        store.put("k", "two", no_clobber=True)
    assert store.get("k") == "one"


def test_ttl_expires_value_and_timestamps(store, raw):
    store.put("gone", 1, ttl=1)
    assert 0 < raw.ttl(f"{store.redis_prefix}/gone".encode()) <= 1
    assert 0 < raw.ttl(f"{store.redis_prefix}\x00gone".encode()) <= 1
    time.sleep(1.2)
    assert store.exists("gone") is False
    with pytest.raises(DoesNotExist):
        store.info("gone")
    assert list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000)) == []


def test_put_without_ttl_clears_an_earlier_ttl(store, raw):
    store.put("k", 1, ttl=1)
    store.put("k", 2)
    assert raw.ttl(f"{store.redis_prefix}/k".encode()) == -1
    assert raw.ttl(f"{store.redis_prefix}\x00k".encode()) == -1


def test_pop_and_delete_remove_timestamps(store, raw):
    store.put("a", 1)
    store.put("b", 2)
    assert store.pop("a") == 1
    assert store.delete("b") is True
    assert list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000)) == []


def test_put_many_and_get_many(store):
    items = {f"bulk/{i}": i for i in range(2500)}
    assert store.put_many(items) == 2500
    assert dict(store.get_many(items)) == items
    assert store.info("bulk/7").updated_at is not None


def test_put_many_keeps_created_at_and_moves_updated_at(store, raw):
    store.put_many({"a": b"1", "b": b"2"}, serialization_mode="raw")
    a1 = store.info("a")
    time.sleep(0.02)
    store.put_many({"a": b"one", "c": b"3"}, serialization_mode="raw")
    a2 = store.info("a")
    assert (a2.size, a2.created_at) == (3, a1.created_at)
    assert a2.updated_at > a1.updated_at
    assert store.info("c").created_at > a1.created_at
    assert sorted(store.iterate_keys()) == ["a", "b", "c"]
    # value and timestamps are plain strings: one MSET a batch
    assert raw.type(f"{store.redis_prefix}\x00a".encode()) == b"string"


def test_put_many_of_new_keys_is_one_round_trip(store, monkeypatch):
    """A load into new keys sends one MULTI (values and fresh timestamps) a batch, no MGET of
    creation times first; a batch with existing keys still keeps theirs."""
    backend = store._get_backend() if hasattr(store, "_get_backend") else store
    sent: list[list[tuple]] = []
    send = backend._raw_commands
    monkeypatch.setattr(backend, "_raw_commands", lambda commands: sent.append(commands) or send(commands))
    store.put_many({"n1": b"1", "n2": b"2"}, serialization_mode="raw")
    assert len(sent) == 1 and [c[0] for c in sent[0]] == ["MULTI", "MSETNX", "MSET", "EXEC"]
    first = store.info("n1")
    assert first.created_at is not None and first.created_at == first.updated_at
    time.sleep(0.02)
    sent.clear()
    store.put_many({"n1": b"one", "n3": b"3"}, serialization_mode="raw")
    assert len(sent) == 3  # the MULTI wrote no timestamps: read the creation times, write them
    again = store.info("n1")
    assert (again.size, again.created_at) == (3, first.created_at)
    assert again.updated_at > first.updated_at
    new = store.info("n3")
    assert new.created_at is not None and new.created_at > first.created_at
    assert store.get("n3", serialization_mode="raw") == b"3"


def test_put_many_with_ttl_expires_values_and_timestamps(store, raw):
    store.put("k", b"old", serialization_mode="raw")
    store.put_many({"k": b"new", "j": b"j"}, ttl=1, serialization_mode="raw")
    for name in ("/k", "\x00k", "/j", "\x00j"):
        assert 0 < raw.ttl(f"{store.redis_prefix}{name}".encode()) <= 1
    time.sleep(1.2)
    assert store.exists("k") is False and store.exists("j") is False
    assert list(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000)) == []


def test_timestamps_of_another_type_are_replaced_not_an_error(store, raw):
    """A timestamp name holding a hash (as an earlier layout wrote) reads as no timestamps, and
    the next write replaces it."""
    store.put("k", b"v", serialization_mode="raw")
    meta = f"{store.redis_prefix}\x00k".encode()
    raw.delete(meta)
    raw.hset(meta, mapping={"c": "1", "u": "2"})
    info = store.info("k")
    assert (info.size, info.created_at, info.updated_at) == (1, None, None)
    store.put_many({"k": b"vv"}, serialization_mode="raw")
    assert store.info("k").updated_at is not None


# ---- `-b redis_timestamps=false`: values alone --------------------------------------------------


def _names(raw, store) -> list[bytes]:
    return sorted(raw.scan_iter(match=f"{store.redis_prefix}*".encode(), count=10000))


def test_without_timestamps_writes_values_alone(store_factory, raw):
    store = store_factory("redis", backend_config={"redis_timestamps": False})
    store.put("one", b"1", serialization_mode="raw")
    store.put("two", b"22", serialization_mode="raw", ttl=60)
    store.put_stream("three", io.BytesIO(b"x" * (3 * 1024 * 1024)))
    store.put("four", b"4", serialization_mode="raw", no_clobber=True)
    assert store.put_many({f"many/{i}": b"m" * i for i in range(1, 3001)}, serialization_mode="raw") == 3000
    prefix = store.redis_prefix
    assert not [name for name in _names(raw, store) if b"\x00" in name]
    assert len(_names(raw, store)) == 3004
    assert raw.get(f"{prefix}/many/2999".encode()) == b"m" * 2999
    assert 0 < raw.ttl(f"{prefix}/two".encode()) <= 60
    info = store.info("many/7")
    assert (info.size, info.created_at, info.updated_at) == (7, None, None)
    assert {entry.size for entry in store.iterate_infos(prefix="many/")} == set(range(1, 3001))


def test_without_timestamps_a_write_removes_the_old_ones(store_factory, raw):
    """Times an earlier write left would be read as the new value's once timestamps are kept
    again: a write without them removes them, with or without a ttl, bulk or not."""
    uri, config = store_factory.uri_and_config("redis")
    stamped = get_store(uri, backend_config=config)
    keys = ["a", "b", "c", "d"]
    stamped.put_many({key: b"old" for key in keys}, serialization_mode="raw")
    assert all(stamped.info(key).created_at is not None for key in keys)
    plain = get_store(uri, backend_config={**config, "redis_timestamps": "false"})
    plain.put("a", b"new", serialization_mode="raw")
    plain.put("b", b"new", serialization_mode="raw", ttl=60)
    plain.put_many({"c": b"new"}, serialization_mode="raw")
    plain.put_stream("d", io.BytesIO(b"n" * (3 * 1024 * 1024)))
    assert _names(raw, stamped) == sorted(f"{stamped.redis_prefix}/{key}".encode() for key in keys)
    for key in keys:
        info = stamped.info(key)
        assert (info.created_at, info.updated_at) == (None, None)
    stamped.put("a", b"again", serialization_mode="raw")
    assert stamped.info("a").created_at is not None


def test_redis_timestamps_must_be_a_boolean(redis_url):
    with pytest.raises(InvalidData, match="`redis_timestamps` takes true or false, not `sometimes`"):
        get_store(redis_url, backend_config={"redis_timestamps": "sometimes"}).exists("k")


def _expect_store_error(uri: str, secret: str | None = None) -> None:
    store = get_store(uri)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "store failed" in message
    if secret:
        assert secret not in message
        assert "***" in message


def test_unreachable_port_is_store_error():
    _expect_store_error("redis://:hunter2@127.0.0.1:1/0", "hunter2")


def test_silent_server_is_store_error_within_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        _expect_store_error(f"redis://:hunter2@127.0.0.1:{port}/0", "hunter2")


def test_refused_credentials_are_store_error(redis_url):
    host = redis_url.split("://", 1)[1].rsplit("@", 1)[-1]
    _expect_store_error(f"redis://nosuchuser:hunter2@{host}", "hunter2")


def test_database_path_must_be_a_number(redis_url):
    from anystore_cli.core import InvalidUri

    with pytest.raises(InvalidUri):
        RedisStore(uri="redis://127.0.0.1:6379/abc")
    assert RedisStore(uri="redis://127.0.0.1:6379/1").redis_prefix == "anystore"


# ---- the anystore 1.2 line's uri: `redis://host/DB/PREFIX`; bare keys -----------------------------


def _db_url(redis_url: str, db: int) -> str:
    """`redis_url` on database `db` (the test server's own database replaced)."""
    base = redis_url.split("://", 1)[1].split("/", 1)[0]
    return f"redis://{base}/{db}"


@pytest.fixture
def db9(redis_url) -> Iterator[tuple[str, object]]:
    """Database 9 of the test server and a raw client on it; every name a test leaves is removed
    by the test's own unique prefix."""
    import redis

    url = _db_url(redis_url, 9)
    client = redis.Redis.from_url(url)
    yield url, client
    client.close()


def test_uri_path_after_the_database_is_the_key_prefix(db9, cli):
    url, raw = db9
    prefix = f"{unique()}/nested"
    try:
        done = cli("-s", f"{url}/{prefix}", "put", "a/b", "hello")
        assert done.returncode == 0, done.stderr
        assert raw.get(f"{prefix}/a/b".encode()) == b"hello"
        listed = cli("-s", f"{url}/{prefix}", "keys")
        assert (listed.returncode, listed.stdout) == (0, b"a/b\n")
        got = cli("-s", f"{url}/{prefix}/", "get", "a/b")
        assert (got.returncode, got.stdout) == (0, b"hello")
        # the same store named by `redis_prefix`
        same = cli("-s", url, "-b", f"redis_prefix={prefix}", "get", "a/b")
        assert (same.returncode, same.stdout) == (0, b"hello")
    finally:
        _redis_cleanup(url, prefix.split("/")[0])


def test_uri_prefix_and_another_redis_prefix_are_refused(db9, cli):
    url, _ = db9
    done = cli("-s", f"{url}/one", "-b", "redis_prefix=two", "keys")
    assert done.returncode == 2
    assert b"`one`" in done.stderr and b"`two`" in done.stderr


def test_uri_path_that_is_no_database_number_is_refused(redis_url, cli):
    base = redis_url.split("://", 1)[1].split("/", 1)[0]
    done = cli("-s", f"redis://{base}/cache/x", "keys")
    assert done.returncode == 2
    assert b"database number" in done.stderr


def test_bare_keys_keep_timestamps_in_one_hash_not_beside_the_value(db9, cli):
    """With no prefix every string name is a key to a program listing the database (anystore
    1.2 lists `redis://host/DB` so): the timestamps are fields of one NUL-led hash."""
    from anystore_cli.backends.redis import STAMP_HASH

    url, raw = db9
    key = f"{unique()}/k"
    try:
        assert cli("-s", url, "-b", "redis_prefix=", "put", key, "v").returncode == 0
        names = sorted(raw.scan_iter(match=b"*" + key.encode() + b"*"))
        assert names == [key.encode()]
        assert raw.type(STAMP_HASH) == b"hash" and raw.hexists(STAMP_HASH, key)
        info = cli("-s", url, "-b", "redis_prefix=", "info", key, "--json")
        assert b'"created_at":"20' in info.stdout and b'"size":1' in info.stdout
        listed = cli("-s", url, "-b", "redis_prefix=", "keys", "--prefix", key)
        assert listed.stdout == key.encode() + b"\n"
        # a value with a ttl gets no timestamps (a hash field would outlive it)
        assert cli("-s", url, "-b", "redis_prefix=", "put", "--ttl", "60", key, "w").returncode == 0
        assert not raw.hexists(STAMP_HASH, key)
        assert cli("-s", url, "-b", "redis_prefix=", "rm", key).returncode == 0
        assert raw.exists(key) == 0
    finally:
        raw.delete(key)
        raw.hdel(STAMP_HASH, key)


# ---- a streamed write longer than the upload key's lifetime ------------------------------------


class _AgingSource(io.RawIOBase):
    """Chunks of a value; before each chunk after the second it ages the store's upload key as
    if its lifetime had nearly run out (`pexpire` to `left_ms`), and records what the key had
    left then, or drops the key (`drop_at`: the chunk before which it expires)."""

    def __init__(self, raw, store, chunks: list[bytes], left_ms: int = 50, drop_at: int | None = None) -> None:
        super().__init__()
        self.raw, self.store, self.chunks = raw, store, list(chunks)
        self.left_ms, self.drop_at, self.served, self.seen_ttls = left_ms, drop_at, 0, []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.chunks:
            return b""
        if self.served >= 2:
            (upload,) = list(self.raw.scan_iter(match=f"{self.store.redis_prefix}\x00\x00*".encode()))
            if self.served == self.drop_at:
                self.raw.delete(upload)
            else:
                self.seen_ttls.append(self.raw.pttl(upload))
                self.raw.pexpire(upload, self.left_ms)
        self.served += 1
        return self.chunks.pop(0)


def test_streamed_upload_renews_its_lifetime_with_each_chunk(store, raw, monkeypatch):
    from anystore_cli.backends import redis as backend
    from anystore_cli.store.io import CHUNK_SIZE

    monkeypatch.setattr(backend, "UPLOAD_TTL", 30)
    chunks = [bytes([i]) * CHUNK_SIZE for i in range(5)]
    source = _AgingSource(raw, store, chunks)
    assert store.put_stream("long", source) == 5 * CHUNK_SIZE
    assert store.get("long", serialization_mode="raw") == b"".join(chunks)
    # each chunk gave the upload its whole lifetime again (it had been aged to 50 ms)
    assert len(source.seen_ttls) == 3
    assert all(left > 1000 for left in source.seen_ttls[1:]), source.seen_ttls


def test_streamed_upload_that_expired_fails_and_stores_nothing(store, raw):
    """APPEND to an expired upload would start it again from that chunk: the write fails
    instead, and the old value stays."""
    from anystore_cli.store.io import CHUNK_SIZE

    store.put("long", b"old", serialization_mode="raw")
    chunks = [bytes([i]) * CHUNK_SIZE for i in range(5)]
    with pytest.raises(StoreError, match="upload expired"):
        store.put_stream("long", _AgingSource(raw, store, chunks, drop_at=3))
    assert store.get("long", serialization_mode="raw") == b"old"
    assert not list(raw.scan_iter(match=f"{store.redis_prefix}\x00\x00*".encode()))


# ---- names that hold a hash or a list ------------------------------------------------------------


@pytest.fixture
def mixed(store, raw, cli) -> tuple[list[str], object]:
    """A store holding a value `s`, a hash `h` and a list `l` (as other programs write them),
    and a function running the CLI on it."""
    prefix = store.redis_prefix
    store.put("s", b"val", serialization_mode="raw")
    raw.hset(f"{prefix}/h", mapping={"f": "v"})
    raw.rpush(f"{prefix}/l", "a", "b")
    base = ["-s", store.uri, "-b", f"redis_prefix={prefix}"]

    def run(*args: str):
        return cli(*base, *args)

    return base, run


def test_keys_lists_other_types_with_their_type(mixed):
    _, run = mixed
    plain = run("keys", "--sort")
    assert (plain.returncode, plain.stdout) == (0, b"h\nl\ns\n")
    records = {}
    listed = run("keys", "--json")
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        record = json.loads(line)
        records[record["key"]] = record
    assert records["h"]["type"] == "hash" and records["h"]["size"] is None
    assert records["l"]["type"] == "list"
    assert "type" not in records["s"] and records["s"]["size"] == 3
    long = run("keys", "-l", "--sort")
    assert long.returncode == 0, long.stderr
    rows = [line.split(b"\t") for line in long.stdout.splitlines()]
    assert [(row[0], row[2]) for row in rows] == [(b"hash", b"h"), (b"list", b"l"), (b"3", b"s")]


def test_dump_and_mirror_skip_other_types_with_a_count(mixed, tmp_path):
    base, run = mixed
    dumped = run("dump")
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout == b'{"key":"s","value":"val"}\n'
    assert b"skipped 2 keys that are not values (Redis hash, list)" in dumped.stderr
    target = tmp_path / "copy"
    mirrored = run("mirror", "-i", base[1], "--input-config", base[3], "-o", str(target))
    assert mirrored.returncode == 0, mirrored.stderr
    assert sorted(p.name for p in target.iterdir()) == ["s"]
    assert b"skipped 2 keys that are not values (Redis hash, list)" in mirrored.stderr


@pytest.mark.parametrize("command", ["get", "info", "pop", "checksum"])
def test_get_or_info_of_a_hash_says_what_it_is(mixed, raw, store, command):
    _, run = mixed
    done = run(command, "h")
    assert done.returncode == 2
    assert done.stderr.startswith(b"anystore: error: `h` in store")
    assert b"is a Redis hash, not a value" in done.stderr
    assert raw.type(f"{store.redis_prefix}/h") == b"hash"  # pop left it alone


def test_an_unknown_query_option_of_the_uri_is_a_bad_uri(redis_url):
    """redis-py passes query options it does not know to the connection, which failed with a
    TypeError on first use (exit 3): it is a usage error naming the option."""
    base = redis_url.rsplit("/", 1)[0]
    proc = run_cli("-s", f"{base}/0?x=1&health_check_interval=3", "get", "k")
    assert proc.returncode == 2, proc.stderr
    assert b"unknown query option `x`" in proc.stderr
    proc = run_cli("-s", f"{base}/0?health_check_interval=3", "exists", "never-there")
    assert proc.returncode == 1, proc.stderr
