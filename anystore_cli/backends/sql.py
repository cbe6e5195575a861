"""SQL backend through SQLAlchemy 2: SQLite, PostgreSQL and MySQL/MariaDB.

Store uris are SQLAlchemy urls: `sqlite:///file.db`, `postgresql://user:pw@host/db`,
`mysql+pymysql://user:pw@host/db`. A bare `mysql://` or `mariadb://` uses pymysql, a bare
`postgresql://` (or `postgres://`) psycopg2.

One table per store (`backend_config` `table`, default `anystore`), the anystore library's
(0.3.0 and 1.2): `key, value, timestamp, ttl`, so the library reads what this tool writes and
the other way round. A table this tool creates adds one nullable column the library ignores:

| column | sqlite | postgresql | mysql / mariadb |
|---|---|---|---|
| `key` (primary key) | VARCHAR (binary collation) | VARCHAR COLLATE "C" | VARCHAR(768) utf8mb4, binary NO PAD |
| `value` | BLOB | BYTEA | LONGBLOB |
| `timestamp` (time of the last write) | DATETIME | TIMESTAMPTZ | DATETIME(6) |
| `ttl` (seconds after `timestamp`, indexed) | BIGINT | BIGINT | BIGINT |
| `created_at` (nullable: this tool's own) | DATETIME | TIMESTAMPTZ | DATETIME(6) |

`timestamp` defaults to the current UTC time on the server (anystore 0.3.0 leaves it to the
database), naive UTC where the column has no time zone. A row's expiry is `timestamp + ttl`,
however it was written; its creation time is `created_at`, or `timestamp` where that is NULL
(the library wrote the row) or missing (a table the library created: only its four columns,
read and written as they are, never altered). A table of this tool's earlier layout
(`created_at, updated_at, expires_at`) is refused with the one-line migration
`python -m anystore_cli.backends.sql migrate URI [TABLE]`.

A store that is not there is an error: reading or listing a SQLite file or a table that does not
exist fails (and creates neither); the first write creates them.

Timestamps are UTC. Key comparison is exact and case-sensitive everywhere. Limits: on
MySQL/MariaDB a key holds at most 768 characters (InnoDB's 3072-byte index limit), longer keys
are refused as `InvalidKey`; on PostgreSQL a key's index entry may not pass about 2700 bytes.

Writes are upserts (ON CONFLICT / ON DUPLICATE KEY UPDATE); `no_clobber` is an insert that
ignores a conflict and checks the row count. A batch of `put_many` is one transaction: on
PostgreSQL (psycopg2) one binary COPY straight into the table, or, once a batch met an existing
key (its COPY fails whole and is rolled back), a COPY into a temporary staging table and one
INSERT ... SELECT upsert from it; on SQLite multi-row upserts of 400 rows; on MySQL/MariaDB
(pymysql) multi-row upserts of hex literals, at most 512 KiB of SQL each. Expired
rows are invisible to every read, and are deleted when keys are listed and, now and then
(about one write in a hundred), when writing. `pop` is one `DELETE ... RETURNING` where the
database has it, else a locking SELECT and a DELETE in one transaction. Listing narrows with
an escaped `LIKE` on the literal start of the prefix or glob, then matches exactly in Python;
it streams through a server-side cursor (PostgreSQL, SQLite), or on MySQL pages through the
primary key 1000 keys at a time (an unfinished MySQL result would have to be drained). SQLite
databases run in WAL mode with a 30 second busy timeout, so parallel processes can write one
file.

Timeouts (`backend_config`, seconds; `0` turns one off): connecting to a server gives up after
`connect_timeout` (default 3), and a server that leaves a statement, a fetch or a commit
unanswered for `timeout` (default 10) fails the command instead of hanging it. On PostgreSQL the
server cancels statements that run longer (`statement_timeout`), a watchdog thread closes the
socket of a call that waited that long for an answer with nothing left to send (libpq has no
read timeout), and TCP keepalives and `tcp_user_timeout` catch a peer that stops acknowledging;
on MySQL/MariaDB pymysql's `read_timeout` bounds every read and `TCP_USER_TIMEOUT` unacknowledged
writes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
import random
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from anystore_cli.errors import (
    AlreadyExists,
    InvalidKey,
    InvalidUri,
    MissingDependency,
    StoreError,
    StoreNotFound,
)
from anystore_cli.store.base import BaseStore, Capabilities, KeyEntry, VirtualIOMixin
from anystore_cli.store.model import BaseStats
from anystore_cli.store.options import Option
from anystore_cli.util.keys import listing_prefix, make_key_filter
from anystore_cli.util.uri import mask_uri

DEFAULT_TABLE = "anystore"
CONNECT_TIMEOUT = 3
"""Seconds to wait for a database server to accept a connection (`connect_timeout`)"""
DEFAULT_TIMEOUT = 10
"""Seconds a server may leave a statement, fetch or commit unanswered (`timeout`)"""
SQLITE_BUSY_TIMEOUT = 30
"""Seconds a SQLite writer waits for the file's lock before failing"""
TABLE_NAME_LIMITS = {"postgresql": 63, "postgres": 63, "mysql": 64, "mariadb": 64}
"""Bytes a table name may have, by dialect (PostgreSQL would cut a longer one silently)"""
PACKET_OVERHEAD = 64 * 1024
MIN_PACKET_SUSPECT = 1024 * 1024
"""A lost connection is put down to max_allowed_packet only for writes at least this big (the
servers' default is 16 MiB or more; a smaller write that loses its connection met a server or
network fault, and asking that server for its setting could wait again)"""
"""Bytes a write statement adds to its value on the wire (key, timestamps, SQL text), about"""
_PACKET_CODES = {1153, 1301, 2006, 2013}
"""MySQL errors of a write over max_allowed_packet: too big, result too big, gone away, lost"""
MYSQL_KEY_LENGTH = 768
"""Characters a key may have on MySQL/MariaDB (the primary key's VARCHAR)"""
POSTGRES_KEY_BYTES = 2048
"""UTF-8 bytes a key may have on PostgreSQL (a btree index entry holds at most about 2,700)"""
SQLITE_ROWS_PER_STATEMENT = 400
"""Rows of one SQLite multi-row upsert (2 parameters each, 3 shared: under the old limit of 999)"""
MYSQL_STATEMENT_BYTES = 512 * 1024
"""Characters of one pre-escaped MySQL multi-row upsert (max_allowed_packet is 1 MiB at least)"""
MYSQL_HEX_VALUE_LIMIT = 64 * 1024
"""Bytes of the largest value sent as a hex literal in a multi-row upsert"""
PG_UNIQUE_VIOLATION = "23505"
PURGE_PROBABILITY = 0.01
"""Chance that a write also deletes the expired rows of the table"""
STREAM_BATCH = 1000
LIKE_ESCAPE = "!"
_DEADLOCK_CODES = {1205, 1213, "40P01"}  # MySQL: lock wait timeout, deadlock; PostgreSQL: deadlock
_DRIVERS = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}

