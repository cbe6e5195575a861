"""Leases in SQL: a table `<store table>_locks` beside the store's own.

Create is an `INSERT` on the primary key; take-over, renewal and release are an
`UPDATE ... WHERE name = ? AND token = ?` that changes one row or none.
"""

from __future__ import annotations

import hashlib
from typing import Any

from anystore_cli.errors import StoreError
from anystore_cli.store.lease import Lease, LeaseBackend


class SqlLeases(LeaseBackend):
    """SQL: a table `<store table>_locks` (name primary key, token, value); create is an
    INSERT, everything else an UPDATE on name and token."""

    _tables: dict[tuple[str, str], Any] = {}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.engine = store.engine
        self.table = self._table()

    def _table(self) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.exc import DBAPIError

        name = f"{self.store.table_name}_locks"
        cache_key = (self.store.uri, name)
        table = self._tables.get(cache_key)
        if table is not None:
            return table
        table = sa.Table(
            name,
            sa.MetaData(),
            # exact names everywhere: MariaDB's default collation would make `Job` and `job` one lock
            sa.Column("name", _name_type(self.engine), primary_key=True),
            sa.Column("token", sa.BigInteger, nullable=False),
            sa.Column("value", sa.Text, nullable=False),
        )
        with self.store._errors():
            if not sa.inspect(self.engine).has_table(name):
                try:
                    with self.engine.begin() as conn:
                        table.create(conn, checkfirst=True)
                except DBAPIError:
                    if not sa.inspect(self.engine).has_table(name):  # not a concurrent create
                        raise
        self._tables[cache_key] = table
        return table

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """SELECT the row."""
        import sqlalchemy as sa

        with self.store._errors(), self.engine.connect() as conn:
            query = sa.select(self.table.c.token, self.table.c.value).where(self.table.c.name == _row_name(name))
            row = conn.execute(query).first()
        if row is None:
            return None, None
        return Lease.load(row.value), row.token

    def create(self, name: str, lease: Lease) -> Any:
        """INSERT; a duplicate key means someone else was first."""
        from sqlalchemy.exc import IntegrityError

        try:
            with self.store._errors(), self.engine.begin() as conn:
                row = {"name": _row_name(name), "token": lease.token, "value": lease.dump().decode()}
                conn.execute(self.table.insert().values(**row))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None
            raise
        return lease.token

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """UPDATE ... WHERE name = :name AND token = :version."""
        table = self.table
        with self.store._errors(), self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.name == _row_name(name), table.c.token == version)
                .values(token=lease.token, value=lease.dump().decode())
            )
        return lease.token if result.rowcount == 1 else None


def _name_type(engine: Any) -> Any:
    """VARCHAR(255); on MySQL/MariaDB with the store table's binary, no-pad collation."""
    import sqlalchemy as sa

    if engine.dialect.name not in ("mysql", "mariadb"):
        return sa.String(255)
    from sqlalchemy.dialects import mysql

    from anystore_cli.backends.sql import _mysql_collation

    with engine.connect():  # learn the server version first
        pass
    return mysql.VARCHAR(255, charset="utf8mb4", collation=_mysql_collation(engine))


def _row_name(name: str) -> str:
    """The primary key of a name in the SQL table (VARCHAR(255)): the name itself when short."""
    if len(name) <= 200:
        return name
    return f"{name[:120]}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()}"
