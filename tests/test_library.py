"""The library surface beyond the store methods: get_store, settings, models, uri helpers,
smart_* I/O, anycache, mirror, virtual stores, and the import cost of `anystore_cli.core`."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from anystore_cli import core
from anystore_cli.core import (
    DEFAULT_HASH_ALGORITHM,
    BaseStore,
    DoesNotExist,
    InvalidUri,
    LocalStore,
    MemoryStore,
    Settings,
    Store,
    StoreModel,
    ZipStore,
    anycache,
    ensure_uri,
    get_store,
    get_virtual,
    join_uri,
    make_checksum,
    mirror,
    open_virtual,
    smart_open,
    smart_read,
    smart_stream,
    smart_write,
)
from anystore_cli.core.checksum import make_signature_key


def test_public_api_names_resolve():
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    with pytest.raises(AttributeError):
        core.does_not_exist  # noqa: B018
    assert DEFAULT_HASH_ALGORITHM == "sha1"


HEAVY = ["fsspec", "s3fs", "redis", "sqlalchemy", "typer", "rich", "pydantic", "yaml"]


def test_importing_core_pulls_no_heavy_package():
    code = f"import sys, anystore_cli.core; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_local_get_path_pulls_no_backend_package(tmp_path):
    # the library's models are pydantic's (that is its API); no backend package or CLI package loads
    backend_packages = [m for m in HEAVY if m not in ("pydantic", "yaml")]
    code = (
        "import sys; from anystore_cli.core import get_store; s = get_store(sys.argv[1]); s.put('k', b'v');"
        f" assert s.get('k') == 'v'; print(' '.join(m for m in {backend_packages!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_get_store_dispatches_by_scheme(tmp_path):
    assert isinstance(get_store(str(tmp_path)), LocalStore)
    assert isinstance(get_store(tmp_path), Store)
    assert isinstance(get_store("memory://"), MemoryStore)
    assert isinstance(get_store(str(tmp_path / "a.zip")), ZipStore)
    assert isinstance(get_store(f"file://{tmp_path}"), LocalStore)
    local = Store(uri=tmp_path)  # the original's class for a local folder works, on the local backend
    local.put("k", b"v")
    assert (tmp_path / "k").read_bytes() == b"v"
    assert "fsspec" not in type(local._get_backend()).__module__
    with pytest.raises(InvalidUri):
        get_store("nosuchscheme://foo")


def test_get_store_defaults_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ANYSTORE_URI", str(tmp_path / "envstore"))
    monkeypatch.setenv("ANYSTORE_SERIALIZATION_MODE", "raw")
    monkeypatch.setenv("ANYSTORE_BACKEND_CONFIG__FSYNC", "true")
    monkeypatch.setenv("ANYSTORE_DEFAULT_TTL", "5")
    store = get_store()
    assert store.uri == f"file://{tmp_path}/envstore"
    assert store.serialization_mode == "raw"
    assert store.backend_config == {"fsync": True}  # typed by the local backend's declaration, as `-b`
    assert store.default_ttl == 5
    assert get_store(uri="foo").uri.endswith("/foo")


def test_get_store_returns_a_new_store_every_call(tmp_path):
    first = get_store(str(tmp_path))
    first.readonly = True
    second = get_store(str(tmp_path))
    assert second is not first and second.readonly is False
    second.put("k", b"v")  # not read-only: the first store's flag did not leak
    assert get_store("memory://").exists("k") is False
    memory = get_store("memory://")
    memory.put("k", 1)
    assert get_store("memory://").exists("k") is False  # each memory store has its own keys


def test_store_from_yaml_and_json_config(tmp_path, monkeypatch):
    (tmp_path / "store.yml").write_text(f"uri: {tmp_path}/cache\nserialization_mode: raw\nreadonly: true\n")
    (tmp_path / "store.json").write_text(json.dumps({"uri": "memory://json", "default_ttl": 10}))
    store = BaseStore.from_yaml_uri(tmp_path / "store.yml")
    assert store.uri == f"file://{tmp_path}/cache"
    assert store.serialization_mode == "raw" and store.readonly is True
    store = Store.from_json_uri(tmp_path / "store.json")
    assert store.uri == "memory://json" and store.default_ttl == 10
    monkeypatch.setenv("ANYSTORE_YAML_URI", str(tmp_path / "store.yml"))
    assert isinstance(get_store(), LocalStore)
    assert get_store().readonly is True


def test_settings_fields_and_env(monkeypatch):
    settings = Settings()
    assert settings.uri == ".anystore"
    assert settings.serialization_mode == "auto"
    assert settings.raise_on_nonexist is True
    assert settings.default_ttl == 0
    monkeypatch.setenv("ANYSTORE_RAISE_ON_NONEXIST", "false")
    monkeypatch.setenv("anystore_debug", "1")
    settings = Settings()
    assert settings.raise_on_nonexist is False and settings.debug is True
    assert Settings(uri="x").uri == "x"


def test_store_model_properties():
    s3 = StoreModel(uri="s3://bucket/prefix/")
    assert (s3.scheme, s3.path, s3.netloc, s3.uri) == ("s3", "prefix", "bucket", "s3://bucket/prefix")
    assert s3.is_fslike and not s3.is_local and not s3.is_sql and not s3.is_http
    assert StoreModel(uri="/tmp/x").is_local
    assert StoreModel(uri="https://example.org").is_http
    assert StoreModel(uri="sqlite:///x.db").is_sql and not StoreModel(uri="sqlite:///x.db").is_fslike
    assert not StoreModel(uri="redis://localhost").is_fslike
    assert not StoreModel(uri="memory://").is_fslike
    dumped = StoreModel(uri="memory://", readonly=True).model_dump()
    assert dumped["readonly"] is True and dumped["uri"] == "memory://"
    copy = StoreModel(uri="memory://").model_copy(update={"readonly": True})
    assert copy.readonly is True


def test_uri_helpers(tmp_path):
    assert ensure_uri("s3://bucket") == "s3://bucket"
    assert ensure_uri("/foo") == "file:///foo"
    assert ensure_uri("-") == "-"
    assert ensure_uri(Path("rel")).startswith("file:///")
    with pytest.raises(ValueError):
        ensure_uri("")
    assert join_uri("http://example.org", "foo") == "http://example.org/foo"
    assert join_uri("/tmp", "foo") == "file:///tmp/foo"
    assert join_uri("s3://foo/bar.pdf", "../baz.txt") == "s3://foo/baz.txt"


def test_smart_io_roundtrip(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    smart_write(target, "line one\nline two\n", mode="w")
    assert smart_read(target, mode="r") == "line one\nline two\n"
    assert smart_read(str(target)) == b"line one\nline two\n"
    assert list(smart_stream(target)) == [b"line one\n", b"line two\n"]
    with smart_open(target, "rb") as fh:
        assert make_checksum(fh, "md5") == hashlib.md5(b"line one\nline two\n").hexdigest()
    with pytest.raises(DoesNotExist):
        smart_read(tmp_path / "missing")
    smart_write("memory://smart/x", b"data")
    assert smart_read("memory://smart/x") == b"data"


def test_smart_write_failure_keeps_old_file(tmp_path):
    target = tmp_path / "f"
    smart_write(target, b"old")
    with pytest.raises(RuntimeError), smart_open(target, "wb") as fh:
        fh.write(b"partial")
        raise RuntimeError
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_anycache(tmp_path):
    calls = []

    @anycache(uri=tmp_path)
    def get_data(*args, **kwargs):
        calls.append(args)
        return "data"

    store = get_store(uri=tmp_path, raise_on_nonexist=False)
    key = make_signature_key("x")
    assert store.get(key) is None
    assert get_data("x") == "data"
    assert get_data("x") == "data"
    assert calls == [("x",)]
    assert store.get(key) == "data"

    @anycache(store=store, key_func=lambda *args, **kwargs: args[0].upper())
    def get_data2(*args, **kwargs):
        return {"v": 2}

    assert get_data2("x") == {"v": 2}
    assert store.get("X") == {"v": 2}

    @anycache(uri=tmp_path / "foo", key_func=lambda x: x)
    def get_data3(data):
        return data

    assert get_data3("bar") == "bar"
    assert (tmp_path / "foo" / "bar").exists()

    @anycache(uri=tmp_path, serialization_func=list)
    def get_data4(x):
        yield from range(x)

    assert get_data4(5) == [0, 1, 2, 3, 4]
    assert get_data4(5) == [0, 1, 2, 3, 4]

    @anycache(store=store, key_func=lambda x: None)
    def uncached(x):
        calls.append(x)
        return x

    uncached(1), uncached(1)
    assert calls.count(1) == 2


def test_anycache_async_and_ttl():
    store = get_store("memory://anycache-async")
    calls = []

    @anycache(store=store, key_func=lambda x: f"k/{x}", ttl=60)
    async def compute(x):
        calls.append(x)
        return x * 2

    assert asyncio.run(compute(2)) == 4
    assert asyncio.run(compute(2)) == 4
    assert calls == [2]
    assert store.get("k/2") == 4


def test_anycache_with_pydantic_model():
    pydantic = pytest.importorskip("pydantic")

    class Result(pydantic.BaseModel):
        value: int

    @anycache(store=get_store("memory://anycache-model"), model=Result, key_func=lambda x: str(x))
    def compute(x):
        return Result(value=x)

    assert compute(3) == Result(value=3)
    assert compute(3) == Result(value=3)


def test_mirror_between_stores(tmp_path):
    source = get_store("memory://mirror-src")
    target = get_store(str(tmp_path / "target"))
    for i in range(20):
        source.put(f"a/{i}", f"value {i}")
    source.put("b/x", b"\x00\xff", serialization_mode="raw")
    target.put("a/0", "existing")
    status = mirror(source, target, ignore_existing=True)
    assert (status.mirrored, status.skipped, status.failed) == (20, 1, 0)
    assert target.get("a/0") == "existing"
    assert target.get("b/x", serialization_mode="raw") == b"\x00\xff"
    status = mirror(source, target, overwrite=True, prefix="a/", workers=4)
    assert (status.mirrored, status.skipped) == (20, 0)
    assert target.get("a/0") == "value 0"
    other = get_store(str(tmp_path / "other"))
    assert mirror(source, other, glob="b/*").mirrored == 1
    assert list(other.iterate_keys()) == ["b/x"]


def test_virtual_store(tmp_path):
    (tmp_path / "lorem.txt").write_bytes(b"Lorem ipsum\ndolor\n")
    tmp = get_virtual()
    key = tmp.download(tmp_path / "lorem.txt")
    assert tmp.store.pop(key) == b"Lorem ipsum\ndolor\n"
    store = get_store(uri=tmp_path)
    key = tmp.download("lorem.txt", store)
    assert Path(tmp.local_path(key)).read_bytes() == b"Lorem ipsum\ndolor\n"
    tmp.cleanup()
    with open_virtual("lorem.txt", store) as handle:
        assert handle.read().startswith(b"Lorem")
        path = handle.name
    assert not Path(path).exists()


def test_exported_mirror_is_the_function_even_after_its_module_loads():
    import importlib

    importlib.import_module("anystore_cli.services.mirror")
    from anystore_cli.core import MirrorStatus
    from anystore_cli.core import mirror as exported

    assert callable(exported) and not isinstance(exported, type(importlib))
    assert isinstance(exported(get_store("memory://exp-a"), get_store("memory://exp-b")), MirrorStatus)