T = TypeVar("T")


def escape_like(text: str, escape: str = LIKE_ESCAPE) -> str:
    """Escape `%`, `_` and the escape character itself, so `text` matches literally in LIKE."""
    for char in (escape, "%", "_"):
        text = text.replace(char, escape + char)
    return text


def sqlalchemy_url(uri: str) -> Any:
    """The SQLAlchemy url for a store uri, with the default driver for bare schemes.

    Raises:
        InvalidUri: If the url cannot be parsed
    """
    if uri.endswith(":") and "/" not in uri:  # `sqlite://` (in-memory) lost its slashes to normalisation
        uri += "//"
    try:
        url = make_url(uri)
    except ArgumentError as exc:
        raise InvalidUri(f"Invalid SQL url `{mask_uri(uri)}`: {exc}") from exc
    driver = _DRIVERS.get(url.drivername)
    if driver is not None:
        url = url.set(drivername=driver)
    return url


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


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _utc(value: datetime | None) -> datetime | None:
    """A time read from the table in UTC: naive ones are UTC already (as the library reads them)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT * 1000}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    # exact (and indexable) LIKE for the prefix narrowing
    cursor.execute("PRAGMA case_sensitive_like = ON")
    cursor.close()


def _mysql_on_connect(timeout: float | None) -> Callable[[Any, Any], None]:
    def _connected(dbapi_connection: Any, _record: Any) -> None:
        # the handshake was read with the connect timeout: from now on, the answer timeout
        if hasattr(dbapi_connection, "_read_timeout"):
            dbapi_connection._read_timeout = timeout
        sock = getattr(dbapi_connection, "_sock", None)
        if timeout and sock is not None:
            _tcp_user_timeout(sock, timeout)

    return _connected


def _tcp_user_timeout(sock: Any, timeout: float) -> None:
    """Fail the connection when sent data stays unacknowledged for `timeout` seconds (Linux)."""
    import socket

    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, option, int(timeout * 1000))


class AnswerWatchdog:
    """Closes the socket of a PostgreSQL call that waits too long for the server's answer.

    libpq has no read timeout: a server that stops answering (stopped, or partitioned behind a
    proxy that keeps the connection open) hangs a call forever. Each thread arms the watchdog
    with its connection before a call that waits for the server and disarms it after. A call
    armed for longer than its timeout with nothing left in the socket's send queue (a big value
    still going up is progress, not a hang) has its socket shut down: libpq then fails the call
    as a lost connection, and `timed_out()` tells the thread why.
    """

    TICK = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[int, float, float]] = {}  # thread -> (fd, deadline, timeout)
        self._fired: dict[int, float] = {}  # thread -> timeout that ran out
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any, timeout: float) -> None:
        """Start the clock for a call of this thread on `dbapi_connection`."""
        try:
            fd = dbapi_connection.fileno()
        except Exception:  # noqa: BLE001 - closed or broken: nothing to watch
            return
        thread = threading.get_ident()
        with self._lock:
            self._fired.pop(thread, None)
            self._armed[thread] = (fd, time.monotonic() + timeout, timeout)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="anystore-sql-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, *_: Any) -> None:
        """The call of this thread got its answer (or failed)."""
        with self._lock:
            self._armed.pop(threading.get_ident(), None)

    def timed_out(self) -> float | None:
        """The timeout that ran out for this thread's last call, if one did (asked once)."""
        with self._lock:
            return self._fired.pop(threading.get_ident(), None)

    @contextlib.contextmanager
    def watching(self, dbapi_connection: Any, timeout: float) -> Generator[None, None, None]:
        """Arm around a block (a fetch from a server-side cursor)."""
        self.arm(dbapi_connection, timeout)
        try:
            yield
        finally:
            self.disarm()

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                for thread, (fd, deadline, timeout) in list(self._armed.items()):
                    if now < deadline:
                        continue
                    if _unsent(fd):  # still sending: the server is taking data, wait on
                        self._armed[thread] = (fd, now + timeout, timeout)
                        continue
                    del self._armed[thread]
                    self._fired[thread] = timeout
                    _shut_down(fd)


