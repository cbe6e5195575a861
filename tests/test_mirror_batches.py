"""`mirror` and `check` move small values in batches (`get_many` / `put_many`), stream large ones
one by one, and let workers take whole batches: what each store is asked, counted."""

from __future__ import annotations

import hashlib
import sys
import threading
from typing import IO, Any, ClassVar

import pytest

from anystore_cli.backends.memory import MemoryStore
from anystore_cli.services.check import check
from anystore_cli.services.mirror import mirror
from tests.conftest import unique


class CountingStore(MemoryStore):
    """A memory store that records how its values were read and written."""

    calls: ClassVar[dict[str, list[Any]]] = {}
    lock: ClassVar[Any] = threading.Lock()

    def _note(self, what: str, detail: Any) -> None:
        with self.lock:
            self.calls.setdefault(f"{self.uri} {what}", []).append(detail)

    def _get_many(self, keys: list[str]) -> Any:
        self._note("get_many", list(keys))
        return super()._get_many(keys)

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        self._note("put_many", [key for key, _ in items])
        super()._put_many(items, ttl=ttl)

    def _open(self, key: str, mode: str = "rb", **kwargs: Any) -> Any:
        self._note("open", key)
        return super()._open(key, mode=mode, **kwargs)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        self._note("write_stream", key)
        return super()._write_stream(key, source, ttl=ttl, no_clobber=no_clobber)

    def _checksum(self, key: str, algorithm: str) -> str:
        self._note("checksum", key)
        return super()._checksum(key, algorithm)


def _store() -> CountingStore:
    return CountingStore(uri="memory://" + unique())


def _calls(store: CountingStore, what: str) -> list[Any]:
    return CountingStore.calls.get(f"{store.uri} {what}", [])


def _fill(store: CountingStore, values: dict[str, bytes]) -> None:
    store.put_many(list(values.items()), serialization_mode="raw")
    CountingStore.calls.clear()


def _contents(store: CountingStore) -> dict[str, bytes]:
    return {key: store.get(key, serialization_mode="raw") for key in store.iterate_keys()}


@pytest.mark.parametrize("workers", [1, 4])
def test_mirror_reads_and_writes_small_values_in_batches(workers):
    values = {f"k/{i:05d}": f"value {i}".encode() for i in range(2500)}
    source, target = _store(), _store()
    _fill(source, values)
    status = mirror(source, target, workers=workers)
    assert (status.mirrored, status.skipped, status.failed) == (2500, 0, 0)
    assert status.bytes == sum(len(value) for value in values.values())
    assert _contents(target) == values
    # the first key learns that no server copy is possible; every other key goes in a batch
    streamed = _calls(target, "write_stream")
    assert len(streamed) <= workers
    batches = _calls(target, "put_many")
    assert len(batches) <= 3 + workers
    written = streamed + [key for batch in batches for key in batch]
    assert sorted(written) == sorted(values)  # each key written once: workers split the batches
    assert len(_calls(source, "get_many")) <= 3 + workers
    assert len(_calls(source, "open")) <= workers


def test_mirror_streams_values_over_the_threshold_one_by_one(monkeypatch):
    monkeypatch.setattr(sys.modules["anystore_cli.services.batches"], "STREAM_OVER", 100)
    values = {f"small/{i:03d}": b"s" * 50 for i in range(300)}
    values.update({f"large/{i}": bytes([i]) * 5000 for i in range(3)})
    source, target = _store(), _store()
    _fill(source, values)
    status = mirror(source, target)
    assert (status.mirrored, status.failed) == (303, 0)
    assert _contents(target) == values
    batched = {key for batch in _calls(source, "get_many") for key in batch}
    assert not batched & {f"large/{i}" for i in range(3)}
    assert {f"large/{i}" for i in range(3)} <= set(_calls(source, "open"))
    assert {f"large/{i}" for i in range(3)} <= set(_calls(target, "write_stream"))


