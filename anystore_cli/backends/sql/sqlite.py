"""SQLite through the standard library: the connection set-up every SQLite connection gets, and
the read path of a plain database file, without SQLAlchemy.

A `get` on SQLite spent most of its start-up importing SQLAlchemy (about 170 ms of 300) to run
one SELECT. Reads of a database file whose table exists go through `sqlite3` here, with the
same SQL the SQLAlchemy path runs: the same liveness test (`timestamp + ttl` as julianday), the
same time format, the same pragmas. Everything else (writes, listings, in-memory databases,
urls with options) stays on SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from anystore_cli.backends.sql.layout import to_utc

SQLITE_BUSY_TIMEOUT = 30
"""Seconds a SQLite writer waits for the file's lock before failing"""
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
"""How a time is bound in SQLite (as SQLAlchemy's DateTime stores it)"""


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


def parse_time(value: Any) -> datetime | None:
    """A time read from a SQLite column (text as SQLAlchemy or CURRENT_TIMESTAMP wrote it)."""
    if value is None or isinstance(value, datetime):
        return to_utc(value)
    return to_utc(datetime.fromisoformat(str(value)))


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class SqliteReader:
    """The reads of one table of a SQLite database file through `sqlite3`.

    Never creates the file: it is opened read-write (`mode=rw`), so a missing file is an error
    of the connection, which `columns` turns into None.
    """

    def __init__(self, path: str, table: str) -> None:
        self.path = path
        self.table = table
        self._quoted = '"' + table.replace('"', '""') + '"'
        self._connection: sqlite3.Connection | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, opened (and set up) on first use."""
        if self._connection is None:
            connection = sqlite3.connect(
                f"file:{quote(self.path)}?mode=rw",
                uri=True,
                timeout=SQLITE_BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
            sqlite_on_connect(connection)
            self._connection = connection
        return self._connection

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
        created = "coalesce(created_at, timestamp)" if created_at else "timestamp"
        columns = f"key, coalesce(length(value), 0), {created}, timestamp"
        return {
            row[0]: (int(row[1]), parse_time(row[2]), parse_time(row[3]))
            for row in self._select_keys(columns, keys, now)
        }

    def close(self) -> None:
        """Close the connection, if one is open."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