def _unsent(fd: int) -> int:
    """Bytes in a socket's send queue not yet acknowledged by the peer (0 where unknown)."""
    import fcntl
    import struct
    import termios

    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError):
        return 0


def _shut_down(fd: int) -> None:
    """Shut down the socket behind `fd` both ways (the owner's blocked call wakes and fails)."""
    import os
    import socket

    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


WATCHDOG = AnswerWatchdog()


def _watch_postgresql(engine: Engine, timeout: float) -> None:
    """Arm the watchdog around every call of `engine` that waits for the server's answer."""

    def arm_cursor(conn: Any, cursor: Any, *_: Any) -> None:
        WATCHDOG.arm(cursor.connection, timeout)

    def arm_connection(conn: Any, *_: Any) -> None:
        if conn.invalidated or conn.closed:  # asking for its connection would reconnect
            return
        dbapi_connection = getattr(conn.connection, "dbapi_connection", None)
        if dbapi_connection is not None:
            WATCHDOG.arm(dbapi_connection, timeout)

    def arm_reset(dbapi_connection: Any, *_: Any) -> None:
        WATCHDOG.arm(dbapi_connection, timeout)

    event.listen(engine, "before_cursor_execute", arm_cursor)
    event.listen(engine, "after_cursor_execute", WATCHDOG.disarm)
    event.listen(engine, "handle_error", WATCHDOG.disarm)
    event.listen(engine, "commit", arm_connection)
    event.listen(engine, "rollback", arm_connection)
    event.listen(engine.pool, "reset", arm_reset)
    event.listen(engine.pool, "checkin", WATCHDOG.disarm)


def parse_timeout(value: Any, name: str, default: float, uri: str) -> float | None:
    """A timeout option in seconds: the default when unset, None when `0` (or off/none/false).

    Raises:
        InvalidUri: If the value is not a number of seconds
    """
    if value is None or value == "":
        return default
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "none", "false", "no")):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if seconds < 0 or seconds != seconds:
        raise InvalidUri(f"Store `{mask_uri(uri)}`: `{name}` must be a number of seconds, not `{value}`")
    return seconds or None