def test_mirror_checksum_reads_digests_in_batches_and_copies_what_differs():
    values = {f"k/{i:04d}": f"value {i:04d}".encode() for i in range(1500)}
    source, target = _store(), _store()
    _fill(source, values)
    changed = dict(values, **{"k/0007": b"VALUE 0007"})  # the same size, another value
    target.put_many(list(changed.items()), serialization_mode="raw")
    CountingStore.calls.clear()
    status = mirror(source, target, checksum=True, workers=2)
    assert (status.mirrored, status.skipped, status.failed) == (1, 1499, 0)
    assert target.get("k/0007", serialization_mode="raw") == b"value 0007"
    assert not _calls(source, "checksum") and not _calls(target, "checksum")
    assert len(_calls(source, "get_many")) <= 4 and len(_calls(target, "get_many")) <= 4


def test_check_checksum_reads_digests_in_batches():
    values = {f"k/{i:04d}": f"value {i:04d}".encode() for i in range(2100)}
    source, target = _store(), _store()
    _fill(source, values)
    target.put_many(list(dict(values, **{"k/1234": b"other 1234"}).items()), serialization_mode="raw")
    CountingStore.calls.clear()
    found: list[tuple[str, str]] = []
    status = check(
        source, target, checksum=True, on_result=lambda how, ours, theirs, error: found.append((how, ours.key))
    )
    assert (status.equal, status.differ, status.failed) == (2099, 1, 0)
    assert found == [("differ", "k/1234")]
    assert not _calls(source, "checksum") and not _calls(target, "checksum")
    assert len(_calls(source, "get_many")) == 3 and len(_calls(target, "get_many")) == 3


def test_check_checksum_compares_large_values_by_streaming(monkeypatch):
    monkeypatch.setattr(sys.modules["anystore_cli.services.batches"], "STREAM_OVER", 100)
    big = hashlib.sha256(b"x").digest() * 100
    source, target = _store(), _store()
    _fill(source, {"big": big, "small": b"tiny"})
    target.put_many([("big", big[:-1] + b"!"), ("small", b"tiny")], serialization_mode="raw")
    CountingStore.calls.clear()
    status = check(source, target, checksum=True)
    assert (status.equal, status.differ) == (1, 1)
    assert _calls(source, "checksum") == ["big"] and _calls(target, "checksum") == ["big"]


def test_mirror_into_redis_asks_about_the_batch_instead_of_scanning_the_database(redis_url):
    """SCAN walks every key of a Redis database, whatever the prefix: a mirror into a prefix of a
    large shared database asks about each batch's keys (one script call a batch) instead, and
    lists the target only where `--delete` needs its keys."""
    from anystore_cli.backends.redis import RedisStore

    class CountingRedis(RedisStore):
        scans: ClassVar[int] = 0
        asked: ClassVar[list[int]] = []

        def _iterate_keys(self, *args: Any, **kwargs: Any) -> Any:
            type(self).scans += 1
            return super()._iterate_keys(*args, **kwargs)

        def _info_many(self, keys: list[str]) -> Any:
            type(self).asked.append(len(keys))
            return super()._info_many(keys)

    source = _store()
    _fill(source, {f"k/{index:04d}": b"value %d" % index for index in range(2500)})
    target = CountingRedis(uri=redis_url, backend_config={"redis_prefix": unique("walk")})
    try:
        assert mirror(source, target).mirrored == 2500
        assert CountingRedis.scans == 0
        assert CountingRedis.asked == [1000, 1000, 500]
        assert target.get("k/0042", serialization_mode="raw") == b"value 42"

        source.put("k/0007", b"changed, and longer", serialization_mode="raw")
        status = mirror(source, target)
        assert (status.mirrored, status.skipped, CountingRedis.scans) == (1, 2499, 0)
        assert target.get("k/0007", serialization_mode="raw") == b"changed, and longer"

        target.put("k/extra", b"only in the target", serialization_mode="raw")
        status = mirror(source, target, delete=True)
        assert (status.deleted, status.skipped, CountingRedis.scans) == (1, 2500, 1)
        assert not target.exists("k/extra")
    finally:
        for key in list(target.iterate_keys()):
            target.delete(key)
