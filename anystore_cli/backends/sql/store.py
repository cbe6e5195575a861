"""The SQL store: one table of a SQL database, through SQLAlchemy, and through `sqlite3` for
the reads of a SQLite database file."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from anystore_cli.backends.sql._lazy import LazyModule
from anystore_cli.backends.sql.bulk import BulkWrites
from anystore_cli.backends.sql.layout import (
    CONNECT_TIMEOUT,
    DEFAULT_TABLE,
    DEFAULT_TIMEOUT,
    LIBRARY_COLUMNS,
    MYSQL_KEY_LENGTH,
    POSTGRES_KEY_BYTES,
    TABLE_NAME_LIMITS,
    layout_problem,
    parse_timeout,
    utcnow,
)
from anystore_cli.backends.sql.listing import Listing, row_stats
from anystore_cli.backends.sql.sqlite import SqliteFile, SqliteFileAccess, plain_file
from anystore_cli.backends.sql.watchdog import WATCHDOG
from anystore_cli.errors import AlreadyExists, InvalidKey, InvalidUri, StoreError, StoreNotFound
from anystore_cli.store.base import BaseStore, Capabilities, VirtualIOMixin
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.options import Option
from anystore_cli.util.uri import mask_uri

if TYPE_CHECKING:
    import sqlalchemy
    from sqlalchemy.engine import Engine

sa = LazyModule("sqlalchemy")
sa_exc = LazyModule("sqlalchemy.exc")

PACKET_OVERHEAD = 64 * 1024
"""Bytes a write statement adds to its value on the wire (key, timestamps, SQL text), about"""
MIN_PACKET_SUSPECT = 1024 * 1024
"""A lost connection is put down to max_allowed_packet only for writes at least this big (the
servers' default is 16 MiB or more; a smaller write that loses its connection met a server or
network fault, and asking that server for its setting could wait again)"""
_PACKET_CODES = {1153, 1301, 2006, 2013}
"""MySQL errors of a write over max_allowed_packet: too big, result too big, gone away, lost"""
PURGE_PROBABILITY = 0.01
"""Chance that a write also deletes the expired rows of the table"""
_DEADLOCK_CODES = {1205, 1213, "40P01"}  # MySQL: lock wait timeout, deadlock; PostgreSQL: deadlock

T = TypeVar("T")


class SqlStore(SqliteFileAccess, Listing, BulkWrites, VirtualIOMixin, BaseStore):
    """A store in one table of a SQL database, with ttl support."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("table", "text", "anystore", help="The table of the store"),
        Option("timeout", "float", help="Seconds a statement may take (0: no limit)"),
        Option("connect_timeout", "float", help="Seconds to connect to the server (0: no limit)"),
    )

    # a load commits every 5,000 keys: a commit waits on the server's disk (PostgreSQL and
    # MariaDB spent a third of a load of small keys in 100 commits of 1,000)
    capabilities: ClassVar[Capabilities] = Capabilities(
        ttl=True, server_copy=True, leases="anystore_cli.backends.leases.sql:SqlLeases", md5=True, bulk_batch_keys=5000
    )
    create_missing: bool = False
    """Whether a read creates a missing table (and SQLite file) as a write does: off, so a store
    that is not there is an error; the library face turns it on, as the anystore library
    creates its table when a store is made"""

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        config = self.backend_config or {}
        self.table_name = str(config.get("table") or DEFAULT_TABLE)
        dialect = self.uri.split(":", 1)[0].split("+")[0]
        limit = TABLE_NAME_LIMITS.get(dialect)
        if limit is not None and len(self.table_name.encode()) > limit:
            raise InvalidUri(
                f"Store `{mask_uri(self.uri)}`: table name `{self.table_name[:40]}...` is longer than {limit} bytes"
            )
        self._writing = threading.local()  # the size of the largest value of the write under way
        self.timeout = parse_timeout(config.get("timeout"), "timeout", DEFAULT_TIMEOUT, self.uri)
        self.connect_timeout = parse_timeout(
            config.get("connect_timeout"), "connect_timeout", CONNECT_TIMEOUT, self.uri
        )
        self._engine_: Engine | None = None
        self._table_: sqlalchemy.Table | None = None
        self._copy_conflicts = False  # PostgreSQL: a COPY met an existing key, batches now upsert
        self._staged_upsert_: Any = None
        self._mysql_parts_: tuple[str, str] | None = None
        path = plain_file(self.uri)
        self._sqlite_reader = SqliteFile(path, self.table_name) if path is not None else None
        self._sqlite_columns: set[str] | None = None

    @property
    def backend_errors(self) -> tuple[type[BaseException], ...]:  # type: ignore[override]
        """The database's errors: `sqlite3`'s, and SQLAlchemy's once something imported it
        (nothing can raise them before)."""
        import sqlite3

        errors: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
        if "sqlalchemy" in sys.modules:
            errors += (sa_exc.DBAPIError, sa_exc.TimeoutError)
        return errors

    # ---- connection, table and errors --------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use, shared per uri within the process)."""
        if self._engine_ is None:
            if self.readonly:
                self._refuse_missing_sqlite_file()
            from anystore_cli.backends.sql.engine import get_engine

            self._engine_ = get_engine(self.uri, self.timeout, self.connect_timeout)
        return self._engine_

    def _refuse_missing_sqlite_file(self) -> None:
        """A read never creates the SQLite file (connecting would): a missing file is a missing store."""
        from anystore_cli.backends.sql.engine import sqlalchemy_url

        url = sqlalchemy_url(self.uri)
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
            return
        import os

        if not os.path.exists(path):
            raise StoreNotFound(self._describe(None, f"the SQLite database file `{path}` does not exist"))

    @property
    def table(self) -> sqlalchemy.Table:
        """The store's table as it is in the database.

        Raises:
            StoreNotFound: If the table (or the SQLite file) does not exist: a read creates
                neither (unless `create_missing` is set)
        """
        if self._table_ is None:
            self._table_ = self._resolve_table(create=self.create_missing and not self.readonly)
        return self._table_

    def ensure_table(self) -> sqlalchemy.Table:
        """The store's table, created (with the SQLite file) when missing, as a write does.

        Raises:
            StoreError: If the store is read-only and the table does not exist
        """
        if self._table_ is None:
            self._table_ = self._resolve_table(create=not self.readonly)
        return self._table_

    @property
    def has_created_at(self) -> bool:
        """Whether the table keeps creation times in `created_at` (a table this tool created)."""
        if self._sqlite_columns is not None:
            return "created_at" in self._sqlite_columns
        return "created_at" in self.table.c

    def _resolve_table(self, create: bool) -> sqlalchemy.Table:
        from anystore_cli.backends.sql.schema import TABLES, build_table

        cache_key = (self.uri, self.table_name)
        table = TABLES.get(cache_key)
        if table is not None:
            return table
        if not create:
            self._refuse_missing_sqlite_file()
        engine = self.engine
        with engine.connect():  # learn the server version before choosing column types
            pass
        inspector = sa.inspect(engine)
        if inspector.has_table(self.table_name):
            table = self._existing_table(inspector.get_columns(self.table_name))
        elif not create:
            raise StoreNotFound(self._describe(None, f"table `{self.table_name}` does not exist"))
        else:
            table = build_table(self.table_name, engine)
            try:
                with engine.begin() as conn:
                    table.create(conn, checkfirst=True)
            except sa_exc.DBAPIError:
                # another process created it at the same moment
                if not sa.inspect(engine).has_table(self.table_name):
                    raise
                table = self._existing_table(sa.inspect(engine).get_columns(self.table_name))
        TABLES[cache_key] = table
        return table

    def _existing_table(self, columns: list[dict[str, Any]]) -> sqlalchemy.Table:
        """An existing table, of the library's layout, or refused with what to do about it."""
        from anystore_cli.backends.sql.schema import reflect_table

        problem = layout_problem({column["name"].lower() for column in columns}, self.table_name, self.uri)
        if problem is not None:
            raise StoreError(self._describe(None, problem))
        return reflect_table(self.table_name, self.engine, columns)

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Generator[None, None, None]:
        """Translate database errors into `StoreError` with the driver's one-line message."""
        try:
            with super()._errors(key):
                yield
        except StoreError as exc:
            cause = exc.__cause__
            import sqlite3

            if isinstance(cause, sqlite3.Error):
                detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                raise StoreError(self._describe(key, f"store failed: {mask_uri(detail)}")) from cause
            if "sqlalchemy" in sys.modules and isinstance(cause, sa_exc.DBAPIError):
                detail = str(cause.orig).strip().splitlines()[0] if cause.orig is not None else type(cause).__name__
                waited = WATCHDOG.timed_out()
                if waited is not None:  # the watchdog closed the connection: its error says nothing
                    detail = f"no answer from the server within {waited:g} s (backend option `timeout`)"
                elif self.timeout and ("timed out" in detail or "statement timeout" in detail):
                    detail = f"no answer from the server within {self.timeout:g} s (backend option `timeout`): {detail}"
                hint = self._packet_hint(cause)
                raise StoreError(self._describe(key, f"store failed: {mask_uri(detail)}{hint}")) from cause
            raise
        finally:
            self._writing.size = 0

    def _packet_hint(self, error: sqlalchemy.exc.DBAPIError) -> str:
        """On MySQL/MariaDB, a write larger than the server's `max_allowed_packet` is cut off
        (the server drops the connection): say so, with both sizes."""
        size = getattr(self._writing, "size", 0)
        code = (getattr(error.orig, "args", None) or (None,))[0]
        if not size or code not in _PACKET_CODES or not self._is_mysql():
            return ""
        if code in (2006, 2013) and size < MIN_PACKET_SUSPECT:
            return ""  # a lost connection on a small write is the server or the network, not the packet size
        if WATCHDOG.timed_out() is not None:
            return ""  # the server stopped answering: asking it for its settings would wait again
        try:
            with self.engine.connect() as conn:
                packet = int(conn.execute(sa.text("SELECT @@max_allowed_packet")).scalar_one())
        except Exception:  # noqa: BLE001 - only a hint
            return ""
        if size + PACKET_OVERHEAD < packet:
            return ""
        return (
            f" (the value is {size:,} bytes, over the server's max_allowed_packet of {packet:,} bytes: "
            "raise max_allowed_packet on the server, or store smaller values)"
        )

    def _key(self, key: Any) -> str:
        key = super()._key(key)
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                shown = key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                raise InvalidKey(f"Invalid key `{shown}`: not UTF-8 (SQL stores keep keys as text)") from None
        if len(key) > MYSQL_KEY_LENGTH or (
            len(key) > POSTGRES_KEY_BYTES // 4 and len(key.encode()) > POSTGRES_KEY_BYTES
        ):
            dialect = self.uri.split(":", 1)[0].split("+")[0]
            if dialect in ("mysql", "mariadb") and len(key) > MYSQL_KEY_LENGTH:
                raise InvalidKey(f"Invalid key `{key[:40]}...`: longer than {MYSQL_KEY_LENGTH} characters (MySQL)")
            if dialect in ("postgresql", "postgres") and len(key.encode()) > POSTGRES_KEY_BYTES:
                raise InvalidKey(f"Invalid key `{key[:40]}...`: longer than {POSTGRES_KEY_BYTES} bytes (PostgreSQL)")
        return key

    def _retry(self, func: Callable[[], T]) -> T:
        """Run a write transaction, again if the database chose it as a deadlock victim."""
        for attempt in range(3):
            try:
                return func()
            except sa_exc.DBAPIError as exc:
                args = getattr(exc.orig, "args", None) or (None,)
                code = getattr(exc.orig, "pgcode", None) or args[0]
                if attempt == 2 or code not in _DEADLOCK_CODES:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _is_mysql(self) -> bool:
        return self.engine.dialect.name in ("mysql", "mariadb")

    def _dialect(self) -> Any:
        """SQLAlchemy's module of the engine's dialect (`insert` with its upsert clauses)."""
        from anystore_cli.backends.sql.engine import _dialect

        return _dialect(self.engine)

    # ---- statements -----------------------------------------------------------------------

    def _stamp(self, now: datetime) -> datetime:
        """A naive UTC time as the table's `timestamp` column takes it: aware where the column
        has a time zone (PostgreSQL's TIMESTAMPTZ), naive elsewhere."""
        if getattr(self.table.c.timestamp.type, "timezone", False) and self.engine.dialect.name == "postgresql":
            return now.replace(tzinfo=timezone.utc)
        return now

    def _expired(self, stamp: Any, ttl: Any, now: Any) -> Any:
        """Whether the row of `stamp` and `ttl` has expired at `now` (expressions): its ttl
        ran out `ttl` seconds after its timestamp, as the library reads it."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            deadline = sa.func.julianday(stamp) + ttl / sa.literal_column("86400.0")
            passed = deadline <= sa.func.julianday(now)
        elif dialect == "postgresql":
            passed = stamp + ttl * sa.literal_column("INTERVAL '1 second'") <= now
        else:
            passed = sa.func.timestampadd(sa.literal_column("SECOND"), ttl, stamp) <= now
        return sa.and_(ttl.is_not(None), stamp.is_not(None), passed)

    def _now(self, now: datetime) -> Any:
        """`now` as a bound value of the timestamp column's type."""
        return sa.literal(self._stamp(now), type_=self.table.c.timestamp.type)

    def _live(self, now: datetime, table: sqlalchemy.Table | None = None) -> Any:
        table = self.table if table is None else table
        return sa.not_(self._expired(table.c.timestamp, table.c.ttl, self._now(now)))

    def _columns(self) -> list[str]:
        """The columns a write names: the library's, and `created_at` where the table has it."""
        return [*LIBRARY_COLUMNS, *(["created_at"] if self.has_created_at else [])]

    def _row(self, key: str, value: bytes, ttl: int | None, now: datetime) -> dict[str, Any]:
        stamp = self._stamp(now)
        row = {"key": key, "value": value, "timestamp": stamp, "ttl": int(ttl) if ttl else None}
        if self.has_created_at:
            row["created_at"] = stamp
        return row

    def _upsert(self, select: Any = None) -> Any:
        """The upsert statement: of bound rows, or of the rows of `select` (the columns of
        `_columns()`, in order) when given."""
        table = self.table
        names = self._columns()
        stmt = self._dialect().insert(table)
        if select is not None:
            stmt = stmt.from_select(names, select)
        mysql = self._is_mysql()
        new = stmt.inserted if mysql else stmt.excluded
        changes: list[tuple[str, Any]] = []
        if self.has_created_at:
            # first: MySQL applies assignments in order, and this reads the old timestamp and ttl
            changes.append(("created_at", self._kept_created(new.created_at, new.timestamp)))
        changes += [("value", new.value), ("timestamp", new.timestamp), ("ttl", new.ttl)]
        if mysql:
            return stmt.on_duplicate_key_update(changes)
        return stmt.on_conflict_do_update(index_elements=[table.c.key], set_=dict(changes))

    def _kept_created(self, new_created: Any, now: Any) -> Any:
        """created_at of an overwritten row: kept (its timestamp where the library wrote it),
        unless the old row had expired."""
        table = self.table
        return sa.case(
            (self._expired(table.c.timestamp, table.c.ttl, now), new_created),
            else_=sa.func.coalesce(table.c.created_at, table.c.timestamp),
        )

    def _insert_ignore(self) -> Any:
        table = self.table
        if self._is_mysql():
            return self._dialect().insert(table).prefix_with("IGNORE")
        return self._dialect().insert(table).on_conflict_do_nothing(index_elements=[table.c.key])

    def _maybe_purge(self) -> None:
        import random  # on writes only: a `get` does not pay its import

        if self.readonly or random.random() >= PURGE_PROBABILITY:
            return
        self.purge_expired()

    def purge_expired(self) -> int:
        """Delete the expired rows of the table now (best effort); return how many went."""
        light = self._light_for_write()
        if light is not None:
            import sqlite3

            try:
                return light.purge(utcnow())
            except sqlite3.Error:  # locked by another writer past the busy timeout: next time
                return 0
        try:
            with self.engine.begin() as conn:
                table = self.table
                expired = self._expired(table.c.timestamp, table.c.ttl, self._now(utcnow()))
                result = conn.execute(sa.delete(table).where(expired))
                return result.rowcount or 0
        except sa_exc.DBAPIError as exc:
            if exc.connection_invalidated:  # the server is gone or does not answer: not best effort
                raise
            return 0

    # ---- primitives -----------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        light = self._light()
        if light is not None:
            value = light.read(key, utcnow())
        else:
            table = self.table
            stmt = sa.select(table.c.value).where(table.c.key == key, self._live(utcnow()))
            with self.engine.connect() as conn:
                value = conn.execute(stmt).scalar_one_or_none()
        if value is None:
            if raise_on_nonexist:
                raise self._missing(key)
            return None
        value = bytes(value)
        if "b" not in kwargs.get("mode", "rb"):
            return value.decode()
        return value

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._writing.size = len(value)
        now = utcnow()
        light = self._light_for_write()
        if light is not None:
            ttl = int(ttl) if ttl else None
            if no_clobber:
                if not light.insert_new(key, bytes(value), now, ttl, self.has_created_at):
                    raise AlreadyExists(self._describe(key, "already exists"))
            else:
                light.put_many({key: bytes(value)}, now, ttl, self.has_created_at)
            self._maybe_purge()
            return
        self.ensure_table()
        row = self._row(key, bytes(value), ttl, now)
        if no_clobber:
            self._retry(lambda: self._insert_new({**row, "now": now}))
        else:
            self._upsert_rows(row)
        self._maybe_purge()

    def _upsert_rows(self, rows: dict[str, Any] | list[dict[str, Any]]) -> None:
        """Upsert one row or many in one transaction (again, if chosen as a deadlock victim)."""
        stmt = self._upsert()

        def _upsert() -> None:
            with self.engine.begin() as conn:
                conn.execute(stmt, rows)

        self._retry(_upsert)

    def _insert_new(self, row: dict[str, Any]) -> None:
        table = self.table
        with self.engine.begin() as conn:
            # an expired row does not count as existing
            expired = self._expired(table.c.timestamp, table.c.ttl, self._now(row["now"]))
            conn.execute(sa.delete(table).where(table.c.key == row["key"], expired))
            row = {name: value for name, value in row.items() if name != "now"}
            if not conn.execute(self._insert_ignore(), row).rowcount:
                raise AlreadyExists(self._describe(row["key"], "already exists"))

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        light = self._light()
        if light is not None:
            found = light.get_many(keys, utcnow())
        else:
            table = self.table
            stmt = sa.select(table.c.key, table.c.value).where(table.c.key.in_(set(keys)), self._live(utcnow()))
            with self.engine.connect() as conn:
                found = {key: bytes(value) for key, value in conn.execute(stmt)}
        for key in keys:
            yield key, found.get(key)

    def _delete(self, key: str) -> bool:
        light = None if self.readonly else self._light()  # a delete creates no missing store
        if light is not None:
            return light.delete(key, utcnow())
        table = self.table
        stmt = sa.delete(table).where(table.c.key == key, self._live(utcnow()))
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def _pop(self, key: str) -> bytes:
        table = self.table
        live = sa.and_(table.c.key == key, self._live(utcnow()))
        with self.engine.begin() as conn:
            if self.engine.dialect.delete_returning:
                value = conn.execute(sa.delete(table).where(live).returning(table.c.value)).scalar_one_or_none()
            else:
                value = conn.execute(sa.select(table.c.value).where(live).with_for_update()).scalar_one_or_none()
                if value is not None:
                    conn.execute(sa.delete(table).where(table.c.key == key))
        if value is None:
            raise self._missing(key)
        return bytes(value)

    def _table_if_there(self) -> sqlalchemy.Table | None:
        """The table, or None where the store is not there: a key of a missing store does not
        exist (`exists`, and the batch checks of writers such as `load --no-clobber`)."""
        try:
            return self.table
        except StoreNotFound:
            return None

    def _exists(self, key: str) -> bool:
        light = self._light_if_there()
        if light:
            return light.exists(key, utcnow())
        table = self._table_if_there()
        if table is None:
            return False
        stmt = sa.select(sa.literal(1)).where(table.c.key == key, self._live(utcnow()))
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def _size(self) -> Any:
        """A value's length in bytes (0 for a NULL value, which the library's table allows)."""
        return sa.func.coalesce(sa.func.length(self.table.c.value), 0)

    def _info_columns(self) -> list[Any]:
        """Key, size, creation and update time: `created_at` where this tool kept it, else the
        library's `timestamp` (the time of the last write) for both."""
        table = self.table
        stamp = table.c.timestamp
        created = sa.func.coalesce(table.c.created_at, stamp) if self.has_created_at else stamp
        return [table.c.key, self._size(), sa.type_coerce(created, stamp.type), stamp]

    def _info(self, key: str) -> BaseStats:
        if self._light() is None:
            self.table  # noqa: B018 - a missing store is an error here, not a missing key
        stats = dict(self._info_many([key]))[key]
        if stats is None:
            raise self._missing(key)
        return stats

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """One SELECT of sizes and timestamps for the batch (the values are not read)."""
        light = self._light_if_there()
        if light:
            rows = light.info_many(keys, utcnow(), self.has_created_at)
            found = {key: BaseStats.make(*row) for key, row in rows.items()}
        else:
            table = self._table_if_there()
            if table is None:
                yield from ((key, None) for key in keys)
                return
            stmt = sa.select(*self._info_columns()).where(table.c.key.in_(set(keys)), self._live(utcnow()))
            with self.engine.connect() as conn:
                found = {row[0]: row_stats(row) for row in conn.execute(stmt)}
        for key in keys:
            yield key, found.get(key)

    def _server_copy(self, source: BaseStore, key: str, size: int | None, ttl: int | None) -> int | None:
        """INSERT ... SELECT from another table of the same database: the value stays there."""
        if not isinstance(source, SqlStore) or source.engine is not self.engine:
            return None
        if source.table_name == self.table_name:
            return None  # a key onto itself: nothing to copy
        theirs = source.table
        self.ensure_table()
        now = utcnow()
        live = sa.and_(theirs.c.key == key, source._live(now))
        stamp = self._now(now)
        columns = [theirs.c.key, theirs.c.value, stamp, sa.literal(int(ttl) if ttl else None, type_=sa.BigInteger())]
        if self.has_created_at:
            columns.append(stamp)
        select = sa.select(*columns).where(live)
        stmt = self._upsert(select)

        def _copy() -> int | None:
            with self.engine.begin() as conn:
                length = size
                if length is None:
                    length = conn.execute(sa.select(sa.func.length(theirs.c.value)).where(live)).scalar_one_or_none()
                    if length is None:
                        return None
                return int(length) if conn.execute(stmt).rowcount else None

        copied = self._retry(_copy)
        if copied is None:
            raise source._missing(key)
        return copied
