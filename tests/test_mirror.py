"""Mirroring keys between stores: local -> s3 -> sqlite -> local, skips, retries, failures."""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path
from typing import IO, Any, ClassVar

import pytest

from anystore_cli.backends.memory import MemoryStore
from anystore_cli.core import get_store
from anystore_cli.services.mirror import MirrorStatus, mirror
from tests.conftest import make_bucket, s3_options, unique


def _fill_local(root: Path) -> dict[str, bytes]:
    """A local store's worth of keys: nested, special characters, binary, empty, 6 MiB."""
    values: dict[str, bytes] = {f"docs/{i:03d}.txt": f"document {i}\n".encode() for i in range(60)}
    values.update(
        {
            "bin/blob": bytes(range(256)) * 16,
            "bin/empty": b"",
            "deep/a/b/c/d.json": b'{"deep": true}',
            "sp ace/x y": b"spaced",
            "\u00fcn\u00ef/c\u00f6d\u00e9": "unicode \u2713".encode(),
            "100%": b"percent",
            "big/value": hashlib.sha256(b"seed").digest() * (6 * 1024 * 1024 // 32),
        }
    )
    store = get_store(str(root), serialization_mode="raw")
    for key, value in values.items():
        store.put(key, value)
    return values


def _contents(store: Any) -> dict[str, bytes]:
    return {key: store.get(key, serialization_mode="raw") for key in store.iterate_keys()}


def test_mirror_local_s3_sqlite_local_keeps_every_key_and_value(tmp_path, s3_server):
    values = _fill_local(tmp_path / "origin")
    bucket = unique("m")
    make_bucket(s3_server, bucket)
    hops = [
        get_store(str(tmp_path / "origin")),
        get_store(f"s3://{bucket}/mirrored", backend_config=s3_options(s3_server)),
        get_store(f"sqlite:///{tmp_path / 'mirror.db'}"),
        get_store(str(tmp_path / "back")),
    ]
    for source, target in zip(hops, hops[1:], strict=False):
        status = mirror(source, target, workers=4)
        assert (status.mirrored, status.skipped, status.failed) == (len(values), 0, 0), status
        assert status.bytes == sum(len(v) for v in values.values())
        assert _contents(target) == values
    # a second run finds everything in place
    again = mirror(hops[0], hops[1], workers=4)
    assert (again.mirrored, again.skipped, again.failed) == (0, len(values), 0)


def test_existing_keys_are_skipped_with_ignore_existing_and_copied_with_overwrite(tmp_path, s3_server):
    bucket = unique("m")
    make_bucket(s3_server, bucket)
    source = get_store(str(tmp_path / "src"), serialization_mode="raw")
    target = get_store(f"s3://{bucket}", backend_config=s3_options(s3_server), serialization_mode="raw")
    for i in range(10):
        source.put(f"k{i}", f"new {i}".encode())
    target.put("k0", b"old")
    seen: list[tuple[str, str]] = []
    status = mirror(source, target, ignore_existing=True, on_progress=lambda key, outcome: seen.append((key, outcome)))
    assert (status.mirrored, status.skipped, status.failed) == (9, 1, 0)
    assert ("k0", "skipped") in seen and len(seen) == 10
    assert target.get("k0") == b"old"
    status = mirror(source, target, overwrite=True, workers=3)
    assert (status.mirrored, status.skipped) == (10, 0)
    assert target.get("k0") == b"new 0"


def test_dry_run_copies_nothing(tmp_path):
    source = get_store("memory://" + unique())
    target = get_store(str(tmp_path / "t"))
    source.put_many({"a": 1, "b": 2, "c/d": 3})
    target.put("a", 1)
    status = mirror(source, target, dry_run=True)
    assert (status.mirrored, status.skipped, status.failed) == (2, 1, 0)
    assert list(target.iterate_keys()) == ["a"]


def test_filters_and_explicit_keys(tmp_path):
    source = get_store("memory://" + unique())
    source.put_many({f"{d}/{i}.{ext}": i for d in ("x", "y") for i in range(5) for ext in ("json", "txt")})
    target = get_store("memory://" + unique())
    assert mirror(source, target, glob="x/*.json").mirrored == 5
    assert mirror(source, target, prefix="y/", exclude_prefix="y/1").mirrored == 8
    assert sorted(target.iterate_keys(prefix="y/")) == sorted(
        f"y/{i}.{e}" for i in (0, 2, 3, 4) for e in ("json", "txt")
    )
    status = mirror(source, target, keys=["x/0.json", "x/0.txt", "missing"], ignore_existing=True)
    assert (status.mirrored, status.skipped, status.failed) == (1, 1, 1)
    assert status.errors[0][0] == "missing"


class FlakyStore(MemoryStore):
    """A memory store whose writes fail: once for every key in `flaky`, always for `broken`."""

    flaky: ClassVar[set[str]] = set()
    broken: ClassVar[set[str]] = set()
    attempts: ClassVar[dict[str, int]] = {}
    lock: ClassVar[Any] = threading.Lock()

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        with self.lock:
            self.attempts[key] = self.attempts.get(key, 0) + 1
            attempt = self.attempts[key]
        if key in self.broken or (key in self.flaky and attempt == 1):
            raise ConnectionResetError(f"connection reset while writing {key}")
        return super()._write_stream(key, source, ttl=ttl, no_clobber=no_clobber)

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        # a batch fails as its worst key would (the mirror then writes each key on its own)
        with self.lock:
            failing = [
                key for key, _ in items if key in self.broken or (key in self.flaky and not self.attempts.get(key))
            ]
        if failing:
            raise ConnectionResetError(f"connection reset while writing {failing[0]}")
        super()._put_many(items, ttl=ttl)


def test_transient_failure_is_retried_and_a_broken_key_does_not_stop_the_rest(monkeypatch):
    monkeypatch.setattr(sys.modules["anystore_cli.services.retry"], "RETRY_DELAY", 0.01)
    source = get_store("memory://" + unique())
    source.put_many({f"k{i:02d}": f"v{i}" for i in range(30)})
    FlakyStore.flaky = {"k03", "k07", "k20"}
    FlakyStore.broken = {"k11"}
    FlakyStore.attempts = {}
    target = FlakyStore(uri="memory://" + unique())
    status = mirror(source, target, workers=4, retries=3)
    assert isinstance(status, MirrorStatus)
    assert (status.mirrored, status.skipped, status.failed) == (29, 0, 1)
    assert [key for key, _ in status.errors] == ["k11"]
    assert "connection reset" in status.errors[0][1]
    assert FlakyStore.attempts["k03"] == 2 and FlakyStore.attempts["k11"] == 3
    assert sorted(target.iterate_keys()) == sorted(f"k{i:02d}" for i in range(30) if i != 11)
    assert target.get("k07") == "v7"


def test_mirror_to_a_missing_bucket_creates_it_unless_create_is_off(tmp_path, s3_server):
    from anystore_cli.core import StoreError

    source = get_store(str(tmp_path / "src"))
    source.put("k", "v")
    bucket = unique("missing")
    target = get_store(f"s3://{bucket}/sub", backend_config=s3_options(s3_server))
    for options in ({}, {"overwrite": True}):
        with pytest.raises(StoreError, match=f"bucket `{bucket}` does not exist"):
            mirror(source, target, create=False, **options)
    status = mirror(source, target, dry_run=True)  # a dry run creates nothing
    assert (status.mirrored, status.created) == (1, False)
    with pytest.raises(StoreError, match="does not exist"):
        list(target.iterate_keys())
    status = mirror(source, target)
    assert (status.mirrored, status.failed, status.created) == (1, 0, True)
    assert get_store(f"s3://{bucket}/sub", backend_config=s3_options(s3_server)).get("k") == "v"
