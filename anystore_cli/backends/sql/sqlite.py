"""SQLite through the standard library: the connection set-up every SQLite connection gets, and
the read path of a plain database file, without SQLAlchemy.

A `get` on SQLite spent most of its start-up importing SQLAlchemy (about 170 ms of 300) to run
one SELECT. Reads of a database file whose table exists go through `sqlite3` here, with the
same SQL the SQLAlchemy path runs: the same liveness test (`timestamp + ttl` as julianday), the
same time format, the same pragmas. Writes and listings of such a file go through it too.
In-memory databases, urls with options, `pop`, server copies, migration and the lock stay on
SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from anystore_cli.backends.sql.layout import LIKE_ESCAPE, escape_like, index_name, layout_problem, to_utc
from anystore_cli.errors import StoreError, StoreNotFound

SQLITE_BUSY_TIMEOUT = 30
"""Seconds a SQLite writer waits for the file's lock before failing"""
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
"""How a time is bound in SQLite (as SQLAlchemy's DateTime stores it)"""
ROWS_PER_STATEMENT = 400
"""Rows of one multi-row upsert (2 parameters each, 2 shared: under the old limit of 999)"""
BULK_PRAGMAS = {"cache_size": -64 * 1024, "wal_autocheckpoint": 16 * 1024}
"""Set while a connection writes a batch, restored after: a page cache of 64 MiB (the default
is 2 MiB), so the table's and the index's pages of a batch stay in memory until the commit, and
a checkpoint (two fsyncs) every 64 MiB of WAL instead of every 4 MiB. `synchronous` stays NORMAL:
turning it off would trade the file's safety against a power cut for speed"""


def sqlite_on_connect(dbapi_connection: Any, _record: Any = None) -> None:
    """Set up a new SQLite connection: wait for the file's lock, WAL, exact LIKE."""
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT * 1000}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # exact (and indexable) LIKE for the prefix narrowing
    cursor.execute("PRAGMA case_sensitive_like = ON")
    cursor.close()


def plain_file(uri: str) -> str | None:
    """The path of a `sqlite:///path` uri naming a database file and nothing else, or None
    (in-memory databases, `file:` uris, query options, another driver, quoted characters)."""
    scheme, sep, rest = uri.partition(":///")
    if not sep or scheme != "sqlite" or not rest or any(char in rest for char in "?#%"):
        return None
    if rest == ":memory:" or rest.startswith("file:"):
        return None
    return rest


def sqlite_live(now_param: str = "?") -> str:
    """The SQL test of a live row at the bound time `now_param` (the negation of the expiry)."""
    return (
        "NOT (ttl IS NOT NULL AND timestamp IS NOT NULL"
        f" AND julianday(timestamp) + ttl / 86400.0 <= julianday({now_param}))"
    )


def _expired(table: str, now: str) -> str:
    """The SQL test of an expired row of `table` at the time `now` (a parameter or column)."""
    return (
        f"{table}.ttl IS NOT NULL AND {table}.timestamp IS NOT NULL"
        f" AND julianday({table}.timestamp) + {table}.ttl / 86400.0 <= julianday({now})"
    )


@functools.lru_cache(maxsize=32)
def upsert_sql(table: str, rows: int, created_at: bool) -> str:
    """The upsert of `rows` rows into the quoted `table`: parameter 1 is the timestamp (and
    created_at), 2 the ttl, then key and value of each row.

    An overwrite takes the new value, timestamp and ttl, and keeps the row's creation time
    (its `timestamp` where the library wrote it) unless the old row had expired.
    """
    columns = '"key", "value", "timestamp", "ttl"' + (', "created_at"' if created_at else "")
    shared = ",?1,?2,?1)" if created_at else ",?1,?2)"
    values = ",".join(f"(?{3 + 2 * i},?{4 + 2 * i}{shared}" for i in range(rows))
    update = "value = excluded.value, timestamp = excluded.timestamp, ttl = excluded.ttl"
    if created_at:
        kept = f"coalesce({table}.created_at, {table}.timestamp)"
        expired = _expired(table, "excluded.timestamp")
        update += f", created_at = CASE WHEN ({expired}) THEN excluded.created_at ELSE {kept} END"
    return f'INSERT INTO {table} ({columns}) VALUES {values} ON CONFLICT ("key") DO UPDATE SET {update}'


