"""The store's layers: every backend declares `Capabilities` once, every listing is an adapter
over one batched primitive (`_list`), and the local folder backend is no fsspec store."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anystore_cli.store.base import BaseStore, Capabilities, KeyEntry
from anystore_cli.store.entry import BaseStats

BACKEND_CLASSES = [
    "anystore_cli.backends.local:LocalStore",
    "anystore_cli.backends.fs:Store",
    "anystore_cli.backends.memory:MemoryStore",
    "anystore_cli.backends.zip:ZipStore",
    "anystore_cli.backends.redis:RedisStore",
    "anystore_cli.backends.sql:SqlStore",
    "anystore_cli.backends.http_client:ServedStore",
]


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("target", BACKEND_CLASSES)
def test_every_backend_declares_frozen_capabilities(target: str) -> None:
    cls = _load(target)
    caps = cls.capabilities
    assert isinstance(caps, Capabilities)
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.ttl = not caps.ttl  # type: ignore[misc]


def test_capabilities_say_what_each_backend_can_do() -> None:
    caps = {target.rsplit(":", 1)[1]: _load(target).capabilities for target in BACKEND_CLASSES}
    assert {name for name, c in caps.items() if c.ttl} == {"MemoryStore", "RedisStore", "SqlStore"}
    assert {name for name, c in caps.items() if c.append_only} == {"ZipStore"}
    assert {name for name, c in caps.items() if c.server_copy} == {"Store", "RedisStore", "SqlStore"}
    assert {name for name, c in caps.items() if c.md5} == {"Store", "SqlStore"}
    assert not caps["ZipStore"].leases and not caps["ServedStore"].leases
    assert caps["ZipStore"].mtime_precision == 2.0 and caps["Store"].mtime_precision == 1.0


class DictBackend(BaseStore):
    """A backend that lists the old way: keys one by one, metadata per key."""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self.data: dict[str, bytes] = {}
        self.kinds: dict[str, str] = {}

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kw: Any) -> None:
        self.data[key] = value

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        if key not in self.data:
            if raise_on_nonexist:
                raise self._missing(key)
            return None
        return self.data[key]

    def _exists(self, key: str) -> bool:
        return key in self.data or key in self.kinds

    def _delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    def _info(self, key: str) -> BaseStats:
        if key in self.kinds:
            stats = BaseStats.make(None, None, None)  # type: ignore[arg-type]
            stats._extra = {"value_type": self.kinds[key]}
            return stats
        if key not in self.data:
            raise self._missing(key)
        return BaseStats(size=len(self.data[key]), created_at=1.0, updated_at=2.0)

    def _iterate_keys(self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None):  # noqa: ANN201
        for key in sorted({*self.data, *self.kinds}):
            if not prefix or key.startswith(prefix):
                yield key


class ListBackend(DictBackend):
    """A backend that lists the new way: only `_list`, in batches of two."""

    _iterate_keys = BaseStore._iterate_keys  # the contract's adapter over `_list`

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        self.__dict__.setdefault("calls", []).append(detail)
        keys = [key for key in sorted(self.data) if not prefix or key.startswith(prefix)]
        for start in range(0, len(keys), 2):
            batch = keys[start : start + 2]
            yield [KeyEntry(k, len(self.data[k]), 2.0, None, 1.0) for k in batch] if detail else batch


@pytest.mark.parametrize("cls", [DictBackend, ListBackend])
def test_every_listing_is_the_same_listing(cls: type[DictBackend]) -> None:
    store = cls(uri="memory://layers")
    for key in ("a/1", "a/2", "a/3", "b/1"):
        store.put(key, key.encode(), serialization_mode="raw")
    keys = ["a/1", "a/2", "a/3"]
    assert list(store.iterate_keys(prefix="a/")) == keys
    assert [k for batch in store.iterate_key_batches(prefix="a/") for k in batch] == keys
    entries = list(store.iterate_entries(prefix="a/"))
    assert [e.key for e in entries] == keys
    assert {(e.size, e.mtime, e.created) for e in entries} == {(3, 2.0, 1.0)}
    infos = list(store.iterate_infos(prefix="a/"))
    assert [(s.key, s.size, s.created_at.timestamp(), s.updated_at.timestamp()) for s in infos] == [
        (k, 3, 1.0, 2.0) for k in keys
    ]
    assert [k for batch in store.iterate_entry_batches(prefix="a/", shard="0/1") for k, *_ in batch] == keys
    assert store.entry("a/1") == KeyEntry("a/1", 3, 2.0, None, 1.0)
    assert store.entry("nope") is None


def test_a_backend_with_only_list_is_listed_in_its_batches() -> None:
    store = ListBackend(uri="memory://batches")
    for key in ("k1", "k2", "k3"):
        store.put(key, b"x", serialization_mode="raw")
    assert list(store.iterate_key_batches()) == [["k1", "k2"], ["k3"]]
    assert [len(batch) for batch in store.iterate_entry_batches()] == [2, 1]
    assert store.calls == [False, True]


def test_names_that_hold_no_value_are_counted_not_listed_as_entries() -> None:
    store = DictBackend(uri="memory://kinds")
    store.put("v", b"value", serialization_mode="raw")
    store.kinds["h"] = "hash"
    assert [e.key for e in store.iterate_entries()] == ["v"]
    assert store.skipped_non_values == {"hash": 1}
    # the metadata listing shows them, with their kind
    assert [(s.key, s.size) for s in store.iterate_infos()] == [("h", None), ("v", 5)]


def test_entry_of_one_key_in_a_zip_archive(tmp_path: Path) -> None:
    from anystore_cli.backends.zip import ZipStore

    store = ZipStore(uri=str(tmp_path / "a.zip"))
    store.put("k", b"value", serialization_mode="raw")
    entry = store.entry("k")
    assert entry is not None and entry.key == "k" and entry.size == 5
    assert store.entry("missing") is None


def test_the_fsspec_store_never_lists_lock_leases_with_or_without_details(tmp_path: Path) -> None:
    from anystore_cli.backends.fs import LOCK_FOLDER, Store

    class FsspecFolder(Store):
        """The fsspec store over a local folder (not the plain-`os` LocalStore)."""

    (tmp_path / "k").write_bytes(b"v")
    (tmp_path / LOCK_FOLDER).mkdir()
    (tmp_path / LOCK_FOLDER / "lease").write_bytes(b"{}")
    store = FsspecFolder(uri=str(tmp_path))
    assert list(store.iterate_keys()) == ["k"]
    assert [e.key for e in store.iterate_entries()] == ["k"]
    assert [s.key for s in store.iterate_infos()] == ["k"]


def test_the_local_store_is_no_fsspec_store(tmp_path: Path) -> None:
    from anystore_cli.backends.filelike import FileLikeStore
    from anystore_cli.backends.fs import Store
    from anystore_cli.backends.local import LocalStore
    from anystore_cli.backends.objectstore import ObjectStoreMixin

    assert issubclass(LocalStore, FileLikeStore) and issubclass(Store, FileLikeStore)
    assert not issubclass(LocalStore, Store) and not issubclass(LocalStore, ObjectStoreMixin)
    for name in ("create_bucket", "_check_bucket", "_list_s3_items", "_server_copy", "_fs", "storage_options"):
        assert name not in dir(LocalStore) or getattr(LocalStore, name) is getattr(BaseStore, name, None)
    made = Store(uri=str(tmp_path))  # a local path given to the fsspec store is the local store
    assert type(made) is LocalStore and made.root == str(tmp_path)
    made.put("k", b"v", serialization_mode="raw")
    assert made.get("k", serialization_mode="raw") == b"v"


LISTINGS = ["iterate_key_batches", "iterate_keys", "iterate_entry_batches", "iterate_entries", "iterate_infos"]
CRITERIA_TEXT = (
    "prefix: 'str | None' = None, exclude_prefix: 'str | None' = None, glob: 'str | None' = None, "
    "include: 'Iterable[str] | str | None' = None, exclude: 'Iterable[str] | str | None' = None, "
    "shard: 'str | tuple[int, int] | None' = None, filters: 'Iterable[str] | None' = None"
)


@pytest.mark.parametrize("name", LISTINGS)
def test_the_listings_show_their_criteria_as_written_out_parameters(name: str) -> None:
    # one list of criteria serves every listing; signature, help() and docstring are unchanged
    import inspect
    import pydoc

    from anystore_cli.backends.memory import MemoryStore

    method = getattr(MemoryStore(uri="memory://"), name)
    md5 = ", md5: 'bool' = False" if "entr" in name else ""
    assert str(inspect.signature(method)).startswith(f"({CRITERIA_TEXT}{md5}) -> 'Generator[")
    shown = pydoc.render_doc(method, renderer=pydoc.plaintext)
    assert f"{name}({CRITERIA_TEXT}{md5})" in shown
    doc = inspect.getdoc(method)
    assert doc and doc.splitlines()[0] in shown and doc.splitlines()[-1] in shown


def test_the_listings_take_their_criteria_by_position_or_name() -> None:
    from anystore_cli.backends.memory import MemoryStore

    store = MemoryStore(uri="memory://")
    for key in ("a/1", "a/2", "a/x/3", "b/4"):
        store.put(key, b"v")
    assert list(store.iterate_keys("a/", "a/x")) == ["a/1", "a/2"]
    assert list(store.iterate_keys(prefix="a/", exclude_prefix="a/x")) == ["a/1", "a/2"]
    assert [entry.key for entry in store.iterate_entries("a", None, None, None, None, None, ["- **/2"], True)] == [
        "a/1",
        "a/x/3",
    ]
    assert [stats.key for stats in store.iterate_infos(glob="**/3")] == ["a/x/3"]
    with pytest.raises(TypeError):
        store.iterate_keys(nonsense=1)
    with pytest.raises(TypeError):
        store.iterate_keys("a", prefix="b")
