"""The SQL backend beyond the shared contract: exact matching, ttl, column types, failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from anystore_cli.backends.sql import escape_like, sqlalchemy_url
from anystore_cli.core import (
    AlreadyExists,
    DoesNotExist,
    InvalidKey,
    MissingDependency,
    SqlStore,
    StoreError,
    get_store,
)
from tests.conftest import drop_sql_table, unique

pytestmark = pytest.mark.service

SQL_BACKENDS = ["sqlite", "postgres", "mysql"]


@pytest.fixture(params=SQL_BACKENDS)
def store(request, store_factory) -> SqlStore:
    return store_factory(request.param)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _rows(store: SqlStore) -> int:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar_one()


def test_escape_like():
    assert escape_like("a%b_c!d") == "a!%b!_c!!d"


def test_bare_schemes_get_default_drivers():
    assert sqlalchemy_url("mysql://root@h/db").drivername == "mysql+pymysql"
    assert sqlalchemy_url("mariadb://root@h/db").drivername == "mariadb+pymysql"
    assert sqlalchemy_url("postgresql://u@h/db").drivername == "postgresql+psycopg2"
    assert sqlalchemy_url("postgres://u@h/db").drivername == "postgresql+psycopg2"
    assert sqlalchemy_url("mysql+pymysql://root@h/db").drivername == "mysql+pymysql"


def test_default_table_is_anystore(tmp_path):
    assert get_store(f"sqlite:///{tmp_path}/x.db").table_name == "anystore"


SPECIAL = [
    "100%",
    "100x",
    "1_0",
    "1x0",
    "a%b",
    "ab",
    "a*b",
    "aXb",
    "back\\slash",
    "backXslash",
    "x!%y",
    "x!y",
    "x!!",
    "Key",
    "key",
    "trail ",
    "trail",
    "ünï/cödé",
    "ü",
]


def test_prefix_and_glob_match_special_keys_exactly(store):
    for key in SPECIAL:
        store.put(key, key)
    assert sorted(store.iterate_keys()) == sorted(SPECIAL)
    for key in SPECIAL:
        assert store.get(key) == key
    assert list(store.iterate_keys(prefix="100%")) == ["100%"]
    assert list(store.iterate_keys(prefix="1_")) == ["1_0"]
    assert list(store.iterate_keys(prefix="a%")) == ["a%b"]
    assert list(store.iterate_keys(prefix="a*")) == ["a*b"]
    assert list(store.iterate_keys(prefix="back\\")) == ["back\\slash"]
    assert sorted(store.iterate_keys(prefix="x!")) == ["x!!", "x!%y", "x!y"]
    assert list(store.iterate_keys(prefix="x!%")) == ["x!%y"]
    assert list(store.iterate_keys(prefix="K")) == ["Key"]
    assert list(store.iterate_keys(prefix="trail ")) == ["trail "]
    assert sorted(store.iterate_keys(prefix="ü")) == ["ü", "ünï/cödé"]
    assert sorted(store.iterate_keys(exclude_prefix="a")) == sorted(k for k in SPECIAL if not k.startswith("a"))
    assert sorted(store.iterate_keys(glob="a?b")) == ["a%b", "a*b", "aXb"]
    assert list(store.iterate_keys(glob="a[*]b")) == ["a*b"]
    assert list(store.iterate_keys(glob="1[_]*")) == ["1_0"]
    assert list(store.iterate_keys(glob="ünï/*")) == ["ünï/cödé"]
    assert list(store.iterate_keys(glob="back[\\]*")) == ["back\\slash"]


def test_keys_differing_in_case_or_trailing_space_are_distinct(store):
    store.put("trail", 1)
    store.put("trail ", 2)
    store.put("Trail", 3)
    assert (store.get("trail"), store.get("trail "), store.get("Trail")) == (1, 2, 3)


def test_large_value_roundtrip(store):
    data = bytes(range(256)) * (5 * 1024 * 4)  # 5 MiB
    store.put("big", data, serialization_mode="raw")
    assert store.get("big", serialization_mode="raw") == data
    assert store.info("big").size == len(data)


def test_overwrite_keeps_created_at(store):
    store.put("k", b"12345", serialization_mode="raw")
    first = store.info("k")
    time.sleep(0.02)
    store.put("k", b"1", serialization_mode="raw")
    second = store.info("k")
    assert second.size == 1
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert abs(second.updated_at - datetime.now(second.updated_at.tzinfo)) < timedelta(seconds=5)


def test_expired_rows_are_invisible_and_purged(store):
    store.put("gone", 1, ttl=1)
    store.put("kept", 2)
    time.sleep(1.2)
    assert store.get("gone", raise_on_nonexist=False) is None
    assert store.exists("gone") is False
    with pytest.raises(DoesNotExist):
        store.info("gone")
    with pytest.raises(DoesNotExist):
        store.pop("gone")
    assert store.delete("gone") is False
    assert dict(store.get_many(["gone", "kept"])) == {"gone": None, "kept": 2}
    assert _rows(store) == 2  # still there, but invisible
    assert list(store.iterate_keys()) == ["kept"]
    assert _rows(store) == 1  # listing purged it


def test_no_clobber_over_an_expired_row_writes_a_new_key(store):
    store.put("k", "old", ttl=1)
    with pytest.raises(AlreadyExists):
        store.put("k", "new", no_clobber=True)
    created = store.info("k").created_at
    time.sleep(1.2)
    store.put("k", "new", no_clobber=True)
    assert store.get("k") == "new"
    assert store.info("k").created_at > created


def test_overwrite_of_an_expired_row_resets_created_at(store):
    store.put("k", "old", ttl=1)
    created = store.info("k").created_at
    time.sleep(1.2)
    store.put("k", "new")
    assert store.info("k").created_at > created
    store.put("k", "newer", ttl=60)
    store.put("k", "forever")
    time.sleep(0.01)
    assert store.exists("k")


def test_pop_without_delete_returning(store, monkeypatch):
    monkeypatch.setattr(store.engine.dialect, "delete_returning", False)
    store.put("k", 1)
    assert store.pop("k") == 1
    with pytest.raises(DoesNotExist):
        store.pop("k")


def test_put_many_last_value_of_a_key_wins(store):
    assert store.put_many([("a", 1), ("b", 2), ("a", 3)]) == 3
    assert dict(store.get_many(["a", "b"])) == {"a": 3, "b": 2}


def test_put_many_keeps_special_keys_binary_values_ttl_and_created_at(store):
    special = {"tab\there": bytes(range(256)), "back\\slash\\x00": b"\\x41", "new\nline\rcr": b"", "é/ü €": b"\x00"}
    store.put_many([("kept", b"old")], serialization_mode="raw")
    first = store.info("kept")
    time.sleep(0.02)
    items = [*special.items(), ("kept", b"dup"), ("kept", b"new")]
    assert store.put_many(items, ttl=60, serialization_mode="raw") == len(items)
    assert {key: store.get(key, serialization_mode="raw") for key in special} == special
    assert store.get("kept", serialization_mode="raw") == b"new"
    second = store.info("kept")
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert _rows(store) == len(special) + 1
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        table = store.table
        row = conn.execute(sa.select(table.c.timestamp, table.c.ttl).where(table.c.key == "kept")).one()
    assert row.ttl == 60  # the library's layout: seconds after the timestamp of the write
    assert abs(_utc(row.timestamp) - datetime.now(timezone.utc)) < timedelta(seconds=5)


def _recorded(store: SqlStore, func) -> list[tuple[str, bool]]:
    """The statements (and whether each was an executemany) that `func()` sent through SQLAlchemy."""
    import sqlalchemy as sa

    statements: list[tuple[str, bool]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, executemany))

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        func()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
    return statements


def _staged(statements: list[tuple[str, bool]]) -> bool:
    return any("SELECT" in sql and "anystore_staging" in sql for sql, _ in statements if sql.startswith("INSERT"))


def test_postgres_put_many_copies_new_keys_straight_into_the_table(store_factory):
    store = store_factory("postgres")
    store.put("k", 1)  # the table exists
    statements = _recorded(store, lambda: store.put_many([(f"k{i}", i) for i in range(100)]))
    assert store.get("k99") == 99
    assert not any(many for _, many in statements)  # no row-by-row executemany
    assert not _staged(statements)  # no staging table, no upsert: one COPY
    assert store._copy_conflicts is False


def test_postgres_put_many_over_existing_keys_falls_back_to_staging_and_upserts(store_factory):
    store = store_factory("postgres")
    store.put_many([("a/1", b"old1"), ("a/2", b"old2")], serialization_mode="raw")
    first = store.info("a/1")
    time.sleep(0.02)
    items = [("a/0", b"new0"), ("a/1", b"new1"), ("a/3", b"new3")]
    statements = _recorded(store, lambda: store.put_many(items, ttl=60, serialization_mode="raw"))
    assert _staged(statements)  # the COPY met `a/1`: rolled back, staged and upserted
    assert store._copy_conflicts is True  # ... and remembered
    got = dict(store.get_many(["a/0", "a/1", "a/2", "a/3"], serialization_mode="raw"))
    assert got == {"a/0": b"new0", "a/1": b"new1", "a/2": b"old2", "a/3": b"new3"}
    second = store.info("a/1")
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert _rows(store) == 4
    # later batches go through the staging table at once, new keys or not
    statements = _recorded(store, lambda: store.put_many([("b", b"b")], serialization_mode="raw"))
    assert _staged(statements)
    assert store.get("b", serialization_mode="raw") == b"b"


def _fail_on_insert(store: SqlStore, key: str) -> Callable[[], None]:
    """A trigger that makes the database refuse to insert `key`; returns its cleanup."""
    table = store.table_name
    name = f"boom_{table}"[:60]
    with store.engine.begin() as conn:
        dialect = store.engine.dialect.name
        if dialect == "sqlite":
            conn.exec_driver_sql(
                f'CREATE TRIGGER "{name}" BEFORE INSERT ON "{table}" WHEN NEW.key = \'{key}\' '
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        elif dialect == "postgresql":
            conn.exec_driver_sql(
                f'CREATE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                f"IF NEW.key = '{key}' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                f'CREATE TRIGGER "{name}" BEFORE INSERT ON "{table}" FOR EACH ROW EXECUTE FUNCTION "{name}"()'
            )
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER `{name}` BEFORE INSERT ON `{table}` FOR EACH ROW "
                f"IF NEW.`key` = '{key}' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'; END IF",
                execution_options={"no_parameters": True},
            )

    def cleanup() -> None:
        with store.engine.begin() as conn:
            if store.engine.dialect.name == "postgresql":
                conn.exec_driver_sql(f'DROP TRIGGER "{name}" ON "{table}"')
                conn.exec_driver_sql(f'DROP FUNCTION "{name}"()')
            else:
                quote = "`" if store.engine.dialect.name != "sqlite" else '"'
                conn.exec_driver_sql(f"DROP TRIGGER {quote}{name}{quote}")

    return cleanup


@pytest.mark.parametrize("existing", [False, True], ids=["new-keys", "over-existing"])
def test_put_many_batch_that_fails_leaves_the_old_values(store, existing):
    if existing:
        store.put_many([("k/0000", b"old"), ("k/0500", b"old")], serialization_mode="raw")
    else:
        store.put("other", b"old", serialization_mode="raw")
    before = _rows(store)
    cleanup = _fail_on_insert(store, "k/zzz")
    try:
        # over a thousand rows of 1 KiB: several statements (SQLite, MySQL) in one transaction,
        # the failing key last in key order
        items = [(f"k/{i:04d}", b"n" * 1024) for i in range(1200)] + [("k/zzz", b"boom")]
        with pytest.raises(StoreError, match="boom"):
            store.put_many(items, serialization_mode="raw", batch_size=len(items))
    finally:
        cleanup()
    assert _rows(store) == before
    if existing:
        assert store.get("k/0000", serialization_mode="raw") == b"old"
        assert store.get("k/0500", serialization_mode="raw") == b"old"
    assert store.get("k/0001", raise_on_nonexist=False) is None
    # the store works on
    store.put_many(items[:3], serialization_mode="raw")
    assert store.get("k/0000", serialization_mode="raw") == b"n" * 1024


def test_put_many_mixes_large_and_small_values_and_long_batches(store):
    """Values over the hex limit go through bound parameters in the same batch (MySQL), batches
    longer than one statement are split (SQLite, MySQL); all of it in key order, upserted."""
    store.put("m/5", b"old", serialization_mode="raw")
    created = store.info("m/5").created_at
    big = bytes(range(256)) * 1024  # 256 KiB
    items = [(f"m/{i}", big if i % 7 == 0 else f"v{i}".encode() * 300) for i in range(1500)]
    assert store.put_many(items, ttl=60, serialization_mode="raw", batch_size=len(items)) == len(items)
    assert dict(store.get_many([key for key, _ in items], serialization_mode="raw")) == dict(items)
    assert store.info("m/5").created_at == created
    assert _rows(store) == 1500


def test_iterate_keys_streams_and_stops_early(store):
    store.put_many({f"k/{i:05d}": i for i in range(3000)})
    keys = store.iterate_keys(prefix="k/")
    first = [next(keys) for _ in range(10)]
    keys.close()
    assert len(set(first)) == 10
    assert len(list(store.iterate_keys(prefix="k/"))) == 3000
    store.put("after", 1)  # no connection or lock is left behind
    assert store.get("after") == 1


def test_column_types(store_factory):
    import sqlalchemy as sa

    store = store_factory("mysql")
    store.put("k", 1)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT column_name, column_type, collation_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = :t"
            ),
            {"t": store.table_name},
        ).all()
    columns = {name.lower(): (kind.lower(), collation) for name, kind, collation in rows}
    assert columns["key"][0] == "varchar(768)"
    assert columns["key"][1] in ("utf8mb4_nopad_bin", "utf8mb4_0900_bin")  # exact, NO PAD
    assert columns["value"][0] == "longblob"
    assert columns["timestamp"][0] == "datetime(6)"
    assert columns["ttl"][0] == "bigint(20)"
    assert columns["created_at"][0] == "datetime(6)"


def test_postgres_column_types(store_factory):
    import sqlalchemy as sa

    store = store_factory("postgres")
    store.put("k", 1)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT column_name, data_type, collation_name FROM information_schema.columns WHERE table_name = :t"
            ),
            {"t": store.table_name},
        ).all()
    columns = {name: (kind, collation) for name, kind, collation in rows}
    assert columns["key"] == ("character varying", "C")
    assert columns["value"][0] == "bytea"


def test_mysql_key_length_limit(store_factory):
    store = store_factory("mysql")
    store.put("k" * 768, 1)
    assert store.get("k" * 768) == 1
    with pytest.raises(InvalidKey):
        store.put("k" * 769, 1)


def test_sqlite_runs_in_wal_mode(store_factory):
    import sqlalchemy as sa

    store = store_factory("sqlite")
    store.put("k", 1)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar_one() >= 30000


def test_sqlite_batch_runs_under_bulk_pragmas_and_restores_them(tmp_path):
    from anystore_cli.backends.sql.sqlite import BULK_PRAGMAS
    from anystore_cli.store.base import as_backend

    store = get_store(f"sqlite:///{tmp_path}/bulk.db")
    store.put("first", 1)
    backend = as_backend(store)
    connection = backend._light_for_write().connection
    before = {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in BULK_PRAGMAS}
    seen: dict[str, int] = {}

    def trace(statement: str) -> None:
        if statement.startswith("INSERT"):
            seen.update({name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in BULK_PRAGMAS})

    connection.set_trace_callback(trace)
    try:
        store.put_many([(f"k{i}", b"v") for i in range(1000)], serialization_mode="raw")
    finally:
        connection.set_trace_callback(None)
    assert seen == BULK_PRAGMAS
    assert {name: connection.execute(f"PRAGMA {name}").fetchone()[0] for name in BULK_PRAGMAS} == before
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: never off
    assert len(list(store.iterate_keys())) == 1001


def test_sqlite_file_and_in_memory_paths_keep_creation_times_alike(tmp_path):
    """The `sqlite3` path of a file and SQLAlchemy's of an in-memory database overwrite alike."""
    for uri in (f"sqlite:///{tmp_path}/alike.db", "sqlite://"):
        store = get_store(uri)
        store.put("k", 1)
        created = store.info("k").created_at
        time.sleep(0.01)
        store.put("k", 2)
        store.put_many([("k", b"3"), ("j", b"4")], serialization_mode="raw")
        info = store.info("k")
        assert store.get("k", serialization_mode="raw") == b"3", uri
        assert info.created_at == created, uri
        assert info.updated_at > created, uri


