"""The table as SQLAlchemy defines it: the layout this tool creates on each database, the
layout read from an existing table, and the migration from this tool's earlier layout."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from anystore_cli.backends.sql.engine import _dialect, _is_mysql, get_engine
from anystore_cli.backends.sql.layout import (
    DEFAULT_TABLE,
    EARLIER_COLUMNS,
    LIBRARY_COLUMNS,
    MYSQL_KEY_LENGTH,
    index_name,
    utcnow,
)
from anystore_cli.errors import StoreError
from anystore_cli.util.uri import mask_uri

MIGRATE_BATCH = 1000
"""Rows a migration reads and writes at a time"""
TABLES: dict[tuple[str, str], sa.Table] = {}
"""Tables known to exist, by store uri and table name (one inspection per process)"""


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
        sa.Index(index_name(name), "ttl"),
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
        now = utcnow()
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
    TABLES.pop((uri, table), None)
    return moved


def _naive(value: datetime) -> datetime:
    """A time read from the earlier layout as naive UTC."""
    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)
