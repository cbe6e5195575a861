"""SQL backend: SQLite, PostgreSQL and MySQL/MariaDB, in the anystore library's table.

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
INSERT ... SELECT upsert from it; on SQLite multi-row upserts of 400 rows, under a bigger page
cache and rarer WAL checkpoints for the batch; on MySQL/MariaDB (pymysql) multi-row upserts of
hex literals, at most 512 KiB of SQL each. Expired rows are invisible to every read, and are
deleted when keys are listed and, now and then (about one write in a hundred), when writing.
`pop` is one `DELETE ... RETURNING` where the database has it, else a locking SELECT and a
DELETE in one transaction. Listing narrows with an escaped `LIKE` on the literal start of the
prefix or glob, then matches exactly in Python; it streams through a server-side cursor
(PostgreSQL, SQLite), or on MySQL pages through the primary key 1000 keys at a time (an
unfinished MySQL result would have to be drained). SQLite databases run in WAL mode with a 30
second busy timeout, so parallel processes can write one file.

Timeouts (`backend_config`, seconds; `0` turns one off): connecting to a server gives up after
`connect_timeout` (default 3), and a server that leaves a statement, a fetch or a commit
unanswered for `timeout` (default 10) fails the command instead of hanging it. On PostgreSQL the
server cancels statements that run longer (`statement_timeout`), a watchdog thread closes the
socket of a call that waited that long for an answer with nothing left to send (libpq has no
read timeout), and TCP keepalives and `tcp_user_timeout` catch a peer that stops acknowledging;
on MySQL/MariaDB pymysql's `read_timeout` bounds every read and `TCP_USER_TIMEOUT` unacknowledged
writes.

The package: `store` (the store's primitives), `engine` (SQLAlchemy engines, drivers and
timeouts), `bulk` (batched writes), `schema` (the table's definition and the migration),
`layout` (the facts all of them share), `sqlite` (SQLite's connection set-up, and the reads and
writes of a database file through the standard library) and `watchdog`. Importing the package
loads no SQLAlchemy: only the paths that run a statement through it do. A plain `sqlite:///path`
file is read and written through `sqlite3` (the table, where missing, is created from
SQLAlchemy's definition); its listings, in-memory databases and urls with options go through
SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

from anystore_cli.backends.sql.layout import DEFAULT_TABLE, escape_like
from anystore_cli.backends.sql.store import SqlStore

__all__ = [
    "DEFAULT_TABLE",
    "SqlStore",
    "escape_like",
    "get_engine",
    "migrate_earlier_layout",
    "sqlalchemy_url",
]

_LAZY = {
    "get_engine": "anystore_cli.backends.sql.engine",
    "sqlalchemy_url": "anystore_cli.backends.sql.engine",
    "migrate_earlier_layout": "anystore_cli.backends.sql.schema",
    "build_table": "anystore_cli.backends.sql.schema",
    "_mysql_collation": "anystore_cli.backends.sql.schema",
    "copy_rows": "anystore_cli.backends.sql.bulk",
}


def __getattr__(name: str) -> Any:
    """The names that need SQLAlchemy, imported when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