_ENGINES: dict[tuple[str, float | None, float | None], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(
    uri: str, timeout: float | None = DEFAULT_TIMEOUT, connect_timeout: float | None = CONNECT_TIMEOUT
) -> Engine:
    """Return the (per process cached) engine for a store uri.

    Args:
        uri: A SQLAlchemy url
        timeout: Seconds a server may leave a call unanswered (None: no limit)
        connect_timeout: Seconds to wait for a connection (None: no limit)

    Raises:
        InvalidUri: For a malformed url or an unknown dialect or driver
        MissingDependency: When the database driver is not installed
    """
    cache_key = (uri, timeout, connect_timeout)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(cache_key)
        if engine is not None:
            return engine
        url = sqlalchemy_url(uri)
        backend = url.get_backend_name()
        options: dict[str, Any] = {"hide_parameters": True}
        connect_args: dict[str, Any] = {}
        if backend == "sqlite":
            connect_args = {"timeout": SQLITE_BUSY_TIMEOUT}
        elif backend in ("mysql", "mariadb"):
            if connect_timeout:
                # pymysql reads the server's handshake with `read_timeout`: bound it while connecting
                connect_args = {"connect_timeout": connect_timeout, "read_timeout": connect_timeout}
            # no gap locks: concurrent upserts and inserts of distinct keys do not deadlock
            options["isolation_level"] = "READ COMMITTED"
        elif backend == "postgresql":
            if connect_timeout:
                connect_args["connect_timeout"] = max(1, round(connect_timeout))
            if url.get_driver_name() == "psycopg2":
                # executemany in pages (execute_batch) instead of one round trip a row: ~3x faster load
                options["executemany_mode"] = "values_plus_batch"
                if timeout:
                    connect_args.update(_postgresql_timeouts(timeout, url.query.get("options")))
        options["connect_args"] = connect_args
        try:
            engine = sa.create_engine(url, **options)
        except NoSuchModuleError as exc:
            raise InvalidUri(f"Unknown SQL dialect or driver in `{mask_uri(uri)}`") from exc
        except ArgumentError as exc:
            raise InvalidUri(f"Invalid SQL url `{mask_uri(uri)}`: {exc}") from exc
        except ImportError as exc:
            hint = "pip install 'anystore-cli[sql]'"
            raise MissingDependency(
                f"The SQL store `{mask_uri(uri)}` needs the missing driver `{exc.name}`: {hint}"
            ) from exc
        if backend == "sqlite":
            event.listen(engine, "connect", _sqlite_on_connect)
        elif backend in ("mysql", "mariadb"):
            event.listen(engine, "connect", _mysql_on_connect(timeout))
        elif backend == "postgresql" and timeout and url.get_driver_name() == "psycopg2":
            _watch_postgresql(engine, timeout)
        _ENGINES[cache_key] = engine
        return engine


def _postgresql_timeouts(timeout: float, options: Any = None) -> dict[str, Any]:
    """libpq options: the server cancels a statement running longer than `timeout` (added to
    the url's own `options`), and TCP keepalives and `tcp_user_timeout` notice a peer that
    stopped acknowledging."""
    try:
        from psycopg2.extensions import libpq_version
    except ImportError:  # reported as a missing driver when the engine is made
        return {}
    given = " ".join(options) if isinstance(options, tuple) else options or ""
    args: dict[str, Any] = {
        "options": f"{given} -c statement_timeout={int(timeout * 1000)}".strip(),
        "keepalives": 1,
        "keepalives_idle": max(1, int(timeout)),
        "keepalives_interval": max(1, int(timeout) // 3),
        "keepalives_count": 3,
    }
    if libpq_version() >= 120000:
        args["tcp_user_timeout"] = int(timeout * 1000)
    return args


def _index_name(table: str) -> str:
    name = f"ix_{table}_ttl"
    if len(name) <= 60:
        return name
    return f"ix_{table[:40]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}_ttl"


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _dialect(engine: Engine) -> Any:
    """SQLAlchemy's module of the engine's dialect (`insert` with its upsert clauses), imported
    when used: the three of them took about 90 ms of every sqlite command's start-up."""
    import importlib

    name = "mysql" if _is_mysql(engine) else "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    return importlib.import_module(f"sqlalchemy.dialects.{name}")


LIBRARY_COLUMNS = ("key", "value", "timestamp", "ttl")
"""The columns of the anystore library's table, in its order"""
EARLIER_COLUMNS = ("created_at", "updated_at", "expires_at")
"""The timestamp columns of this tool's earlier layout (before it kept the library's table)"""


def build_table(name: str, engine: Engine) -> sa.Table:
    """The definition of a table this tool creates: the library's four columns, with types for
    the engine's database, and `created_at`, nullable (the library's inserts leave it out)."""
    timestamp: Any = sa.DateTime()
    key_type: Any = sa.String()
    value_type: Any = sa.LargeBinary()
    now: Any = sa.text("CURRENT_TIMESTAMP")  # SQLite: UTC
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        key_type = sa.String(collation="C")
        timestamp = sa.DateTime(timezone=True)
        now = sa.func.now()
    elif _is_mysql(engine):
        mysql = _dialect(engine)
        timestamp = mysql.DATETIME(fsp=6)
        now = sa.text("(UTC_TIMESTAMP(6))")  # CURRENT_TIMESTAMP would be the session's time zone
        value_type = mysql.LONGBLOB()
        key_type = mysql.VARCHAR(MYSQL_KEY_LENGTH, charset="utf8mb4", collation=_mysql_collation(engine))
        options = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}
    elif engine.dialect.name == "sqlite":
        options = {"sqlite_with_rowid": False}
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("key", key_type, primary_key=True),
        sa.Column("value", value_type, nullable=False),
        # anystore 0.3.0 names neither: the database fills in the time
        sa.Column("timestamp", timestamp, nullable=True, server_default=now),
        sa.Column("ttl", sa.BigInteger(), nullable=True),
        sa.Column("created_at", timestamp, nullable=True),
        sa.Index(_index_name(name), "ttl"),
        **options,
    )


def reflect_table(name: str, engine: Engine, columns: list[dict[str, Any]]) -> sa.Table:
    """The definition of an existing table of the library's layout, with its own column types
    (and `created_at` only where it has one), from the inspector's `columns`."""
    found = {column["name"].lower(): column for column in columns}
    names = [*LIBRARY_COLUMNS, *(["created_at"] if "created_at" in found else [])]
    return sa.Table(
        name,
        sa.MetaData(),
        *(sa.Column(column, found[column]["type"], primary_key=column == "key") for column in names),
    )


