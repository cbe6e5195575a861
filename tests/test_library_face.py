"""The library face is the original's: pydantic models and settings over the byte-level
backends, the glob relative to the prefix, custom stores by the primitives, pickling."""

from __future__ import annotations

import copy
import pickle

import pydantic
import pytest

from anystore_cli.core import BaseStore, DoesNotExist, MemoryStore, Settings, Stats, StoreModel, get_store
from anystore_cli.core.store.abstract import AbstractBackend
from tests.conftest import run_cli


def test_models_are_pydantic_and_validate():
    assert issubclass(StoreModel, pydantic.BaseModel)
    assert issubclass(BaseStore, pydantic.BaseModel)
    assert issubclass(Stats, pydantic.BaseModel)
    with pytest.raises(pydantic.ValidationError):
        StoreModel(uri="memory://", readonly="notabool")
    with pytest.raises(pydantic.ValidationError):
        StoreModel(uri="memory://", serialization_mode="yaml")
    model = StoreModel.model_validate_json('{"uri": "memory://", "default_ttl": 5}')
    assert model.default_ttl == 5
    schema = StoreModel.model_json_schema()
    assert {"uri", "serialization_mode", "backend_config", "readonly"} <= set(schema["properties"])


def test_store_model_is_a_field_of_another_model():
    class Job(pydantic.BaseModel):
        store: StoreModel
        name: str

    job = Job.model_validate({"store": {"uri": "memory://", "readonly": True}, "name": "nightly"})
    assert job.store.readonly is True
    assert Job.model_validate_json(job.model_dump_json()) == job


def test_validator_on_a_store_subclass_runs():
    class PrefixedStore(MemoryStore):
        @pydantic.field_validator("default_ttl")
        @classmethod
        def at_least_a_minute(cls, value: int | None) -> int:
            return max(value or 0, 60)

    assert PrefixedStore(uri="memory://", default_ttl=5).default_ttl == 60
    assert repr(PrefixedStore(uri="memory://")).startswith("PrefixedStore(")


def test_settings_is_pydantic_settings(monkeypatch):
    from pydantic_settings import BaseSettings

    assert issubclass(Settings, BaseSettings)
    monkeypatch.setenv("ANYSTORE_URI", "memory://")
    monkeypatch.setenv("ANYSTORE_SERIALIZATION_MODE", "json")
    monkeypatch.setenv("ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX", "jobs")
    settings = Settings()
    assert settings.uri == "memory://" and settings.serialization_mode == "json"
    assert settings.backend_config == {"redis_prefix": "jobs"}
    with pytest.raises(ValueError, match="redis_prefix"):  # not an option of memory stores
        get_store()
    monkeypatch.delenv("ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX")
    store = get_store()
    assert isinstance(store, MemoryStore) and store.serialization_mode == "json"
    monkeypatch.setenv("ANYSTORE_SERIALIZATION_MODE", "yaml")
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_stores_pickle_and_copy(tmp_path, redis_url):
    local = get_store(tmp_path)
    local.put("k", {"a": 1})
    assert pickle.loads(pickle.dumps(local)).get("k") == {"a": 1}
    memory = get_store("memory://")
    memory.put("k", 1)
    assert pickle.loads(pickle.dumps(memory)).get("k") == 1  # a memory store carries its keys
    deep = copy.deepcopy(memory)
    deep.put("other", 2)
    assert not memory.exists("other")
    shallow = memory.model_copy(update={"serialization_mode": "raw"})
    assert shallow.get("k") == b"1" and memory.get("k") == 1  # shared keys, own options
    redis = get_store(redis_url, backend_config={"redis_prefix": f"face-{id(local)}"})
    redis.put("k", 1)
    try:
        assert pickle.loads(pickle.dumps(redis)).get("k") == 1
    finally:
        redis.delete("k")


def test_readonly_set_on_one_store_does_not_leak(tmp_path):
    first = get_store(tmp_path)
    first.readonly = True
    with pytest.raises(Exception, match="readonly"):
        first.put("k", 1)
    get_store(tmp_path).put("k", 1)
    first.readonly = False
    first.put("k", 2)
    assert get_store(tmp_path).get("k") == 2


def test_glob_is_relative_to_the_prefix(store_factory, backend):
    store = store_factory(backend)
    for key in ("dataset1/a.pdf", "dataset1/sub/b.pdf", "dataset1/c.txt", "dataset2/d.pdf"):
        store.put(key, b"x")
    assert list(store.iterate_keys(prefix="dataset1", glob="*.pdf")) == ["dataset1/a.pdf"]
    assert sorted(store.iterate_keys(prefix="dataset1", glob="**/*.pdf")) == ["dataset1/a.pdf", "dataset1/sub/b.pdf"]
    assert sorted(store.iterate_keys(glob="*/*.pdf")) == ["dataset1/a.pdf", "dataset2/d.pdf"]


def test_cli_glob_is_relative_to_the_prefix(tmp_path):
    store = str(tmp_path / "s")
    for key in ("data/a.json", "data/sub/b.json", "other/c.json"):
        assert run_cli("-s", store, "put", key, "{}").returncode == 0
    result = run_cli("-s", store, "keys", "--prefix", "data", "--glob", "*.json", "--sort")
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == ["data/a.json"]


class DictStore(BaseStore):
    """A custom store as the original library's users write them: the primitives only."""

    def model_post_init(self, context: object) -> None:
        self._data: dict[str, bytes] = {}

    def _write(self, key: str, value: bytes, **kwargs: object) -> None:
        self._data[key] = value

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: object) -> bytes | None:
        if key not in self._data and raise_on_nonexist:
            raise DoesNotExist(key)
        return self._data.get(key)

    def _delete(self, key: str) -> None:
        self._data.pop(key, None)

    def _exists(self, key: str) -> bool:
        return key in self._data

    def _iterate_keys(self, prefix=None, exclude_prefix=None, glob=None):  # noqa: ANN001, ANN202
        yield from (k for k in list(self._data) if k.startswith(prefix or ""))


def test_custom_store_by_its_primitives():
    assert issubclass(DictStore, AbstractBackend)
    store = DictStore(uri="memory://custom")
    store.put("a/b", {"x": 1})
    assert store.get("a/b") == {"x": 1}
    assert store._data["a/b"] == b'{"x":1}'
    assert list(store.iterate_keys(prefix="a")) == ["a/b"]
    assert store.pop("a/b") == {"x": 1}
    assert store.get("a/b", raise_on_nonexist=False) is None
    with pytest.raises(DoesNotExist):
        store.get("a/b")


@pytest.mark.parametrize("name", ["folder", "archive.zip", "db.sqlite"])
def test_a_store_nothing_was_written_to_lists_as_empty_in_the_library(tmp_path, name):
    """The library face keeps anystore's rule (a new cache lists as empty and misses), while the
    command line refuses a store that is not there and creates nothing by reading."""
    uri = f"sqlite:///{tmp_path / name}" if name.endswith(".sqlite") else str(tmp_path / name)
    done = run_cli("-s", uri, "keys")
    assert done.returncode == 3, done.stderr
    assert b"does not exist" in done.stderr
    assert not (tmp_path / name).exists()
    store = get_store(uri=uri)
    assert list(store.iterate_keys()) == []
    assert not store.exists("a")
    assert store.get("a", raise_on_nonexist=False) is None
