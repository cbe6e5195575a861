"""Stores written by the released anystore library (0.3.0 and 1.2.6) are stores this tool
reads, and the other way round: local folders, zip, SQLite, PostgreSQL and MySQL/MariaDB.

Each test runs the real package in its own venv (tests/library_venvs.py) on a store of its own
(a folder, a file, or a database made for the test, so both sides use the library's default
table `anystore`), and the `anystore` command as a user runs it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MYSQL_URL, POSTGRES_URL, need, reachable, run_cli, unique
from tests.library_venvs import VERSIONS, run_library

pytestmark = pytest.mark.service

TEXT = "Grüße aus Köln\nzweite Zeile ✓"  # no trailing newline
JSON_VALUE = {"name": "Ünïcode", "list": [1, 2.5, None, True], "nested": {"a": "b"}}
ALL_BYTES = bytes(range(256))
TEXT_KEY = "texts/nested/deep/grüße.txt"
JSON_KEY = "data/2024/record.json"
BYTES_KEY = "binary/all bytes.bin"

# anystore 1.2 reaches SQL stores through fsspec protocols named after the bare schemes
# (`postgresql://`, `mysql://`), whose default SQLAlchemy drivers (psycopg 3, mysqlclient) the
# test venvs do not have: point the bare names at the drivers they have (0.3.0 takes them too).
PRELUDE = """
from sqlalchemy.dialects import registry as _registry
_registry.register("postgresql", "sqlalchemy.dialects.postgresql.psycopg2", "PGDialect_psycopg2")
_registry.register("mysql", "sqlalchemy.dialects.mysql.pymysql", "MySQLDialect_pymysql")
import base64
from anystore import get_store
"""

LIBRARY_WRITES = (
    PRELUDE
    + """
store = get_store(uri=DATA["uri"], serialization_mode="raw")
store.put(DATA["text_key"], DATA["text"].encode())
store.put(DATA["json_key"], DATA["json"], serialization_mode="json")
store.put(DATA["bytes_key"], base64.b64decode(DATA["bytes"]))
RESULT = {
    key: base64.b64encode(store.get(key, serialization_mode="raw")).decode()
    for key in (DATA["text_key"], DATA["json_key"], DATA["bytes_key"])
}
"""
)

LIBRARY_READS = (
    PRELUDE
    + """
