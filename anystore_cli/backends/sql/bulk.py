"""Batched writes (`put_many`) of the SQL store, one transaction per batch, the fastest way each
database offers: PostgreSQL's binary COPY, SQLite's multi-row upserts under bulk pragmas, and
MySQL's multi-row upserts of hex literals."""

from __future__ import annotations

import contextlib
import io
import struct
from collections.abc import Generator
from datetime import datetime
from typing import Any

from anystore_cli.backends.sql._lazy import LazyModule
from anystore_cli.backends.sql.layout import utcnow
from anystore_cli.backends.sql.sqlite import upsert_many
from anystore_cli.backends.sql.watchdog import WATCHDOG

sa = LazyModule("sqlalchemy")
sa_exc = LazyModule("sqlalchemy.exc")

MYSQL_STATEMENT_BYTES = 512 * 1024
"""Characters of one pre-escaped MySQL multi-row upsert (max_allowed_packet is 1 MiB at least)"""
MYSQL_HEX_VALUE_LIMIT = 64 * 1024
"""Bytes of the largest value sent as a hex literal in a multi-row upsert"""
PG_UNIQUE_VIOLATION = "23505"

_PG_EPOCH = datetime(2000, 1, 1)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_COPY_NULL = struct.pack(">i", -1)
_pack_row_head = struct.Struct(">hi").pack
_pack_length = struct.Struct(">i").pack
_pack_timestamp = struct.Struct(">iq").pack


