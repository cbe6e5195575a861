"""The backend contract: one set of behaviours every store must show, importable by anyone
who registers a backend (as fsspec ships `fsspec.tests.abstract`).

Subclass `BackendContract` in a test module (its name starting with `Test`) and give it a
`make_store` fixture: a callable taking store options (`serialization_mode`,
`raise_on_nonexist`, `default_ttl`) and returning a fresh, empty store of the backend. Class
attributes say where the backend may differ from the rest (see docs/testing.md).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import pytest

from anystore_cli.core import (
    AlreadyExists,
    DoesNotExist,
    InvalidKey,
    ReadOnlyError,
    Stats,
    get_store,
    join_uri,
)

MakeStore = Callable[..., Any]
"""`make_store(**options)`: a fresh, empty store of the backend under test"""

SPECIAL_KEYS = [
    *["100%", "1_0", "a*b", "a?b", "a[b]c", "sp ace/x y"],
    *["ünï/cödé", "back\\slash", "per%25cent", "ab", "a%b"],
]
"""Keys whose characters mean something to globs, SQL LIKE or urls: each must match only itself"""


def _keyset(store: Any) -> None:
    for key in ["foo/bar/baz", "foo/bar/qux.json", "foo/other/baz", "baz", "top.json", "food/x"]:
        store.put(key, key)


class BackendContract:
    """The contract tests, collected in every `Test*` subclass that gives a `make_store` fixture.

    Attributes:
        supports_ttl: the backend expires keys (`ttl=`, `default_ttl`); others accept and ignore
            a ttl
        append_only: keys, once written, are never overwritten or deleted (zip): writes over
            a key and deletes raise ReadOnlyError
        child_stores_by_uri: a store opened at `STORE_URI/foo` sees the keys under `foo/`
            (file-like backends)
    """

    supports_ttl: ClassVar[bool] = False
    append_only: ClassVar[bool] = False
    child_stores_by_uri: ClassVar[bool] = False

    @pytest.fixture
    def store(self, make_store: MakeStore) -> Any:
        """A fresh, empty store of the backend."""
        return make_store()

    def readonly_view(self, store: Any) -> Any:
        """A read-only store over the same keys as `store`; a backend whose stores do not share
        keys through their uri (memory) overrides this."""
        return get_store(uri=store.uri, backend_config=store.backend_config, readonly=True)

    def test_put_get_str_roundtrip(self, store: Any) -> None:
        store.put("test", "foo")
        assert store.get("test") == "foo"
        assert store.get("test", mode="r") == "foo"
        assert store.get("test", serialization_mode="raw") == b"foo"

    @pytest.mark.parametrize(
        "value",
        [1, 0, -5, 3.5, True, False, None, {"a": [1, 2, {"b": None}]}, [1, "two", 3.0], "ünïcödé"],
        ids=["int", "zero", "neg", "float", "true", "false", "none", "dict", "list", "unicode"],
    )
    def test_auto_mode_roundtrips_python_values(self, store: Any, value: Any) -> None:
        store.put("value", value)
        assert store.get("value") == value
        assert type(store.get("value")) is type(value)

    def test_bytes_roundtrip_exactly_in_raw_mode(self, store: Any) -> None:
        data = b"a\x00b\xff\xfe no newline"
        store.put("bin", data, serialization_mode="raw")
        assert store.get("bin", serialization_mode="raw") == data
        # auto mode keeps undecodable bytes as bytes
        assert store.get("bin") == data

    def test_datetime_roundtrip(self, store: Any) -> None:
        now = datetime.now()
        store.put("auto", now)
        assert datetime.fromisoformat(store.get("auto")) == now
        store.put("pickled", now, serialization_mode="pickle")
        assert store.get("pickled", serialization_mode="pickle") == now

    def test_json_and_pickle_modes(self, store: Any) -> None:
        store.put("j", {"x": 1}, serialization_mode="json")
        assert store.get("j", serialization_mode="raw") == b'{"x":1}'
        assert store.get("j", serialization_mode="json") == {"x": 1}
        store.put("p", {1, 2, 3}, serialization_mode="pickle")
        assert store.get("p", serialization_mode="pickle") == {1, 2, 3}

    def test_pydantic_model_roundtrip(self, store: Any) -> None:
        pydantic = pytest.importorskip("pydantic")

        class Item(pydantic.BaseModel):
            name: str
            when: datetime

        item = Item(name="x", when=datetime(2024, 1, 2, 3, 4, 5))
        store.put("model", item)
        assert Item(**store.get("model")) == item
        assert store.get("model", model=Item) == item
        store.put("model2", item, model=Item)
        assert store.get("model2", model=Item) == item

    def test_serialization_functions(self, store: Any) -> None:
        store.put("seri", "HELLO", serialization_func=lambda x: x.lower().encode())
        assert store.get("seri") == "hello"
        assert store.get("seri", deserialization_func=lambda x: x.decode().upper()) == "HELLO"

    def test_store_level_serialization_mode(self, make_store: MakeStore) -> None:
        store = make_store(serialization_mode="raw")
        store.put("k", b"1")
        assert store.get("k") == b"1"

    def test_missing_key_raises_or_returns_none(self, make_store: MakeStore) -> None:
        store = make_store()
        with pytest.raises(DoesNotExist):
            store.get("nothing")
        assert store.get("nothing", raise_on_nonexist=False) is None
        assert store.exists("nothing") is False
        silent = make_store(raise_on_nonexist=False)
        assert silent.get("nothing") is None
        with pytest.raises(DoesNotExist):
            silent.get("nothing", raise_on_nonexist=True)

    def test_overwrite(self, store: Any) -> None:
        if self.append_only:
            pytest.skip("the store is append-only")
        store.put("k", "one")
        store.put("k", "two")
        assert store.get("k") == "two"

    def test_no_clobber_refuses_existing_key(self, store: Any) -> None:
        store.put("k", "one", no_clobber=True)
        with pytest.raises(AlreadyExists):
            store.put("k", "two", no_clobber=True)
        assert store.get("k") == "one"

    def test_exists_and_delete(self, store: Any) -> None:
        store.put("foo/bar/baz", 1)
        assert store.exists("foo/bar/baz") is True
        assert store.exists("foo/bar") is False
        if self.append_only:
            with pytest.raises(ReadOnlyError):
                store.delete("foo/bar/baz")
            return
        assert store.delete("foo/bar/baz") is True
        assert store.exists("foo/bar/baz") is False
        assert store.delete("foo/bar/baz") is False
        assert list(store.iterate_keys()) == []

    def test_pop(self, store: Any) -> None:
        store.put("popped", 1)
        if self.append_only:
            with pytest.raises(ReadOnlyError):
                store.pop("popped")
            return
        assert store.pop("popped") == 1
        assert store.get("popped", raise_on_nonexist=False) is None
        with pytest.raises(DoesNotExist):
            store.pop("popped")
        assert store.pop("popped", raise_on_nonexist=False) is None
        store.put("p2", "HELLO")
        assert store.pop("p2", deserialization_func=lambda x: x.decode().lower()) == "hello"

    def test_iterate_keys_prefix_exclude_glob(self, store: Any) -> None:
        _keyset(store)
        assert sorted(store.iterate_keys()) == sorted(
            ["foo/bar/baz", "foo/bar/qux.json", "foo/other/baz", "baz", "top.json", "food/x"]
        )
        assert sorted(store.iterate_keys(prefix="foo/")) == ["foo/bar/baz", "foo/bar/qux.json", "foo/other/baz"]
        assert sorted(store.iterate_keys(prefix="foo/bar")) == ["foo/bar/baz", "foo/bar/qux.json"]
        assert sorted(store.iterate_keys(prefix="foo")) == [
            "foo/bar/baz",
            "foo/bar/qux.json",
            "foo/other/baz",
            "food/x",
        ]
        assert sorted(store.iterate_keys(exclude_prefix="foo")) == ["baz", "top.json"]
        assert sorted(store.iterate_keys(prefix="foo/", exclude_prefix="foo/bar")) == ["foo/other/baz"]
        assert sorted(store.iterate_keys(glob="*/bar/*")) == ["foo/bar/baz", "foo/bar/qux.json"]
        assert sorted(store.iterate_keys(glob="**/baz")) == ["baz", "foo/bar/baz", "foo/other/baz"]
        assert sorted(store.iterate_keys(glob="*.json")) == ["top.json"]
        assert sorted(store.iterate_keys(glob="**/*.json")) == ["foo/bar/qux.json", "top.json"]
        assert sorted(store.iterate_keys(glob="foo/*/ba?")) == ["foo/bar/baz", "foo/other/baz"]
        assert sorted(store.iterate_keys(prefix="foo/", glob="**/baz")) == ["foo/bar/baz", "foo/other/baz"]
        assert list(store.iterate_keys(prefix="nothing")) == []

    def test_special_characters_match_literally(self, store: Any) -> None:
        for key in SPECIAL_KEYS:
            store.put(key, key)
        assert sorted(store.iterate_keys()) == sorted(SPECIAL_KEYS)
        for key in SPECIAL_KEYS:
            assert store.get(key) == key
            assert store.exists(key)
        assert sorted(store.iterate_keys(prefix="1_")) == ["1_0"]
        assert sorted(store.iterate_keys(prefix="100%")) == ["100%"]
        assert sorted(store.iterate_keys(prefix="a%")) == ["a%b"]
        assert sorted(store.iterate_keys(prefix="a*")) == ["a*b"]
        assert sorted(store.iterate_keys(prefix="a[")) == ["a[b]c"]
        assert sorted(store.iterate_keys(prefix="back\\")) == ["back\\slash"]
        assert sorted(store.iterate_keys(glob="a?b")) == ["a%b", "a*b", "a?b"]
        assert sorted(store.iterate_keys(glob="a[*]b")) == ["a*b"]
        assert sorted(store.iterate_keys(glob="sp ace/*")) == ["sp ace/x y"]
        assert sorted(store.iterate_keys(glob="ünï/*")) == ["ünï/cödé"]

    def test_invalid_keys_are_refused(self, store: Any) -> None:
        for key in ["../x", "a/../../x", "", "/", "a\x00b", ".."]:
            with pytest.raises(InvalidKey):
                store.put(key, "x")
            with pytest.raises(InvalidKey):
                store.get(key)

    def test_leading_slash_is_relative_to_store(self, store: Any) -> None:
        store.put("/bar/baz", 1)
        assert store.get("bar/baz") == 1
        assert store.get("/bar/baz") == 1

    def test_readonly_store_refuses_writes(self, make_store: MakeStore) -> None:
        writable = make_store()
        writable.put("k", "v")
        readonly = self.readonly_view(writable)
        assert readonly.get("k") == "v"
        for call in (
            lambda: readonly.put("k", "x"),
            lambda: readonly.delete("k"),
            lambda: readonly.pop("k"),
            lambda: readonly.touch("k2"),
            lambda: readonly.open("k", "wb"),
            lambda: readonly.put_many({"a": 1}),
            lambda: readonly.put_stream("k", io.BytesIO(b"x")),
        ):
            with pytest.raises(ReadOnlyError):
                call()
        assert writable.get("k") == "v"

    @pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
    def test_checksum_of_known_data(self, store: Any, algorithm: Any) -> None:
        data = b"hello world\n" * 1000
        store.put("data", data)
        assert store.checksum("data", algorithm) == hashlib.new(algorithm, data).hexdigest()
        assert store.checksum("data") == hashlib.sha1(data).hexdigest()
        with pytest.raises(DoesNotExist):
            store.checksum("missing")

    def test_info_fields(self, store: Any) -> None:
        store.put("foo/bar.txt", b"12345")
        info = store.info("foo/bar.txt")
        assert isinstance(info, Stats)
        assert info.size == 5
        assert info.name == "bar.txt"
        assert info.key == "foo/bar.txt"
        assert info.store == store.uri
        assert isinstance(info.updated_at, datetime)
        dumped = info.model_dump(mode="json")
        assert {"key", "name", "store", "size", "created_at", "updated_at"} <= set(dumped)
        if store.is_fslike:
            assert info.uri == join_uri(store.uri, "foo/bar.txt")
        else:
            assert info.uri == "foo/bar.txt"
        with pytest.raises(DoesNotExist):
            store.info("foo/missing")

    def test_iterate_infos_and_info_many_match_info(self, store: Any) -> None:
        values = {"a/one.txt": b"1", "a/two.bin": b"\x00" * 300, "a/sub/three": b"", "b/other": b"xyz"}
        store.put_many(values, serialization_mode="raw")
        listed = {stats.key: stats for stats in store.iterate_infos(prefix="a/")}
        assert sorted(listed) == ["a/one.txt", "a/sub/three", "a/two.bin"]
        for key, stats in listed.items():
            assert isinstance(stats, Stats)
            single = store.info(key)
            assert (stats.size, stats.name, stats.store, stats.uri) == (
                single.size,
                single.name,
                single.store,
                single.uri,
            )
            assert stats.size == len(values[key])
            assert isinstance(stats.updated_at, datetime) and isinstance(stats.created_at, datetime)
            assert abs((stats.updated_at - single.updated_at).total_seconds()) < 1
        assert [s.key for s in store.iterate_infos(glob="**/three")] == ["a/sub/three"]
        assert sorted(s.key for s in store.iterate_infos(prefix="a/", exclude_prefix="a/sub")) == [
            "a/one.txt",
            "a/two.bin",
        ]
        found = list(store.info_many(["b/other", "missing", "a/one.txt"]))
        assert [key for key, _ in found] == ["b/other", "missing", "a/one.txt"]
        assert [None if stats is None else stats.size for _, stats in found] == [3, None, 1]
        assert found[0][1].key == "b/other" and found[0][1].name == "other"

    def test_open_modes(self, store: Any) -> None:
        with store.open("t.txt", "w") as fh:
            fh.write("text ✓")
        with store.open("t.txt", "r") as fh:
            assert fh.read() == "text ✓"
        with store.open("b.bin", "wb") as fh:
            fh.write(b"\x00\x01")
            fh.write(b"\x02")
        with store.open("b.bin", "rb") as fh:
            assert fh.read() == b"\x00\x01\x02"
        with pytest.raises(DoesNotExist), store.open("missing", "rb") as fh:
            fh.read()

    def test_failed_open_write_keeps_old_value(self, store: Any) -> None:
        store.put("k", b"old", serialization_mode="raw")
        if self.append_only:
            return
        with pytest.raises(RuntimeError), store.open("k", "wb") as fh:
            fh.write(b"new partial")
            raise RuntimeError("boom")
        assert store.get("k", serialization_mode="raw") == b"old"

    def test_stream_lines(self, store: Any) -> None:
        store.put("lines", b'{"a":1}\n{"a":2}\nplain\n')
        assert list(store.stream("lines")) == [{"a": 1}, {"a": 2}, "plain\n"]
        assert list(store.stream("lines", serialization_mode="raw")) == [b'{"a":1}\n', b'{"a":2}\n', b"plain\n"]
        with pytest.raises(DoesNotExist):
            list(store.stream("missing"))
        assert list(store.stream("missing", raise_on_nonexist=False)) == []

    def test_touch(self, store: Any) -> None:
        before = datetime.now()
        stamp = store.touch("touched")
        assert before <= stamp <= datetime.now()
        assert store.exists("touched")
        assert datetime.fromisoformat(store.get("touched")) == stamp

    def test_put_many_get_many(self, store: Any) -> None:
        items = {f"bulk/{i}": {"i": i} for i in range(250)}
        assert store.put_many(items, batch_size=100) == 250
        assert sorted(store.iterate_keys(prefix="bulk/")) == sorted(items)
        got = dict(store.get_many([*items, "bulk/missing"]))
        assert got.pop("bulk/missing") is None
        assert got == items
        assert sorted(v["i"] for v in store.iterate_values(prefix="bulk/")) == list(range(250))

    def test_put_stream_large_value(self, store: Any) -> None:
        data = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
        assert store.put_stream("big", io.BytesIO(data)) == len(data)
        with store.open("big", "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(data).hexdigest()
        assert store.info("big").size == len(data)

    def test_child_store_sees_sub_keys(self, make_store: MakeStore) -> None:
        if not self.child_stores_by_uri:
            pytest.skip("child stores by uri are a file-like feature (each memory store has its own keys)")
        store = make_store()
        store.put("foo/bar/baz", 1)
        child = get_store(uri=join_uri(store.uri, "foo"), backend_config=store.backend_config)
        assert list(child.iterate_keys()) == ["bar/baz"]
        assert child.get("bar/baz") == 1

    def test_ttl_expires(self, make_store: MakeStore) -> None:
        store = make_store()
        if not self.supports_ttl:
            store.put("k", 1, ttl=1)  # accepted and ignored
            assert store.get("k") == 1
            return
        store.put("expired", 1, ttl=1)
        store.put("kept", 2)
        assert store.get("expired") == 1
        time.sleep(1.2)
        assert store.get("expired", raise_on_nonexist=False) is None
        assert store.exists("expired") is False
        assert list(store.iterate_keys()) == ["kept"]
        ttl_store = make_store(default_ttl=1)
        ttl_store.put("d", 1)
        time.sleep(1.2)
        assert ttl_store.exists("d") is False
