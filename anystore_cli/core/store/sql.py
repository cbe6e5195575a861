"""The library's `SqlStore`: A store in one table of a SQL database (SQLite, PostgreSQL, MySQL/MariaDB), with ttl."""

from __future__ import annotations

from typing import Any, ClassVar

from anystore_cli.core.store.base import BaseStore


class SqlStore(BaseStore):
    """A store in one table of a SQL database (SQLite, PostgreSQL, MySQL/MariaDB), with ttl"""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.sql:SqlStore"

    def _make_backend(self) -> Any:
        backend = super()._make_backend()
        # as the library: a store's table (and SQLite file) is there once the store is used,
        # so a first read of a new cache is a miss, not an error (the command line refuses it)
        backend.create_missing = True
        return backend
