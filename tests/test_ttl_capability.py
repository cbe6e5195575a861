"""`--ttl` is honoured or refused: on a store that cannot expire keys (local folders, zip, S3)
every way of asking for an expiry from the command line is a usage error (2) naming the store,
and nothing is written; the library face writes without expiry there, as anystore's does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_cli_support import assert_one_line_error, make_cli_store

NO_TTL_BACKENDS = ["local", "zip", "s3"]

LINE = b'{"key": "k", "value": "v"}\n'


@pytest.mark.parametrize("backend", NO_TTL_BACKENDS)
@pytest.mark.parametrize(
    "args, input",
    [
        (["put", "k", "v", "--ttl", "60"], None),
        (["put", "k", "--ttl", "60"], b"v"),
        (["touch", "k", "--ttl", "60"], None),
        (["load", "--ttl", "60"], LINE),
        (["load"], b'{"key": "k", "value": "v", "ttl": 60}\n'),
        (["load"], b'{"ttl": 60, "key": "k", "value": "' + b"v" * (5 * 1024 * 1024) + b'"}\n'),
    ],
    ids=["put", "put-stdin", "touch", "load-option", "load-line", "load-long-line"],
)
def test_ttl_on_a_store_that_cannot_expire_keys_exits_2(store_factory, backend, args, input) -> None:
    store = make_cli_store(store_factory, backend)
    proc = store(*args, input=input)
    err = assert_one_line_error(proc, 2, "cannot expire keys")
    assert "`ttl`" in err or "`--ttl`" in err
    assert store.uri.rstrip("/").rsplit("/", 1)[-1] in err  # names the store
    if "load-line" in str(args) or args == ["load"]:
        assert "line 1" in err
    assert store("exists", "k").returncode != 0  # nothing written


@pytest.mark.parametrize("backend", ["local", "zip"])
def test_default_ttl_of_a_config_on_a_store_that_cannot_expire_keys_exits_2(store_factory, backend) -> None:
    store = make_cli_store(store_factory, backend)
    config = Path(store.tmp_path) / "store.json"
    config.write_text(json.dumps({"uri": store.uri, "default_ttl": 60}))
    for args in (["put", "k", "v"], ["touch", "k"], ["load"]):
        proc = run_cli("--config", str(config), *args, input=LINE, cwd=store.tmp_path)
        assert_one_line_error(proc, 2, "`default_ttl`", "cannot expire keys")
    assert store("exists", "k").returncode != 0


def test_a_zero_ttl_is_no_expiry_and_accepted(store_factory) -> None:
    store = make_cli_store(store_factory, "local")
    store.ok("put", "k", "v", "--ttl", "0")
    assert store.get("k") == b"v"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_ttl_on_a_store_that_expires_keys_is_accepted(store_factory, backend) -> None:
    store = make_cli_store(store_factory, backend)
    if backend == "memory":  # lives as long as the process: one command
        proc = store("load", "--ttl", "60", input=LINE + b'{"key": "j", "value": "w", "ttl": 5}\n')
        assert proc.returncode == 0, proc.stderr
        return
    store.ok("put", "k", "v", "--ttl", "60")
    store.ok("touch", "t", "--ttl", "60")
    store.ok("load", "--ttl", "60", input=b'{"key": "j", "value": "w", "ttl": 5}\n')
    assert store.get("k") == b"v"
    assert store.get("j") == b"w"


def test_the_refusal_follows_the_declared_capability_not_the_class() -> None:
    """A backend that declares it expires keys is let through; one that does not is refused."""
    from anystore_cli.backends.memory import MemoryStore
    from anystore_cli.errors import InvalidData

    class Forgetful(MemoryStore):
        capabilities = dataclasses.replace(MemoryStore.capabilities, ttl=False)

    Forgetful(uri="memory://forgetful").check_ttl(None)
    with pytest.raises(InvalidData, match="memory://forgetful"):
        Forgetful(uri="memory://forgetful").check_ttl(5)
    MemoryStore(uri="memory://honest").check_ttl(5)


@pytest.mark.parametrize("backend", ["local", "zip"])
def test_the_library_face_writes_without_expiry_as_anystore_does(store_factory, backend) -> None:
    store = store_factory(backend)
    store.put("k", "v", ttl=60)
    assert store.get("k") == "v"