def _mysql_collation(engine: Engine) -> str:
    """A binary collation without trailing-space padding, so `a` and `a ` are different keys."""
    version = engine.dialect.server_version_info or (0,)
    if getattr(engine.dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    if version >= (8, 0):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"  # older MySQL: PAD SPACE, trailing spaces compare equal


_TABLES: dict[tuple[str, str], sa.Table] = {}
"""Tables known to exist, by store uri and table name (one inspection per process)"""


class SqlStore(VirtualIOMixin, BaseStore):
    """A store in one table of a SQL database, with ttl support."""

    lease_primitive: ClassVar[str | None] = "anystore_cli.backends.leases.sql:SqlLeases"
    options: ClassVar[tuple[Option, ...]] = (
        Option("table", "text", "anystore", help="The table of the store"),
        Option("timeout", "float", help="Seconds a statement may take (0: no limit)"),
        Option("connect_timeout", "float", help="Seconds to connect to the server (0: no limit)"),
    )

    # a load commits every 5,000 keys: a commit waits on the server's disk (PostgreSQL and
    # MariaDB spent a third of a load of small keys in 100 commits of 1,000)
    capabilities: ClassVar[Capabilities] = Capabilities(
        ttl=True, server_copy=True, leases=True, md5=True, bulk_batch_keys=5000
    )
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (DBAPIError, PoolTimeoutError, OSError)
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
        self._table_: sa.Table | None = None
        self._copy_conflicts = False  # PostgreSQL: a COPY met an existing key, batches now upsert
        self._staged_upsert_: Any = None
        self._sqlite_parts_: tuple[str, str] | None = None
        self._mysql_parts_: tuple[str, str] | None = None

    # ---- connection, table and errors --------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use, shared per uri within the process)."""
        if self._engine_ is None:
            if self.readonly:
                self._refuse_missing_sqlite_file()
            self._engine_ = get_engine(self.uri, self.timeout, self.connect_timeout)
        return self._engine_

    def _refuse_missing_sqlite_file(self) -> None:
        """A read never creates the SQLite file (connecting would): a missing file is a missing store."""
        url = sqlalchemy_url(self.uri)
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
            return
        import os

        if not os.path.exists(path):
            raise StoreNotFound(self._describe(None, f"the SQLite database file `{path}` does not exist"))

    @property
    def table(self) -> sa.Table:
        """The store's table as it is in the database.

        Raises:
            StoreNotFound: If the table (or the SQLite file) does not exist: a read creates
                neither (unless `create_missing` is set)
        """
        if self._table_ is None:
            self._table_ = self._resolve_table(create=self.create_missing and not self.readonly)
        return self._table_

    def ensure_table(self) -> sa.Table:
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
        return "created_at" in self.table.c

    def _resolve_table(self, create: bool) -> sa.Table:
        cache_key = (self.uri, self.table_name)
        table = _TABLES.get(cache_key)
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
            except DBAPIError:
                # another process created it at the same moment
                if not sa.inspect(engine).has_table(self.table_name):
                    raise
                table = self._existing_table(sa.inspect(engine).get_columns(self.table_name))
        _TABLES[cache_key] = table
        return table

    def _existing_table(self, columns: list[dict[str, Any]]) -> sa.Table:
        """An existing table, of the library's layout, or refused with what to do about it."""
        names = {column["name"].lower() for column in columns}
        if set(LIBRARY_COLUMNS) <= names:
            return reflect_table(self.table_name, self.engine, columns)
        if {"key", "value", *EARLIER_COLUMNS} <= names:
            raise StoreError(
                self._describe(
                    None,
                    f"table `{self.table_name}` has anystore-cli's earlier layout ({', '.join(EARLIER_COLUMNS)}); "
                    f"migrate it once to the anystore library's: "
                    f"python -m anystore_cli.backends.sql migrate '{mask_uri(self.uri)}' {self.table_name}",
                )
            )
        missing = ", ".join(name for name in LIBRARY_COLUMNS if name not in names)
        raise StoreError(
            self._describe(None, f"table `{self.table_name}` is not an anystore table (no column {missing})")
        )

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Generator[None, None, None]:
        """Translate database errors into `StoreError` with the driver's one-line message."""
        try:
            with super()._errors(key):
                yield
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, DBAPIError):
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

    def _packet_hint(self, error: DBAPIError) -> str:
        """On MySQL/MariaDB, a write larger than the server's `max_allowed_packet` is cut off
        (the server drops the connection): say so, with both sizes."""
        size = getattr(self._writing, "size", 0)
        code = (getattr(error.orig, "args", None) or (None,))[0]
        if not size or code not in _PACKET_CODES or not _is_mysql(self.engine):
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
            except DBAPIError as exc:
                args = getattr(exc.orig, "args", None) or (None,)
                code = getattr(exc.orig, "pgcode", None) or args[0]
                if attempt == 2 or code not in _DEADLOCK_CODES:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

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

    def _live(self, now: datetime, table: sa.Table | None = None) -> Any:
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
        stmt = _dialect(self.engine).insert(table)
        if select is not None:
            stmt = stmt.from_select(names, select)
        mysql = _is_mysql(self.engine)
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
        if _is_mysql(self.engine):
            return _dialect(self.engine).insert(table).prefix_with("IGNORE")
        return _dialect(self.engine).insert(table).on_conflict_do_nothing(index_elements=[table.c.key])

    def _maybe_purge(self) -> None:
        if self.readonly or random.random() >= PURGE_PROBABILITY:
            return
        self.purge_expired()

    def purge_expired(self) -> int:
        """Delete the expired rows of the table now (best effort); return how many went."""
        try:
            with self.engine.begin() as conn:
                table = self.table
                expired = self._expired(table.c.timestamp, table.c.ttl, self._now(_utcnow()))
                result = conn.execute(sa.delete(table).where(expired))
                return result.rowcount or 0
        except DBAPIError as exc:
            if exc.connection_invalidated:  # the server is gone or does not answer: not best effort
                raise
            return 0

    # ---- primitives -----------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        table = self.table
        stmt = sa.select(table.c.value).where(table.c.key == key, self._live(_utcnow()))
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
        self.ensure_table()
        now = _utcnow()
        row = self._row(key, bytes(value), ttl, now)
        if no_clobber:
            self._retry(lambda: self._insert_new({**row, "now": now}))
        else:
            stmt = self._upsert()

            def _upsert() -> None:
                with self.engine.begin() as conn:
                    conn.execute(stmt, row)

            self._retry(_upsert)
        self._maybe_purge()

    def _insert_new(self, row: dict[str, Any]) -> None:
        table = self.table
        with self.engine.begin() as conn:
            # an expired row does not count as existing
            expired = self._expired(table.c.timestamp, table.c.ttl, self._now(row["now"]))
            conn.execute(sa.delete(table).where(table.c.key == row["key"], expired))
            row = {name: value for name, value in row.items() if name != "now"}
            if not conn.execute(self._insert_ignore(), row).rowcount:
                raise AlreadyExists(self._describe(row["key"], "already exists"))

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        now = _utcnow()
        self._writing.size = max((len(value) for _, value in items), default=0)
        values = dict(items)  # last one wins
        self.ensure_table()
        ttl = int(ttl) if ttl else None
        engine = self.engine
        if self._copy_batches():
            self._copy_many(values, now, ttl)
        elif engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
            self._retry(lambda: self._sqlite_many(values, now, ttl))
        elif _is_mysql(engine) and engine.dialect.driver == "pymysql":
            self._retry(lambda: self._mysql_many(values, now, ttl))
        else:
            rows = [self._row(key, bytes(values[key]), ttl, now) for key in sorted(values)]
            stmt = self._upsert()

            def _upsert_all() -> None:
                with self.engine.begin() as conn:
                    # rows in key order: concurrent batches lock shared keys in the same order
                    conn.execute(stmt, rows)

            self._retry(_upsert_all)
        self._maybe_purge()

    def _sqlite_many(self, values: dict[str, bytes], now: datetime, ttl: int | None) -> None:
        """SQLite: the batch as a few multi-row upserts of up to `SQLITE_ROWS_PER_STATEMENT` rows,
        straight through the driver, the timestamp and ttl bound once per statement.

        One statement of many rows runs about twice as fast as `executemany` of one row each
        (one statement to step, not one per row), and nothing is converted per row in Python.
        """
        head, tail = self._sqlite_upsert_parts()
        stamp = self.table.c.timestamp.type.dialect_impl(self.engine.dialect).bind_processor(self.engine.dialect)
        fixed = [stamp(now) if stamp else now, ttl]
        rows = _sqlite_rows if self.has_created_at else _sqlite_rows_without_created
        keys = sorted(values)
        with self.engine.begin() as conn:
            for start in range(0, len(keys), SQLITE_ROWS_PER_STATEMENT):
                chunk = keys[start : start + SQLITE_ROWS_PER_STATEMENT]
                params = list(fixed)
                for key in chunk:
                    params.append(key)
                    params.append(values[key])
                conn.exec_driver_sql(f"{head}{rows(len(chunk))}{tail}", tuple(params))

    def _sqlite_upsert_parts(self) -> tuple[str, str]:
        """The SQLite upsert around its VALUES: `INSERT INTO t (columns) VALUES ` and
        ` ON CONFLICT ... DO UPDATE ...`, compiled from `_upsert` (one definition of an overwrite)."""
        if self._sqlite_parts_ is None:
            compiled = str(self._upsert().compile(dialect=self.engine.dialect))
            marker = " VALUES (" + ", ".join("?" * len(self._columns())) + ")"
            at = compiled.index(marker)  # ValueError: a compiler this code does not know
            self._sqlite_parts_ = (compiled[:at] + " VALUES ", compiled[at + len(marker) :])
        return self._sqlite_parts_

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
            except DBAPIError as exc:
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
            raise DBAPIError.instance(
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

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        table = self.table
        stmt = sa.select(table.c.key, table.c.value).where(table.c.key.in_(set(keys)), self._live(_utcnow()))
        with self.engine.connect() as conn:
            found = {key: bytes(value) for key, value in conn.execute(stmt)}
        for key in keys:
            yield key, found.get(key)

    def _delete(self, key: str) -> bool:
        table = self.table
        stmt = sa.delete(table).where(table.c.key == key, self._live(_utcnow()))
        with self.engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def _pop(self, key: str) -> bytes:
        table = self.table
        live = sa.and_(table.c.key == key, self._live(_utcnow()))
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

    def _table_if_there(self) -> sa.Table | None:
        """The table, or None where the store is not there: a key of a missing store does not
        exist (`exists`, and the batch checks of writers such as `load --no-clobber`)."""
        try:
            return self.table
        except StoreNotFound:
            return None

    def _exists(self, key: str) -> bool:
        table = self._table_if_there()
        if table is None:
            return False
        stmt = sa.select(sa.literal(1)).where(table.c.key == key, self._live(_utcnow()))
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
        self.table  # noqa: B018 - a missing store is an error here, not a missing key
        stats = dict(self._info_many([key]))[key]
        if stats is None:
            raise self._missing(key)
        return stats

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """One SELECT of sizes and timestamps for the batch (the values are not read)."""
        table = self._table_if_there()
        if table is None:
            yield from ((key, None) for key in keys)
            return
        stmt = sa.select(*self._info_columns()).where(table.c.key.in_(set(keys)), self._live(_utcnow()))
        with self.engine.connect() as conn:
            found = {row[0]: _row_stats(row) for row in conn.execute(stmt)}
        for key in keys:
            yield key, found.get(key)

    def _iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[tuple[str, BaseStats]]:
        """The listing's one SELECT, with sizes and timestamps."""
        for row in self._listing(self._info_columns(), prefix, exclude_prefix, glob):
            yield row[0], _row_stats(row)

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        for row in self._listing([self.table.c.key], prefix, exclude_prefix, glob):
            yield row[0]

    def _listing(
        self, columns: list[Any], prefix: str | None, exclude_prefix: str | None, glob: str | None
    ) -> Iterator[Any]:
        """The rows of `columns` (the key first) of the live keys that match, streamed."""
        table = self.table
        now = _utcnow()
        if not self.readonly:
            self.purge_expired()
        match = make_key_filter(prefix, exclude_prefix, glob)
        stmt = sa.select(*columns).where(self._live(now))
        literal = listing_prefix(prefix, glob)
        if literal:
            stmt = stmt.where(table.c.key.like(escape_like(literal) + "%", escape=LIKE_ESCAPE))
        if exclude_prefix and exclude_prefix.lstrip("/"):
            pattern = escape_like(exclude_prefix.lstrip("/")) + "%"
            stmt = stmt.where(sa.not_(table.c.key.like(pattern, escape=LIKE_ESCAPE)))
        paged = _is_mysql(self.engine)
        for row in self._iterate_pages(stmt) if paged else self._iterate_cursor(stmt):
            if match(row[0]):
                yield row

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        """Key, size and update time from one query; with `md5` the database computes each
        value's MD5 where it can (PostgreSQL, MySQL), so no value leaves the server."""
        table = self.table
        columns = [table.c.key, self._size(), table.c.timestamp]
        server_md5 = md5 and self.engine.dialect.name != "sqlite"
        if server_md5:
            columns.append(sa.func.md5(table.c.value))
        for row in self._listing(columns, prefix, exclude_prefix, glob):
            updated = _utc(row[2])
            yield KeyEntry(
                row[0],
                row[1],
                updated.timestamp() if updated is not None else None,
                str(row[3]).lower() if server_md5 and row[3] is not None else None,
            )

    def _server_copy(self, source: BaseStore, key: str, size: int | None, ttl: int | None) -> int | None:
        """INSERT ... SELECT from another table of the same database: the value stays there."""
        if not isinstance(source, SqlStore) or source.engine is not self.engine:
            return None
        if source.table_name == self.table_name:
            return None  # a key onto itself: nothing to copy
        theirs = source.table
        self.ensure_table()
        now = _utcnow()
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

    def _iterate_cursor(self, stmt: Any) -> Iterator[Any]:
        """Stream the rows of `stmt` through a server-side cursor (each fetch watched for an answer)."""
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=STREAM_BATCH).execute(stmt)
            if not (self.timeout and self.engine.dialect.name == "postgresql"):
                yield from result
                return
            dbapi_connection = conn.connection.dbapi_connection
            pages = result.partitions()
            while True:
                with WATCHDOG.watching(dbapi_connection, self.timeout):
                    rows = next(pages, None)
                if rows is None:
                    return
                yield from rows

    def _iterate_pages(self, stmt: Any) -> Iterator[Any]:
        """Page through the rows of `stmt` in key order, one short query per page.

        Used on MySQL, where an unfinished server-side result must be read to its end before its
        connection can be used again: stopping early would drain the whole table.
        """
        column = self.table.c.key
        last: str | None = None
        while True:
            page = stmt.order_by(column).limit(STREAM_BATCH)
            if last is not None:
                page = page.where(column > last)
            with self.engine.connect() as conn:
                rows = conn.execute(page).all()
            yield from rows
            if len(rows) < STREAM_BATCH:
                return
            last = rows[-1][0]