def test_sqlite_file_table_is_the_table_sqlalchemy_defines(tmp_path):
    """A file's table created through `sqlite3` is the one `schema.build_table` defines."""
    import sqlite3

    from anystore_cli.backends.sql import SqlStore

    SqlStore(uri=f"sqlite:///{tmp_path}/light.db", backend_config={"table": "t"}).put("k", b"v")
    alchemy = SqlStore(uri=f"sqlite:///{tmp_path}/alchemy.db?check_same_thread=false", backend_config={"table": "t"})
    alchemy.ensure_table()

    def layout(name: str) -> tuple:
        with sqlite3.connect(tmp_path / name) as connection:
            columns = connection.execute("PRAGMA table_info(t)").fetchall()
            indexes = [row[1:] for row in connection.execute("PRAGMA index_list(t)").fetchall()]
            index_columns = connection.execute("PRAGMA index_info(ix_t_ttl)").fetchall()
            sql = connection.execute("SELECT sql FROM sqlite_master WHERE name = 't'").fetchone()[0]
            return columns, sorted(indexes), index_columns, sql.rstrip().endswith("WITHOUT ROWID")

    assert layout("light.db") == layout("alchemy.db")


def test_sqlite_file_batches_from_parallel_threads_each_commit(tmp_path):
    """`load -j N` writes batches of one store from N threads: each its own transaction."""
    from concurrent.futures import ThreadPoolExecutor

    store = get_store(f"sqlite:///{tmp_path}/threads.db")
    store.put("first", 1)

    def batch(n: int) -> int:
        items = [(f"t{n}/{i}", b"v") for i in range(2000)]
        return store.put_many(items, serialization_mode="raw")

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(batch, range(8))) == 16000
    assert len(list(store.iterate_keys(prefix="t"))) == 16000