store = get_store(uri=DATA["uri"], serialization_mode="raw")
RESULT = {
    "keys": sorted(store.iterate_keys()),
    "values": {
        key: base64.b64encode(store.get(key, serialization_mode="raw")).decode()
        for key in store.iterate_keys()
    },
}
"""
)


@dataclass
class Target:
    """A store both sides reach: the uri each of them takes, and what the SQL ones need."""

    kind: str
    uri: str
    sql_url: str | None = None

    def prepare_for_library(self) -> None:
        """On MySQL the library cannot create its table (its key is a VARCHAR without length):
        this tool creates it, as a user of the library on MySQL would."""
        if self.kind == "mysql":
            assert cli(self.uri, "put", "setup", "x").returncode == 0
            assert cli(self.uri, "rm", "setup").returncode == 0


def cli(uri: str, *args: str, input: bytes | None = None) -> Any:
    """The `anystore` command on the store `uri`."""
    return run_cli("-s", uri, *args, input=input)


def _server_database(base: str, kind: str) -> Iterator[str]:
    """A database made for one test on the server of `base` (dropped after), its url."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    name = unique("interop")
    from anystore_cli.backends.sql import sqlalchemy_url

    admin = sa.create_engine(sqlalchemy_url(base), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sqlalchemy_url(base).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if kind == "postgres" else ""
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{force}")
        admin.dispose()


@pytest.fixture(params=["local", "zip", "sqlite", "postgres", "mysql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    kind = request.param
    if kind == "local":
        yield Target(kind, str(tmp_path / "store"))
    elif kind == "zip":
        yield Target(kind, str(tmp_path / "store.zip"))
    elif kind == "sqlite":
        uri = f"sqlite:///{tmp_path / 'store.db'}"
        yield Target(kind, uri, uri)
    else:
        base = POSTGRES_URL if kind == "postgres" else MYSQL_URL
        need(
            "PostgreSQL" if kind == "postgres" else "MariaDB/MySQL",
            reachable(base, 5432 if kind == "postgres" else 3306),
        )
        for url in _server_database(base, kind):
            # the bare scheme: the form anystore 1.2 takes (and this tool, with its default driver)
            bare = "postgresql" if kind == "postgres" else "mysql"
            yield Target(kind, f"{bare}://{url.split('://', 1)[1]}", url)


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest, target: Target) -> str:
    if request.param.startswith("1.") and target.kind == "zip":
        pytest.skip("anystore 1.2 has no zip store: it keeps `store.zip` as a folder of that name")
    return request.param


def _decoded(result: dict[str, str]) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in result.items()}


def test_library_writes_the_cli_reads(version: str, target: Target):
    target.prepare_for_library()
    data = {
        "uri": target.uri,
        "text_key": TEXT_KEY,
        "text": TEXT,
        "json_key": JSON_KEY,
        "json": JSON_VALUE,
        "bytes_key": BYTES_KEY,
        "bytes": base64.b64encode(ALL_BYTES).decode(),
    }
    stored = _decoded(run_library(version, LIBRARY_WRITES, **data))
    assert stored[TEXT_KEY] == TEXT.encode()
    assert json.loads(stored[JSON_KEY]) == JSON_VALUE
    assert stored[BYTES_KEY] == ALL_BYTES

    listed = cli(target.uri, "keys", "--sort")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.decode().splitlines() == sorted(stored)
    for key, value in stored.items():
        got = cli(target.uri, "get", key)
        assert (got.returncode, got.stdout) == (0, value), (key, got.stderr)
        info = cli(target.uri, "info", key, "--json")
        assert info.returncode == 0, info.stderr
        record = json.loads(info.stdout)
        assert (record["key"], record["size"]) == (key, len(value))
        if target.sql_url:
            assert record["created_at"] and record["updated_at"]
    assert json.loads(cli(target.uri, "get", JSON_KEY, "--mode", "json").stdout) == JSON_VALUE
    assert cli(target.uri, "keys", "--prefix", "texts/nested").stdout == f"{TEXT_KEY}\n".encode()


def test_cli_writes_the_library_reads(version: str, target: Target, tmp_path: Path):
    source = tmp_path / "all.bin"
    source.write_bytes(ALL_BYTES)
    assert cli(target.uri, "put", TEXT_KEY, TEXT).returncode == 0
    assert cli(target.uri, "put", BYTES_KEY, "-i", str(source)).returncode == 0
    lines = [
        {"key": JSON_KEY, "value": json.dumps(JSON_VALUE)},
        {"key": "loaded/all.bin", "value_b64": base64.b64encode(ALL_BYTES).decode()},
    ]
    loaded = cli(target.uri, "load", input="".join(json.dumps(line) + "\n" for line in lines).encode())
    assert loaded.returncode == 0, loaded.stderr

    result = run_library(version, LIBRARY_READS, uri=target.uri)
    expected = {
        TEXT_KEY: TEXT.encode(),
        BYTES_KEY: ALL_BYTES,
        JSON_KEY: json.dumps(JSON_VALUE).encode(),
        "loaded/all.bin": ALL_BYTES,
    }
    assert result["keys"] == sorted(expected)
    assert _decoded(result["values"]) == expected


LIBRARY_WRITES_TTL = (
    PRELUDE
    + """
store = get_store(uri=DATA["uri"], serialization_mode="raw")
store.put("ttl/short", b"short", ttl=60)
store.put("ttl/long", b"long", ttl=3600)
store.put("plain", b"plain")
"""
)

LIBRARY_EXISTS = (
    PRELUDE
    + """
store = get_store(uri=DATA["uri"], serialization_mode="raw")
RESULT = {key: store.exists(key) for key in ("ttl/short", "ttl/long", "plain")}
"""
)


def _age_rows(url: str, seconds: int) -> None:
    """Make every row's `timestamp` `seconds` older: the table as the library left it that long ago."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from anystore_cli.backends.sql import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(url), poolclass=NullPool)
    then = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    if engine.dialect.name == "postgresql":
        stamp: Any = then
    else:  # naive UTC text, as the library's rows hold it
        stamp = then.replace(tzinfo=None).isoformat(" ", "microseconds")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE anystore SET timestamp = :stamp"), {"stamp": stamp})
    engine.dispose()


@pytest.mark.parametrize("target", ["sqlite", "postgres", "mysql"], indirect=True)
def test_the_libraries_ttl_is_honoured(version: str, target: Target):
    target.prepare_for_library()
    run_library(version, LIBRARY_WRITES_TTL, uri=target.uri)
    assert target.sql_url
    _age_rows(target.sql_url, 120)  # past the 60 s ttl, within the hour
    assert cli(target.uri, "get", "ttl/short").returncode == 1
    assert cli(target.uri, "exists", "ttl/short").returncode == 1
    assert cli(target.uri, "keys", "--sort").stdout == b"plain\nttl/long\n"
    assert cli(target.uri, "get", "ttl/long").stdout == b"long"
    if version.startswith("1."):  # the library agrees (0.3.0 fails comparing aware times on PostgreSQL)
        assert run_library(version, LIBRARY_EXISTS, uri=target.uri) == {
            "ttl/short": False,
            "ttl/long": True,
            "plain": True,
        }