def _row_stats(row: Any) -> BaseStats:
    """The metadata of a `(key, size, created, updated)` row."""
    return BaseStats.make(int(row[1]), _utc(row[2]), _utc(row[3]))


@functools.lru_cache(maxsize=8)
def _sqlite_rows(count: int) -> str:
    """`count` rows of a SQLite VALUES list (key, value, timestamp, ttl, created_at): key and
    value numbered after the timestamp (1) and the ttl (2), bound once for all rows."""
    return ",".join(f"(?{3 + 2 * i},?{4 + 2 * i},?1,?2,?1)" for i in range(count))


@functools.lru_cache(maxsize=8)
def _sqlite_rows_without_created(count: int) -> str:
    """As `_sqlite_rows`, for a table of the library's four columns only."""
    return ",".join(f"(?{3 + 2 * i},?{4 + 2 * i},?1,?2)" for i in range(count))


MIGRATE_BATCH = 1000
"""Rows a migration reads and writes at a time"""


def migrate_earlier_layout(uri: str, table: str = DEFAULT_TABLE) -> int:
    """Move a table of this tool's earlier layout (`key, value, created_at, updated_at,
    expires_at`) to the anystore library's (`key, value, timestamp, ttl` and `created_at`).

    The rows go into a new table (`timestamp` the update time, `ttl` the seconds from it to the
    expiry; expired rows are left out), which then replaces the old one under its name.

    Args:
        uri: The store's SQLAlchemy url
        table: The table's name

    Returns:
        The number of rows moved

    Raises:
        StoreError: If the table is not of the earlier layout, or the database fails
    """
    engine = get_engine(uri)
    described = f"Table `{table}` of `{mask_uri(uri)}`"
    try:
        inspector = sa.inspect(engine)
        if not inspector.has_table(table):
            raise StoreError(f"{described}: does not exist")
        names = {column["name"].lower() for column in inspector.get_columns(table)}
        if not {"key", "value", *EARLIER_COLUMNS} <= names or "timestamp" in names:
            raise StoreError(f"{described}: not of the earlier layout ({', '.join(EARLIER_COLUMNS)})")
        old = sa.Table(table, sa.MetaData(), autoload_with=engine)
        staging = f"{table[:50]}_migrating"
        new = build_table(staging, engine)
        aware = engine.dialect.name == "postgresql"
        now = _utcnow()
        moved = 0
        with engine.begin() as conn:
            new.create(conn)
            columns = [old.c[name] for name in ("key", "value", "created_at", "updated_at", "expires_at")]
            last: str | None = None
            while True:
                page = sa.select(*columns).order_by(old.c.key).limit(MIGRATE_BATCH)
                if last is not None:
                    page = page.where(old.c.key > last)
                rows = conn.execute(page).all()
                batch = []
                for key, value, created, updated, expires in rows:
                    if expires is not None and _naive(expires) <= now:
                        continue
                    stamp = _naive(updated)
                    ttl = None if expires is None else max(1, math.ceil((_naive(expires) - stamp).total_seconds()))
                    created = _naive(created)
                    if aware:
                        stamp, created = stamp.replace(tzinfo=timezone.utc), created.replace(tzinfo=timezone.utc)
                    batch.append({"key": key, "value": value, "timestamp": stamp, "ttl": ttl, "created_at": created})
                if batch:
                    conn.execute(new.insert(), batch)
                    moved += len(batch)
                if len(rows) < MIGRATE_BATCH:
                    break
                last = rows[-1][0]
            quote = engine.dialect.identifier_preparer.quote
            conn.exec_driver_sql(f"DROP TABLE {quote(table)}")
            conn.exec_driver_sql(f"ALTER TABLE {quote(staging)} RENAME TO {quote(table)}")
    except DBAPIError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise StoreError(f"{described}: migration failed: {mask_uri(detail)}") from exc
    _TABLES.pop((uri, table), None)
    return moved


def _naive(value: datetime) -> datetime:
    """A time read from the earlier layout as naive UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def main(argv: list[str] | None = None) -> int:
    """`python -m anystore_cli.backends.sql migrate URI [TABLE]`: migrate a table of this tool's
    earlier layout to the anystore library's (see `migrate_earlier_layout`)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "migrate":
        sys.stderr.write("usage: python -m anystore_cli.backends.sql migrate URI [TABLE]\n")
        return 2
    table = args[2] if len(args) == 3 else DEFAULT_TABLE
    try:
        moved = migrate_earlier_layout(args[1], table)
    except (StoreError, InvalidUri, MissingDependency) as exc:
        sys.stderr.write(f"anystore: error: {exc}\n")
        return 3 if isinstance(exc, StoreError) else 2
    sys.stderr.write(f"migrated {moved} keys of table `{table}` to the anystore library's layout\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
