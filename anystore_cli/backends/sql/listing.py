"""Listing of the SQL store: one SELECT narrowed by an escaped LIKE on the literal start of the
prefix or glob, matched exactly in Python, streamed through a server-side cursor (or, on MySQL,
paged through the primary key; on a plain SQLite file, through the standard library's `sqlite3`,
as its reads are)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from anystore_cli.backends.sql._lazy import LazyModule
from anystore_cli.backends.sql.layout import LIKE_ESCAPE, escape_like, to_utc, utcnow
from anystore_cli.backends.sql.sqlite import info_columns, parse_time
from anystore_cli.backends.sql.watchdog import WATCHDOG
from anystore_cli.store.base import KeyEntry
from anystore_cli.store.contract import KEY_BATCH, batched
from anystore_cli.store.entry import BaseStats
from anystore_cli.util.keys import listing_prefix, make_key_filter

sa = LazyModule("sqlalchemy")

STREAM_BATCH = 1000
"""Rows fetched at a time from a cursor, or of one page on MySQL"""


def row_stats(row: Any) -> BaseStats:
    """The metadata of a `(key, size, created, updated)` row read through SQLAlchemy."""
    return BaseStats.make(int(row[1]), to_utc(row[2]), to_utc(row[3]))


class _Epochs(dict):
    """Epoch seconds of the times a SQLite listing reads, parsed once per distinct text (the
    keys a batch wrote share one), and forgotten past a few thousand so memory stays flat."""

    def __missing__(self, text: Any) -> float | None:
        if len(self) >= 4096:
            self.clear()
        parsed = parse_time(text)
        value = self[text] = None if parsed is None else parsed.timestamp()
        return value


class Listing:
    """The listing primitives of `SqlStore`."""

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """On a plain SQLite file a detailed listing builds each `KeyEntry` from its row (no MD5:
        SQLite computes none); elsewhere the contract's adapters over the hooks below."""
        light = self._light() if detail else None
        if light is None:
            yield from super()._list(prefix, exclude_prefix, glob, detail=detail, md5=md5)  # type: ignore[misc]
            return
        columns = info_columns(self.has_created_at)
        rows, _ = self._listing(self._info_columns, columns, prefix, exclude_prefix, glob)
        epochs = _Epochs()
        for batch in batched(rows, KEY_BATCH):
            entries = []
            for key, size, made, changed in batch:
                made, changed = epochs[made], epochs[changed]
                entries.append(KeyEntry(key, int(size), made if changed is None else changed, None, made))
            yield entries

    def _iterate_infos(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[tuple[str, BaseStats]]:
        """The listing's one SELECT, with sizes and timestamps."""
        light = info_columns(self._light() is not None and self.has_created_at)
        rows, stamp = self._listing(self._info_columns, light, prefix, exclude_prefix, glob)
        for row in rows:
            yield row[0], BaseStats.make(int(row[1]), stamp(row[2]), stamp(row[3]))

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        rows, _ = self._listing(lambda: [self.table.c.key], "key", prefix, exclude_prefix, glob)
        for row in rows:
            yield row[0]

    def _listing(
        self,
        columns: Callable[[], list[Any]],
        light_columns: str | None,
        prefix: str | None,
        exclude_prefix: str | None,
        glob: str | None,
    ) -> tuple[Iterator[Any], Callable[[Any], Any]]:
        """The rows of `columns` (the key first) of the live keys that match, streamed, and how a
        time of theirs is read. On a plain SQLite file the rows are those of `light_columns`
        (the same columns in SQL), read through `sqlite3`."""
        light = self._light() if light_columns else None  # a missing store is an error here, before the purge
        table = self.table if light is None else None
        now = utcnow()
        if not self.readonly:
            self.purge_expired()
        match = make_key_filter(prefix, exclude_prefix, glob)
        literal = listing_prefix(prefix, glob)
        exclude = exclude_prefix.lstrip("/") if exclude_prefix else None
        if light is not None:
            rows: Iterator[Any] = light.listing(light_columns, now, literal, exclude, STREAM_BATCH)
            return (row for row in rows if match(row[0])), parse_time
        stmt = sa.select(*columns()).where(self._live(now))
        if literal:
            stmt = stmt.where(table.c.key.like(escape_like(literal) + "%", escape=LIKE_ESCAPE))
        if exclude:
            pattern = escape_like(exclude) + "%"
            stmt = stmt.where(sa.not_(table.c.key.like(pattern, escape=LIKE_ESCAPE)))
        rows = self._iterate_pages(stmt) if self._is_mysql() else self._iterate_cursor(stmt)
        return (row for row in rows if match(row[0])), to_utc

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        """Key, size and update time from one query; with `md5` the database computes each
        value's MD5 where it can (PostgreSQL, MySQL), so no value leaves the server."""
        server_md5 = md5 and self._sqlite_reader is None and self.engine.dialect.name != "sqlite"

        def columns() -> list[Any]:
            table = self.table
            chosen = [table.c.key, self._size(), table.c.timestamp]
            return [*chosen, sa.func.md5(table.c.value)] if server_md5 else chosen

        light = None if server_md5 else "key, coalesce(length(value), 0), timestamp"
        rows, stamp = self._listing(columns, light, prefix, exclude_prefix, glob)
        for row in rows:
            updated = stamp(row[2])
            yield KeyEntry(
                row[0],
                row[1],
                updated.timestamp() if updated is not None else None,
                str(row[3]).lower() if server_md5 and row[3] is not None else None,
            )

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