def test_readonly_store_does_not_create_its_table(tmp_path):
    store = get_store(f"sqlite:///{tmp_path}/ro.db", readonly=True)
    with pytest.raises(StoreError, match="does not exist"):
        store.get("k")


def test_missing_driver_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymysql", None)
    store = SqlStore(uri=f"mysql://root@127.0.0.1:3306/{unique()}")
    with pytest.raises(MissingDependency, match=r"anystore-cli\[sql\]"):
        store.get("k")


def _expect_store_error(uri: str, secret: str | None = None) -> None:
    store = SqlStore(uri=uri, backend_config={"table": unique()})
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "store failed" in message
    assert "\n" not in message
    if secret:
        assert secret not in message
        assert "***" in message


@pytest.mark.parametrize("scheme", ["postgresql", "mysql+pymysql"])
def test_unreachable_port_is_store_error(scheme):
    _expect_store_error(f"{scheme}://root:hunter2@127.0.0.1:1/test", "hunter2")


@pytest.mark.parametrize("scheme", ["postgresql", "mysql+pymysql"])
def test_silent_server_is_store_error_within_timeout(scheme):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        _expect_store_error(f"{scheme}://root:hunter2@127.0.0.1:{port}/test", "hunter2")


def test_wrong_mysql_password_is_store_error(mysql_url):
    host = mysql_url.split("@", 1)[1]
    _expect_store_error(f"mysql+pymysql://root:hunter2@{host}", "hunter2")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "mysql", "mariadb"])
