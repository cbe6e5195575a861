"""The Redis backend beyond the shared contract: layout, exact matching, ttl, failures."""

from __future__ import annotations

import hashlib
import io
import socket
import time
from collections.abc import Iterator

import pytest

from anystore_cli.backend.redis import RedisStore, escape_match
from anystore_cli.core import AlreadyExists, DoesNotExist, InvalidData, StoreError, get_store
from tests.conftest import _redis_cleanup, unique

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
