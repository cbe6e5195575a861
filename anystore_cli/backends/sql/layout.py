"""The facts of the SQL table every part of the backend shares, without SQLAlchemy: names,
limits, the at-rest time format, the layout check and LIKE escaping.

The SQLite read path imports only this and `sqlite`, so a `get` does not pay for SQLAlchemy.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from anystore_cli.errors import InvalidUri
from anystore_cli.util.uri import mask_uri

DEFAULT_TABLE = "anystore"
CONNECT_TIMEOUT = 3
"""Seconds to wait for a database server to accept a connection (`connect_timeout`)"""
DEFAULT_TIMEOUT = 10
"""Seconds a server may leave a statement, fetch or commit unanswered (`timeout`)"""
TABLE_NAME_LIMITS = {"postgresql": 63, "postgres": 63, "mysql": 64, "mariadb": 64}
"""Bytes a table name may have, by dialect (PostgreSQL would cut a longer one silently)"""
MYSQL_KEY_LENGTH = 768
"""Characters a key may have on MySQL/MariaDB (the primary key's VARCHAR)"""
POSTGRES_KEY_BYTES = 2048
"""UTF-8 bytes a key may have on PostgreSQL (a btree index entry holds at most about 2,700)"""
LIKE_ESCAPE = "!"
LIBRARY_COLUMNS = ("key", "value", "timestamp", "ttl")
"""The columns of the anystore library's table, in its order"""
EARLIER_COLUMNS = ("created_at", "updated_at", "expires_at")
"""The timestamp columns of this tool's earlier layout (before it kept the library's table)"""
MIGRATE_COMMAND = "python -m anystore_cli.backends.sql migrate"
"""The command that moves a table of the earlier layout to the library's"""


def escape_like(text: str, escape: str = LIKE_ESCAPE) -> str:
    """Escape `%`, `_` and the escape character itself, so `text` matches literally in LIKE."""
    for char in (escape, "%", "_"):
        text = text.replace(char, escape + char)
    return text


def index_name(table: str) -> str:
    """The name of the table's index on `ttl` (cut, with a hash, to fit every database)."""
    name = f"ix_{table}_ttl"
    if len(name) <= 60:
        return name
    import hashlib  # only for long table names: not on every command's path

    return f"ix_{table[:40]}_{hashlib.sha1(table.encode()).hexdigest()[:8]}_ttl"


def utcnow() -> datetime:
    """The current time as naive UTC, as the table keeps it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_utc(value: datetime | None) -> datetime | None:
    """A time read from the table in UTC: naive ones are UTC already (as the library reads them)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def layout_problem(names: set[str], table: str, uri: str) -> str | None:
    """What is wrong with an existing table of the columns `names` (lower case), or None where it
    has the library's layout: the earlier layout of this tool (with the command that migrates
    it), or not an anystore table at all."""
    if set(LIBRARY_COLUMNS) <= names:
        return None
    if {"key", "value", *EARLIER_COLUMNS} <= names:
        return (
            f"table `{table}` has anystore-cli's earlier layout ({', '.join(EARLIER_COLUMNS)}); "
            f"migrate it once to the anystore library's: {MIGRATE_COMMAND} '{mask_uri(uri)}' {table}"
        )
    missing = ", ".join(name for name in LIBRARY_COLUMNS if name not in names)
    return f"table `{table}` is not an anystore table (no column {missing})"


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