def test_bare_schemes_connect_with_default_drivers(scheme, postgres_url, mysql_url):
    base = postgres_url if scheme.startswith("postgres") else mysql_url
    table = unique()
    store = get_store(f"{scheme}://{base.split('://', 1)[1]}", backend_config={"table": table})
    try:
        store.put("k", 1)
        assert store.get("k") == 1
    finally:
        import sqlalchemy as sa

        with store.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite(uri):
    store = get_store(uri, backend_config={"table": unique()})
    store.put("k", 1)
    assert store.get("k") == 1
    assert list(store.iterate_keys()) == ["k"]


# ---- a store that is not there ---------------------------------------------------------------

LISTINGS = [
    ["keys"],
    ["dump"],
    ["rm", "--prefix", "a", "-f"],
    ["get", "a"],
    ["info", "a"],
]


def test_cli_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path, cli):
    db = tmp_path / "missing.db"
    uri = f"sqlite:///{db}"
    for args in LISTINGS:
        done = cli("-s", uri, *args)
        assert done.returncode == 3, (args, done.stderr)
        assert f"`{db}` does not exist" in done.stderr.decode(), args
        assert not db.exists(), args
    for args in (["mirror", "-i", uri, "-o", str(tmp_path / "dst")], ["check", "-i", uri, "-o", str(tmp_path)]):
        done = cli(*args)
        assert done.returncode == 3, (args, done.stderr)
        assert str(db) in done.stderr.decode()
        assert not db.exists()
    assert cli("-s", uri, "exists", "a").returncode == 1  # no key there: a question, not a read
    assert not db.exists()
    assert cli("-s", uri, "put", "a", "1").returncode == 0  # a write creates it
    assert cli("-s", uri, "get", "a").stdout == b"1"


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_cli_missing_table_is_an_error_and_is_not_created(backend, store_factory, cli):
    import sqlalchemy as sa

    store = store_factory(backend)
    store.put("other", 1)  # the database (file) is there, the table asked for is not
    typo = unique("anystor")
    args = ["-s", store.uri, "-b", f"table={typo}"]
    for command in LISTINGS:
        done = cli(*args, *command)
        assert done.returncode == 3, (command, done.stderr)
        assert f"table `{typo}` does not exist" in done.stderr.decode(), command
    done = cli("mirror", "-i", store.uri, "--from-config", f"table={typo}", "-o", str(store_factory.tmp_path / "d"))
    assert done.returncode == 3, done.stderr
    assert typo in done.stderr.decode()
    assert not sa.inspect(store.engine).has_table(typo)
    try:
        assert cli(*args, "put", "a", "1").returncode == 0  # a write creates it
        assert cli(*args, "keys").stdout == b"a\n"
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE {typo}")


