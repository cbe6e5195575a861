"""The backend contract suite (`anystore_cli.testing`), run against every backend of the project.

A backend differs only where the contract says it may: zip is append-only, ttl exists on
memory, redis and sql, and file-like stores open child stores by uri.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import pytest

from anystore_cli.core import ReadOnlyError
from anystore_cli.testing import BackendContract, MakeStore
from tests.conftest import ALL_BACKENDS, TTL_BACKENDS, StoreFactory


class OwnBackend(BackendContract):
    """The contract on one of the project's backends, its stores made by `store_factory`."""

    backend: ClassVar[str]

    @pytest.fixture
    def make_store(self, store_factory: StoreFactory) -> MakeStore:
        """Fresh stores of this backend."""
        return functools.partial(store_factory, self.backend)


class TestMemory(OwnBackend):
    backend = "memory"
    supports_ttl = True

    def readonly_view(self, store: Any) -> Any:
        # each memory store has its own keys: a copy shares them
        return store.model_copy(update={"readonly": True})


class TestLocal(OwnBackend):
    backend = "local"
    child_stores_by_uri = True


class TestZip(OwnBackend):
    backend = "zip"
    append_only = True
    child_stores_by_uri = True


class TestSqlite(OwnBackend):
    backend = "sqlite"
    supports_ttl = True


class TestPostgres(OwnBackend):
    backend = "postgres"
    supports_ttl = True


class TestMysql(OwnBackend):
    backend = "mysql"
    supports_ttl = True


class TestRedis(OwnBackend):
    backend = "redis"
    supports_ttl = True


class TestS3(OwnBackend):
    backend = "s3"
    child_stores_by_uri = True


def test_every_backend_runs_the_contract() -> None:
    classes = [cls for cls in globals().values() if isinstance(cls, type) and issubclass(cls, OwnBackend)]
    ran = {cls.backend: cls for cls in classes if cls is not OwnBackend}
    assert sorted(ran) == sorted(ALL_BACKENDS)
    assert {name for name, cls in ran.items() if cls.supports_ttl} == TTL_BACKENDS


def test_zip_is_append_only(store_factory):
    store = store_factory("zip")
    store.put("a", 1)
    with pytest.raises(ReadOnlyError):
        store.put("a", 2)
    with pytest.raises(ReadOnlyError):
        store.delete("a")
    store.put("b", 2)
    assert store.get("a") == 1 and store.get("b") == 2
    import zipfile

    with zipfile.ZipFile(store.uri[len("file://") :]) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["a", "b"]