def _copy_timestamp(value: datetime | None) -> bytes:
    """A naive UTC timestamp as a field of PostgreSQL's binary COPY (microseconds since 2000)."""
    if value is None:
        return _COPY_NULL
    delta = value - _PG_EPOCH
    return _pack_timestamp(8, (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def copy_rows(
    values: dict[str, bytes], stamp: datetime, ttl: int | None, created: bool = True, ttl_bytes: int = 8
) -> bytes:
    """The rows (key, value, timestamp, ttl[, created_at]) of a batch in PostgreSQL's binary
    COPY format, in key order, every row with the same time and ttl.

    Binary fields need no escaping and no hex: the server copies the key's UTF-8 bytes and the
    value's bytes as they are, and parses no text timestamps.

    Args:
        values: The batch's keys and values
        stamp: timestamp (and created_at) of every row (naive UTC)
        ttl: ttl of every row in seconds, or None
        created: Whether the rows have the created_at column
        ttl_bytes: Size of the table's ttl column (8 for BIGINT, 4 for INTEGER)

    Returns:
        The whole COPY payload, header and trailer included
    """
    time_field = _copy_timestamp(stamp)
    ttl_field = _COPY_NULL if ttl is None else struct.pack(">iq" if ttl_bytes == 8 else ">ii", ttl_bytes, ttl)
    tail = time_field + ttl_field + (time_field if created else b"")
    head = 5 if created else 4
    parts = [_COPY_HEADER]
    append = parts.append
    for key in sorted(values):
        encoded = key.encode()
        value = values[key]
        append(_pack_row_head(head, len(encoded)))
        append(encoded)
        append(_pack_length(len(value)))
        append(value)
        append(tail)
    append(_COPY_TRAILER)
    return b"".join(parts)


class BulkWrites:
    """The `put_many` of `SqlStore`, by database."""

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        now = utcnow()
        self._writing.size = max((len(value) for _, value in items), default=0)
        values = dict(items)  # last one wins
        ttl = int(ttl) if ttl else None
        light = self._light_for_write()
        if light is not None:
            light.put_many(values, now, ttl, self.has_created_at)
            self._maybe_purge()
            return
        self.ensure_table()
        engine = self.engine
        if self._copy_batches():
            self._copy_many(values, now, ttl)
        elif engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
            self._retry(lambda: self._sqlite_many(values, now, ttl))
        elif self._is_mysql() and engine.dialect.driver == "pymysql":
            self._retry(lambda: self._mysql_many(values, now, ttl))
        else:
            # rows in key order: concurrent batches lock shared keys in the same order
            self._upsert_rows([self._row(key, bytes(values[key]), ttl, now) for key in sorted(values)])
        self._maybe_purge()

    def _sqlite_many(self, values: dict[str, bytes], now: datetime, ttl: int | None) -> None:
        """SQLite through SQLAlchemy's connection (an in-memory database, a url with options):
        the multi-row upserts of the `sqlite3` path, in the engine's transaction."""
        with self.engine.begin() as conn:
            dbapi_connection = conn.connection.dbapi_connection
            upsert_many(dbapi_connection, self._quoted_table(), values, now, ttl, self.has_created_at)

    def _mysql_upsert_parts(self) -> tuple[str, str]:
        """The MySQL upsert around its VALUES, compiled from `_upsert` as on SQLite (its update
        clause binds nothing: every `%%` in it is a literal `%`, as the SQL is sent unformatted)."""
        if self._mysql_parts_ is None:
            compiled = str(self._upsert().compile(dialect=self.engine.dialect))
            start = compiled.index(" VALUES (")
            end = compiled.index(" ON DUPLICATE KEY UPDATE", start)
            head = compiled[:start].replace("%%", "%") + " VALUES "
            self._mysql_parts_ = (head, compiled[end:].replace("%%", "%"))
        return self._mysql_parts_

    def _mysql_many(self, values: dict[str, bytes], now: datetime, ttl: int | None) -> None:
        """MySQL/MariaDB: the batch as multi-row upserts of pre-escaped SQL, each at most
        `MYSQL_STATEMENT_BYTES` long, in one transaction; keys and values are hex literals
        (`_utf8mb4 X'...'`, `X'...'`), so nothing is escaped row by row in Python and no
        `sql_mode` changes their meaning. A value over `MYSQL_HEX_VALUE_LIMIT` bytes goes alone
        through a bound parameter (hex would double it on the wire, towards max_allowed_packet).
        """
        head, tail = self._mysql_upsert_parts()
        stamp = f"'{now.isoformat(' ', 'microseconds')}'"
        row_tail = f",{stamp},{'NULL' if ttl is None else int(ttl)}" + (f",{stamp})" if self.has_created_at else ")")
        budget = MYSQL_STATEMENT_BYTES - len(head) - len(tail)
        with self.engine.begin() as conn:
            rows: list[str] = []
            size = 0

            def flush() -> None:
                # the SQL holds its values: no `%` formatting by the driver
                conn.exec_driver_sql(head + ",".join(rows) + tail, execution_options={"no_parameters": True})

            for key in sorted(values):  # key order: concurrent batches lock shared keys alike
                value = values[key]
                if len(value) > MYSQL_HEX_VALUE_LIMIT:
                    if rows:
                        flush()
                        rows, size = [], 0
                    conn.execute(self._upsert(), self._row(key, bytes(value), ttl, now))
                    continue
                row = f"(_utf8mb4 X'{key.encode().hex()}',X'{value.hex()}'{row_tail}"
                if rows and size + len(row) + 1 > budget:
                    flush()
                    rows, size = [], 0
                rows.append(row)
                size += len(row) + 1
            if rows:
                flush()

    def _quoted_table(self) -> str:
        """The table's name, quoted for the database's SQL."""
        return self.engine.dialect.identifier_preparer.format_table(self.table)

    def _copy_batches(self) -> bool:
        """Whether batches go through COPY (PostgreSQL through psycopg2)."""
        engine = self.engine
        return engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2"

    def _copy_many(self, values: dict[str, bytes], now: datetime, ttl: int | None) -> None:
        """PostgreSQL: COPY the batch (binary format) straight into the table; where a key of it
        exists already, COPY it into a staging table instead and upsert from there.

        The first batch whose COPY meets an existing key (a unique violation: the transaction is
        rolled back, nothing of it stays) switches the store to the staging path for the rest of
        its life, so a load over existing keys pays for one failed COPY only. The staging table is
        temporary and dropped at commit; the rows go in key order (concurrent batches lock shared
        keys in the same order), with the timestamp and ttl the plain path would give them.
        """
        ttl_bytes = 8 if isinstance(self.table.c.ttl.type, sa.BigInteger) else 4
        data = copy_rows(values, now, ttl, created=self.has_created_at, ttl_bytes=ttl_bytes)
        if not self._copy_conflicts:
            try:
                self._retry(lambda: self._copy_into(data, staged=False))
                return
            except sa_exc.DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) != PG_UNIQUE_VIOLATION:
                    raise
                self._copy_conflicts = True
        self._retry(lambda: self._copy_into(data, staged=True))

    def _copy_into(self, data: bytes, staged: bool) -> None:
        """One transaction: COPY `data` into the table, or into a staging table and upsert."""
        with self.engine.begin() as conn:
            dbapi_connection = conn.connection.dbapi_connection
            if dbapi_connection.encoding not in ("UTF8", "UNICODE"):  # the keys are UTF-8
                conn.exec_driver_sql("SET LOCAL client_encoding TO 'UTF8'")
            if staged:  # the table's own column types: the binary rows must match them
                conn.exec_driver_sql(
                    f"CREATE TEMPORARY TABLE anystore_staging (LIKE {self._quoted_table()}) ON COMMIT DROP"
                )
            target = "anystore_staging" if staged else self._quoted_table()
            quote = self.engine.dialect.identifier_preparer.quote
            columns = ", ".join(quote(name) for name in self._columns())
            copy = f"COPY {target} ({columns}) FROM STDIN WITH (FORMAT binary)"
            with self._driver_errors(conn, copy), dbapi_connection.cursor() as cursor:
                watch = WATCHDOG.watching(dbapi_connection, self.timeout) if self.timeout else None
                with watch or contextlib.nullcontext():
                    cursor.copy_expert(copy, io.BytesIO(data))
            if staged:
                conn.execute(self._staged_upsert())

    @contextlib.contextmanager
    def _driver_errors(self, conn: Any, statement: str) -> Generator[None, None, None]:
        """Errors of a call on the driver's own cursor raised as SQLAlchemy's, as `execute` raises
        them (so deadlocks are retried and messages translated). A lost connection is invalidated
        and the pool emptied, so the next call does not wait on another connection to the same
        silent server."""
        dialect = self.engine.dialect
        error = dialect.loaded_dbapi.Error
        try:
            yield
        except error as exc:
            lost = bool(dialect.is_disconnect(exc, conn.connection.dbapi_connection, None))
            if lost:  # as SQLAlchemy does on a disconnect: this connection and the pooled ones go
                conn.invalidate(exc)
                self.engine.dispose(close=False)
            raise sa_exc.DBAPIError.instance(
                statement, None, exc, error, hide_parameters=True, connection_invalidated=lost, dialect=dialect
            ) from exc

    def _staged_upsert(self) -> Any:
        """The upsert of the staging table's rows, in key order (built once: its compiled form is cached)."""
        if self._staged_upsert_ is None:
            names = self._columns()
            staging = sa.table("anystore_staging", *(sa.column(name) for name in names))
            select = sa.select(*(staging.c[name] for name in names)).order_by(staging.c.key)
            self._staged_upsert_ = self._upsert(select)
        return self._staged_upsert_
