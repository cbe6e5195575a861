"""The library's `SqlStore`: A store in one table of a SQL database (SQLite, PostgreSQL, MySQL/MariaDB), with ttl."""

from __future__ import annotations

from typing import ClassVar

from anystore_cli.core.store.base import BaseStore


class SqlStore(BaseStore):
    """A store in one table of a SQL database (SQLite, PostgreSQL, MySQL/MariaDB), with ttl"""

    backend_target: ClassVar[str | None] = "anystore_cli.backend.sql:SqlStore"