def upsert_many(
    connection: sqlite3.Connection,
    table: str,
    values: dict[str, bytes],
    now: datetime,
    ttl: int | None,
    created_at: bool,
) -> None:
    """Upsert `values` into the quoted `table` with one time and ttl, in key order, as
    multi-row statements (about twice as fast as `executemany` of one row each: one statement
    to step, and nothing converted per row in Python). The caller holds the transaction."""
    fixed = [now.strftime(TIME_FORMAT), ttl]
    keys = sorted(values)
    for start in range(0, len(keys), ROWS_PER_STATEMENT):
        chunk = keys[start : start + ROWS_PER_STATEMENT]
        params = list(fixed)
        for key in chunk:
            params.append(key)
            params.append(values[key])
        connection.execute(upsert_sql(table, len(chunk), created_at), params)


def info_columns(created_at: bool) -> str:
    """Key, size, creation and update time in SQL: `created_at` where the table keeps it, else
    the library's `timestamp` (the time of the last write) for both."""
    created = "coalesce(created_at, timestamp)" if created_at else "timestamp"
    return f"key, coalesce(length(value), 0), {created}, timestamp"


def parse_time(value: Any) -> datetime | None:
    """A time read from a SQLite column (text as SQLAlchemy or CURRENT_TIMESTAMP wrote it)."""
    if value is None or isinstance(value, datetime):
        return to_utc(value)
    return to_utc(datetime.fromisoformat(str(value)))


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class SqliteFile:
    """The reads and writes of one table of a SQLite database file through `sqlite3`.

    Never creates the file: it is opened read-write (`mode=rw`), so a missing file is an error
    of the connection, which `columns` turns into None.
    """

    def __init__(self, path: str, table: str) -> None:
        self.path = path
        self.table = table
        self._quoted = '"' + table.replace('"', '""') + '"'
        self._local = threading.local()  # one connection a thread: each holds its own transaction
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, opened (and set up) on first use; it never creates the file."""
        return self._connect("rw")

    def _open(self, mode: str) -> sqlite3.Connection:
        """A new connection to the file (`mode` `rw`, or `rwc` to create it), set up."""
        connection = sqlite3.connect(
            f"file:{quote(self.path)}?mode={mode}",
            uri=True,
            timeout=SQLITE_BUSY_TIMEOUT,
            isolation_level=None,
            check_same_thread=False,
        )
        sqlite_on_connect(connection)
        return connection

    def _connect(self, mode: str) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._open(mode)
            self._local.connection = connection
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    def create_table(self) -> None:
        """Create the file and the table (with `created_at` and the index on `ttl`) where missing,
        as `schema.build_table` defines them for SQLite."""
        table = self._quoted
        index = '"' + index_name(self.table).replace('"', '""') + '"'
        self._connect("rwc")  # the one connection that may create the file
        with self._transaction() as connection:  # holds the write lock: no other process creates it meanwhile
            if connection.execute(f"PRAGMA table_info({table})").fetchone() is not None:
                return
            connection.execute(
                f'CREATE TABLE {table} ("key" VARCHAR NOT NULL, "value" BLOB NOT NULL,'
                ' "timestamp" DATETIME DEFAULT CURRENT_TIMESTAMP, "ttl" BIGINT, "created_at" DATETIME,'
                ' PRIMARY KEY ("key")) WITHOUT ROWID'
            )
            connection.execute(f"CREATE INDEX {index} ON {table} (ttl)")

    def columns(self) -> set[str] | None:
        """The table's column names (lower case), or None where the table does not exist."""
        rows = self.connection.execute(f"PRAGMA table_info({self._quoted})").fetchall()
        return {str(row[1]).lower() for row in rows} or None

    def read(self, key: str, now: datetime) -> bytes | None:
        """The live value of `key`, or None."""
        sql = f"SELECT value FROM {self._quoted} WHERE key = ? AND {sqlite_live()}"
        row = self.connection.execute(sql, (key, now.strftime(TIME_FORMAT))).fetchone()
        return None if row is None or row[0] is None else _bytes(row[0])

    def exists(self, key: str, now: datetime) -> bool:
        """Whether `key` has a live row."""
        sql = f"SELECT 1 FROM {self._quoted} WHERE key = ? AND {sqlite_live()}"
        return self.connection.execute(sql, (key, now.strftime(TIME_FORMAT))).fetchone() is not None

    def _select_keys(self, columns: str, keys: list[str], now: datetime) -> Iterator[tuple[Any, ...]]:
        """Rows of `columns` (the key first) of the live rows among `keys`, in one SELECT each
        few hundred keys (under SQLite's limit of bound parameters)."""
        unique = sorted(set(keys))
        stamp = now.strftime(TIME_FORMAT)
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            live = sqlite_live(f"?{len(chunk) + 1}")  # bound after the keys
            sql = f"SELECT {columns} FROM {self._quoted} WHERE key IN ({marks}) AND {live}"
            yield from self.connection.execute(sql, (*chunk, stamp))

    def get_many(self, keys: list[str], now: datetime) -> dict[str, bytes]:
        """The live values among `keys`, by key."""
        return {key: _bytes(value) for key, value in self._select_keys("key, value", keys, now) if value is not None}

    def info_many(self, keys: list[str], now: datetime, created_at: bool) -> dict[str, tuple[int, Any, Any]]:
        """Size, creation and update time of the live rows among `keys`, by key."""
        columns = info_columns(created_at)
        return {
            row[0]: (int(row[1]), parse_time(row[2]), parse_time(row[3]))
            for row in self._select_keys(columns, keys, now)
        }

    def listing(
        self, columns: str, now: datetime, literal: str | None, exclude: str | None, batch: int
    ) -> Iterator[tuple[Any, ...]]:
        """Rows of `columns` (the key first) of the live rows whose key starts with `literal`
        and not with `exclude`, streamed `batch` rows at a time, in key order.

        The SELECT runs on a connection of its own, which ends with the listing: a caller may
        write to the table while it iterates (`rm --prefix`) without changing the rows the
        SELECT still has to give (WAL gives the reader a snapshot).
        """
        where, params = [sqlite_live()], [now.strftime(TIME_FORMAT)]
        if literal:
            where.append(f"key LIKE ? ESCAPE '{LIKE_ESCAPE}'")
            params.append(escape_like(literal) + "%")
        if exclude:
            where.append(f"NOT key LIKE ? ESCAPE '{LIKE_ESCAPE}'")
            params.append(escape_like(exclude) + "%")
        sql = f"SELECT {columns} FROM {self._quoted} WHERE {' AND '.join(where)} ORDER BY key"
        connection = self._open("rw")
        try:
            cursor = connection.execute(sql, params)
            while rows := cursor.fetchmany(batch):
                yield from rows
        finally:
            connection.close()

    @contextlib.contextmanager
    def _transaction(self, bulk: bool = False) -> Generator[sqlite3.Connection, None, None]:
        """A write transaction (taking the file's write lock at once), committed at the end;
        with `bulk`, under `BULK_PRAGMAS`."""
        connection = self.connection
        saved: dict[str, int] = {}
        if bulk:
            for name, value in BULK_PRAGMAS.items():
                saved[name] = int(connection.execute(f"PRAGMA {name}").fetchone()[0])
                connection.execute(f"PRAGMA {name} = {int(value)}")
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
        finally:
            for name, value in saved.items():
                connection.execute(f"PRAGMA {name} = {value}")

    def put_many(self, values: dict[str, bytes], now: datetime, ttl: int | None, created_at: bool) -> None:
        """Upsert `values` in one transaction."""
        with self._transaction(bulk=len(values) > ROWS_PER_STATEMENT) as connection:
            upsert_many(connection, self._quoted, values, now, ttl, created_at)

    def insert_new(self, key: str, value: bytes, now: datetime, ttl: int | None, created_at: bool) -> bool:
        """Insert `key` unless it has a live row (an expired one is replaced); whether it did."""
        stamp = now.strftime(TIME_FORMAT)
        table = self._quoted
        columns = '"key", "value", "timestamp", "ttl"' + (', "created_at"' if created_at else "")
        shared = "?1,?2,?1" if created_at else "?1,?2"
        with self._transaction() as connection:
            connection.execute(f'DELETE FROM {table} WHERE "key" = ?3 AND {_expired(table, "?1")}', (stamp, ttl, key))
            cursor = connection.execute(
                f'INSERT INTO {table} ({columns}) VALUES (?3,?4,{shared}) ON CONFLICT ("key") DO NOTHING',
                (stamp, ttl, key, value),
            )
            return cursor.rowcount == 1

    def delete(self, key: str, now: datetime) -> bool:
        """Delete the live row of `key`; whether there was one."""
        sql = f'DELETE FROM {self._quoted} WHERE "key" = ? AND {sqlite_live()}'
        with self._transaction() as connection:
            return connection.execute(sql, (key, now.strftime(TIME_FORMAT))).rowcount == 1

    def purge(self, now: datetime) -> int:
        """Delete the expired rows; how many went."""
        with self._transaction() as connection:
            sql = f"DELETE FROM {self._quoted} WHERE {_expired(self._quoted, '?')}"
            return connection.execute(sql, (now.strftime(TIME_FORMAT),)).rowcount or 0

    def close(self) -> None:
        """Close the connections of every thread."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()
        self._local = threading.local()


class SqliteFileAccess:
    """How `SqlStore` decides between its `sqlite3` path and SQLAlchemy for a SQLite file."""

    _sqlite_reader: SqliteFile | None
    """The file's reader and writer, for a plain `sqlite:///path` uri"""
    _sqlite_columns: set[str] | None
    """The table's columns, once the `sqlite3` path found it of the library's layout"""

    def _light(self) -> SqliteFile | None:
        """The `sqlite3` reader of a SQLite database file whose table exists and has the
        library's layout, or None where the read goes through SQLAlchemy (not a plain file, or
        a read that creates a missing table).

        Raises:
            StoreNotFound: If the file or the table does not exist and a read may not create them
            StoreError: If the table is not of the library's layout
        """
        reader = self._sqlite_reader
        if reader is None:
            return None
        if self._sqlite_columns is None:
            create = self.create_missing and not self.readonly
            import os

            if not os.path.exists(reader.path):
                if create:
                    return None
                raise StoreNotFound(self._describe(None, f"the SQLite database file `{reader.path}` does not exist"))
            columns = reader.columns()
            if columns is None:
                if create:
                    return None
                raise StoreNotFound(self._describe(None, f"table `{self.table_name}` does not exist"))
            problem = layout_problem(columns, self.table_name, self.uri)
            if problem is not None:
                raise StoreError(self._describe(None, problem))
            self._sqlite_columns = columns
        return reader

    def _light_for_write(self) -> SqliteFile | None:
        """The `sqlite3` writer of a SQLite database file (its table created through
        SQLAlchemy's definition first, where missing), or None where writes go through SQLAlchemy
        (not a plain file, or a read-only store, which refuses there)."""
        reader = self._sqlite_reader
        if reader is None or self.readonly:
            return None
        if self._sqlite_columns is None:
            import os

            if not os.path.exists(reader.path) or reader.columns() is None:
                reader.create_table()
        return self._light()

    def _light_if_there(self) -> SqliteFile | bool:
        """`_light()`, or False where the store is not there (as `_table_if_there`)."""
        try:
            return self._light() or False
        except StoreNotFound:
            return False
