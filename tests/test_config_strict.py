"""One strictness rule for every source of configuration, and typed backend options: `-b`,
a `--config` file, `ANYSTORE_*` variables and the library face refuse the same typos and read
the same values the same way."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli


def _tables(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(row[0] for row in conn.execute("select name from sqlite_master where type = 'table'"))


def _library(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` with the library face in a fresh interpreter under `env` (ANYSTORE_* of the
    test run removed, as `run_cli` does)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("option", "table"), [("table=2024.10", "2024.10"), ("table=true", "true"), ("table=null", "null")]
)
def test_text_options_keep_their_value_as_typed(option: str, table: str, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    uri = f"sqlite:///{db}"
    assert run_cli("-s", uri, "-b", option, "put", "a", "-", input=b"1").returncode == 0
    assert _tables(db) == [table]
    env = {"ANYSTORE_BACKEND_CONFIG__TABLE": table.split("=")[-1]}
    assert run_cli("-s", uri, "get", "a", env=env).stdout == b"1"


def test_redis_prefix_keeps_its_text(store_factory: Any) -> None:
    import uuid

    uri, _ = store_factory.uri_and_config("redis")
    prefix = f"1.{uuid.uuid4().int % 10**8:08d}0"  # a number to JSON, which drops the last 0
    assert run_cli("-s", uri, "-b", f"redis_prefix={prefix}", "put", "a", "-", input=b"1").returncode == 0
    import redis

    client = redis.Redis.from_url(uri)
    try:
        assert client.get(f"{prefix}/a".encode()) == b"1"
    finally:
        client.delete(f"{prefix}/a".encode(), f"{prefix}\x00a".encode())


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-b", "timeout=abc"], "`timeout`"),
        (["-b", "timeout=nan"], "`timeout`"),
    ],
)
def test_bad_values_of_typed_options_exit_2(args: list[str], named: str, tmp_path: Path) -> None:
    result = run_cli("-s", f"sqlite:///{tmp_path / 's.db'}", *args, "keys")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.startswith("anystore: error: ") and named in err and err.count("\n") == 1
    assert not (tmp_path / "s.db").exists() or _tables(tmp_path / "s.db") == []


@pytest.mark.parametrize(
    "config",
    [
        "uri: sqlite:///{db}\nbackend_config:\n  tabel: x\n",
        "uri: sqlite:///{db}\nreadonyl: true\n",
        "uri: sqlite:///{db}\nbackend_confg:\n  table: x\n",
    ],
)
def test_unknown_keys_in_a_config_file_exit_2(config: str, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    path = tmp_path / "store.yml"
    path.write_text(config.format(db=db))
    result = run_cli("--config", str(path), "put", "a", "-", input=b"1")
    assert result.returncode == 2, result.stderr.decode()
    typo = next(word for word in ("tabel", "readonyl", "backend_confg") if word in config)
    assert f"`{typo}`" in result.stderr.decode()
    assert not db.exists() or _tables(db) == []
    library = _library(
        "from anystore_cli.core import get_store\nget_store().put('a', b'1')",
        {"ANYSTORE_YAML_URI": str(path)},
        tmp_path,
    )
    assert library.returncode != 0 and f"`{typo}`" in library.stderr
    assert not db.exists() or _tables(db) == []


@pytest.mark.parametrize(
    ("variable", "named"),
    [
        ("ANYSTORE_BACKEND_CONFIG__TABEL", "`tabel`: not an option"),
        ("ANYSTORE_BACKEND_CONFIG__TABEL", "set by ANYSTORE_BACKEND_CONFIG__TABEL"),
        ("ANYSTORE_READONYL", "ANYSTORE_READONYL"),
        ("ANYSTORE_BACKEND_CONFIGTABLE", "ANYSTORE_BACKEND_CONFIGTABLE"),
        ("ANYSTORE_STOER", "`ANYSTORE_STOER` (not a setting of anystore)"),
    ],
)
def test_unknown_settings_in_the_environment_exit_2(variable: str, named: str, tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    env = {variable: "x", "ANYSTORE_URI": f"sqlite:///{db}"}
    result = run_cli("put", "a", "-", input=b"1", env=env)
    assert result.returncode == 2, result.stderr.decode()
    assert named in result.stderr.decode()
    library = _library("from anystore_cli.core import get_store\nget_store().put('a', b'1')", env, tmp_path)
    assert library.returncode != 0 and named in library.stderr
    assert not db.exists() or _tables(db) == []


def test_other_anystore_variables_are_left_alone(tmp_path: Path) -> None:
    env = {
        "ANYSTORE_TEST_SOMETHING": "1",
        "ANYSTORE_LOCK_TOKEN": "3",
        "ANYSTORE_TESTING": "1",  # settings of the library's later line, which a program may set
        "ANYSTORE_UNSAFE_URIS": "1",
        "ANYSTORE_URI": str(tmp_path / "s"),
    }
    assert run_cli("put", "a", "-", input=b"1", env=env).returncode == 0
    library = _library("from anystore_cli.core import get_store\nprint(get_store().get('a'))", env, tmp_path)
    assert library.returncode == 0 and library.stdout.strip() == "1"


def test_library_refuses_unknown_and_mistyped_options(tmp_path: Path) -> None:
    from anystore_cli.core import get_store
    from anystore_cli.core.settings import Settings

    uri = f"sqlite:///{tmp_path / 's.db'}"
    with pytest.raises(ValueError, match="`tabel`"):
        get_store(uri, backend_config={"tabel": "x"})
    with pytest.raises(ValueError, match="`timeout`"):
        get_store(uri, backend_config={"timeout": "soon"})
    with pytest.raises(ValueError, match="readonyl"):
        Settings(readonyl=True)
    store = get_store(uri, backend_config={"table": "2024.10"})
    store.put("a", b"1")
    assert _tables(tmp_path / "s.db") == ["2024.10"]


def test_config_file_and_environment_options_merge_in_both_faces(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    path = tmp_path / "store.yml"
    path.write_text(f"uri: sqlite:///{db}\nbackend_config:\n  table: fromfile\n")
    env = {"ANYSTORE_BACKEND_CONFIG__TIMEOUT": "7"}
    assert run_cli("--config", str(path), "put", "a", "-", input=b"1", env=env).returncode == 0
    code = (
        "from anystore_cli.core import get_store\n"
        "store = get_store()\n"
        "print(sorted(store.backend_config.items()))\n"
        "print(store.get('a'))"
    )
    library = _library(code, {**env, "ANYSTORE_YAML_URI": str(path)}, tmp_path)
    assert library.returncode == 0, library.stderr
    assert library.stdout.split("\n")[:2] == ["[('table', 'fromfile'), ('timeout', 7.0)]", "1"]
    assert _tables(db) == ["fromfile"]


def test_yaml_aliases_are_refused_in_both_faces(tmp_path: Path) -> None:
    path = tmp_path / "store.yml"
    path.write_text(f"uri: &u {tmp_path / 's'}\nbackend_config: {{fsync: *u}}\n")
    assert run_cli("--config", str(path), "keys").returncode == 2
    library = _library(
        "from anystore_cli.core import get_store\nget_store()", {"ANYSTORE_YAML_URI": str(path)}, tmp_path
    )
    assert library.returncode != 0 and "aliases" in library.stderr


def test_settings_shows_one_effective_store_and_the_s3_endpoint(tmp_path: Path) -> None:
    import json

    env = {"ANYSTORE_URI": str(tmp_path / "elsewhere"), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    shown = json.loads(run_cli("-s", "s3://bucket/prefix", "settings", env=env).stdout)
    assert shown["store"]["uri"] == "s3://bucket/prefix" and shown["store"]["endpoint"] == "http://127.0.0.1:9"
    assert "uri" not in shown["settings"] and "backend_config" not in shown["settings"]
    typed = json.loads(run_cli("-s", f"sqlite:///{tmp_path / 's.db'}", "-b", "table=2024.10", "settings").stdout)
    assert typed["store"]["backend_config"] == {"table": "2024.10"}


def test_log_level_from_the_environment_changes_the_library_logging(tmp_path: Path) -> None:
    code = (
        "from anystore_cli.core.logging import configure_logging, get_logger\n"
        "configure_logging()\n"
        "get_logger('probe').debug('a debug line')\n"
        "get_logger('probe').info('an info line')\n"
    )
    for variable in ("LOG_LEVEL", "ANYSTORE_LOG_LEVEL"):
        shown = _library(code, {variable: "debug"}, tmp_path)
        assert shown.returncode == 0 and "a debug line" in shown.stderr, shown.stderr
    quiet = _library(code, {"LOG_LEVEL": "warning"}, tmp_path)
    assert quiet.returncode == 0 and "a debug line" not in quiet.stderr and "an info line" not in quiet.stderr


def test_file_options_are_typed_too(tmp_path: Path) -> None:
    store, out = str(tmp_path / "s"), tmp_path / "out"
    assert run_cli("-s", store, "put", "a", "-", input=b"hi").returncode == 0
    bad = run_cli("-s", store, "get", "a", "-o", str(out), "--output-config", "fsync=maybe")
    assert bad.returncode == 2 and "`fsync`" in bad.stderr.decode() and not out.exists()
    assert run_cli("-s", store, "get", "a", "-o", str(out), "--output-config", "fsync=true").returncode == 0
    assert out.read_bytes() == b"hi"


def test_yaml_models_of_the_library_refuse_aliases_too() -> None:
    from pydantic import BaseModel

    from anystore_cli.core.mixins import YamlMixin

    class Job(YamlMixin, BaseModel):
        a: list[str] = []
        b: list[str] = []

    assert Job.from_yaml_str("a: [x]\nb: [y]\n").b == ["y"]
    with pytest.raises(Exception, match="aliases"):
        Job.from_yaml_str("a: &x [x, x]\nb: *x\n")