# ---- a table of this tool's earlier layout ------------------------------------------------------


def _earlier_table(store: SqlStore, name: str) -> None:
    """A table as this tool made it before it kept the library's layout, with three rows."""
    import sqlalchemy as sa

    engine = store.engine
    key = sa.String(768) if engine.dialect.name == "mysql" else sa.String()
    stamp = sa.DateTime()
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key", key, primary_key=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("expires_at", stamp),
    )
    now = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            table.insert(),
            [
                {"key": "a/1", "value": b"\x00\xff", "created_at": now - timedelta(days=2), "updated_at": now},
                {"key": "b", "value": b"ttl", "created_at": now, "updated_at": now},
                {"key": "gone", "value": b"x", "created_at": now, "updated_at": now},
            ],
        )
        conn.execute(table.update().where(table.c.key == "b").values(expires_at=now + timedelta(seconds=3600)))
        conn.execute(table.update().where(table.c.key == "gone").values(expires_at=now - timedelta(seconds=1)))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
def test_earlier_layout_is_refused_with_its_migration_which_works(backend, store_factory, cli):
    store = store_factory(backend)
    name = unique("earlier")
    if backend != "sqlite":
        store_factory.cleanups.append(lambda: drop_sql_table(store.uri, name))
    _earlier_table(store, name)
    done = cli("-s", store.uri, "-b", f"table={name}", "keys")
    assert done.returncode == 3
    message = done.stderr.decode()
    assert "earlier layout" in message
    command = message.split("migrate it once to the anystore library's: ", 1)[1].strip()
    assert command.startswith("python -m anystore_cli.backends.sql migrate ")
    migrated = subprocess.run(
        [sys.executable, "-m", "anystore_cli.backends.sql", "migrate", store.uri, name], capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated 2 keys" in migrated.stderr
    done = cli("-s", store.uri, "-b", f"table={name}", "keys", "--sort")
    assert (done.returncode, done.stdout) == (0, b"a/1\nb\n")
    assert cli("-s", store.uri, "-b", f"table={name}", "get", "a/1").stdout == b"\x00\xff"
    info = json.loads(cli("-s", store.uri, "-b", f"table={name}", "info", "a/1", "--json").stdout)
    assert info["created_at"] < info["updated_at"]  # the creation time is kept
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        ttl = conn.execute(sa.text(f"SELECT ttl FROM {name} WHERE {_quoted_key(store)} = 'b'")).scalar_one()
    assert ttl == 3600
    again = subprocess.run(
        [sys.executable, "-m", "anystore_cli.backends.sql", "migrate", store.uri, name], capture_output=True, text=True
    )
    assert again.returncode == 3 and "not of the earlier layout" in again.stderr


def _quoted_key(store: SqlStore) -> str:
    return "`key`" if store.engine.dialect.name == "mysql" else '"key"'


# ---- a table the library created: its four columns only ------------------------------------------


def _library_table(store: SqlStore, name: str) -> None:
    """The table as anystore 0.3.0/1.2 creates it (MySQL needs the key's length it leaves out)."""
    import sqlalchemy as sa

    key = sa.Unicode(255) if store.engine.dialect.name == "mysql" else sa.Unicode()
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key", key, primary_key=True, unique=True, index=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("ttl", sa.Integer(), nullable=True),
    )
    with store.engine.begin() as conn:
        table.create(conn)


