"""SQLAlchemy engines for store uris: drivers, connection set-up and timeouts, one per process."""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from anystore_cli.backends.sql.layout import CONNECT_TIMEOUT, DEFAULT_TIMEOUT
from anystore_cli.backends.sql.sqlite import SQLITE_BUSY_TIMEOUT, sqlite_on_connect
from anystore_cli.backends.sql.watchdog import WATCHDOG
from anystore_cli.errors import InvalidUri, MissingDependency
from anystore_cli.util.uri import mask_uri

_DRIVERS = {
    "postgresql": "postgresql+psycopg2",
    "postgres": "postgresql+psycopg2",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


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
            event.listen(engine, "connect", sqlite_on_connect)
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


def _is_mysql(engine: Engine) -> bool:
    return engine.dialect.name in ("mysql", "mariadb")


def _dialect(engine: Engine) -> Any:
    """SQLAlchemy's module of the engine's dialect (`insert` with its upsert clauses), imported
    when used: the three of them took about 90 ms of every sqlite command's start-up."""

    name = "mysql" if _is_mysql(engine) else "postgresql" if engine.dialect.name == "postgresql" else "sqlite"
    return importlib.import_module(f"sqlalchemy.dialects.{name}")