def test_bulk_paths_write_a_table_of_the_librarys_four_columns(store_factory):
    import sqlalchemy as sa

    for backend in SQL_BACKENDS:
        base = store_factory(backend)
        name = unique("lib")
        if backend != "sqlite":
            store_factory.cleanups.append(lambda base=base, name=name: drop_sql_table(base.uri, name))
        _library_table(base, name)
        store = get_store(base.uri, backend_config={"table": name})
        items = [(f"k/{i:04d}", bytes([i % 256]) * (i + 1)) for i in range(600)]
        assert store.put_many(items, ttl=60, serialization_mode="raw", batch_size=len(items)) == len(items)
        # over existing keys: PostgreSQL's staging table, the other upserts
        items = [(key, value + b"!") for key, value in items[:10]] + [("new", b"\x00")]
        store.put_many(items, serialization_mode="raw")
        assert store.get("k/0000", serialization_mode="raw") == b"\x00!"
        assert store.get("k/0599", serialization_mode="raw") == bytes([599 % 256]) * 600
        assert store.get("new", serialization_mode="raw") == b"\x00"
        store.put("one", b"1", ttl=30, serialization_mode="raw")
        assert store.info("k/0000").created_at == store.info("k/0000").updated_at  # from `timestamp`
        with store.engine.connect() as conn:
            columns = {column["name"] for column in sa.inspect(conn).get_columns(name)}
            ttls = dict(conn.execute(sa.text(f"SELECT {_quoted_key(store)}, ttl FROM {name}")).all())
        assert columns == {"key", "value", "timestamp", "ttl"}  # never altered
        assert (ttls["k/0599"], ttls["k/0000"], ttls["new"], ttls["one"]) == (60, None, None, 30), backend
        assert len(list(store.iterate_keys())) == 602


def test_sqlite_file_listing_agrees_with_the_sqlalchemy_listing(tmp_path, cli):
    """A plain `sqlite:///path` lists through `sqlite3`; the same file named as a `file:` uri goes
    through SQLAlchemy. Both give the same keys, sizes and times, for every listing form."""
    db = tmp_path / "both.db"
    plain = f"sqlite:///{db}"
    assert cli("-s", plain, "put", "a/1", "one").returncode == 0
    assert cli("-s", plain, "put", "a/2", "second value", "--ttl", "3600").returncode == 0
    assert cli("-s", plain, "put", "b_%/3", "x").returncode == 0  # LIKE's wildcards, literally
    assert cli("-s", plain, "put", "a/1", "one, again").returncode == 0  # created and updated differ
    heavy = f"sqlite:///file:{db}?uri=true"

    def listed(uri: str, *args: str) -> list[Any]:
        done = cli("-s", uri, "keys", *args)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.decode().splitlines()
        if "--json" not in args:
            return lines
        return [{k: v for k, v in json.loads(line).items() if k not in ("store", "uri")} for line in lines]

    for args in (["--json"], ["-l"], ["--json", "--prefix", "a/"], ["--glob", "b_%/*"], ["--exclude-prefix", "a"]):
        assert listed(plain, *args) == listed(heavy, *args), args
    records = listed(plain, "--json")
    assert [record["key"] for record in records] == ["a/1", "a/2", "b_%/3"]
    first = records[0]
    assert first["size"] == len(b"one, again") and first["created_at"] < first["updated_at"]
    assert listed(plain, "--glob", "b_%/*") == ["b_%/3"]
