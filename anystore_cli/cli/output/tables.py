"""Tables for a terminal (rich): a record as field and value, a listing batch by batch."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

TABLE_BATCH_ROWS = 1000
TABLE_BATCH_SECONDS = 0.25
"""A table on a terminal is printed in batches: at most this many rows or seconds apart"""


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    title: str | None = None,
    widths: dict[str, int] | None = None,
    header: bool = True,
) -> None:
    """Print a rich table on stdout (for a terminal).

    A long listing prints several tables, one a batch of rows: the first with the header, the
    others without, all with the same `widths` for the columns named there, so they line up.
    """
    from rich.markup import escape
    from rich.table import Table

    from anystore_cli.cli.console import rich_console, terminal_safe

    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False, show_header=header)
    for name in columns:
        # keys and values wrap on a narrow terminal rather than lose their end to an ellipsis
        width = (widths or {}).get(name)
        justify = "right" if name in ("size", "count") else "left"
        table.add_column(name, justify=justify, overflow="fold", width=width, min_width=width)
    for row in rows:
        table.add_row(*(escape(terminal_safe("" if cell is None else str(cell))) for cell in row))
    rich_console().print(table)


def print_record(record: dict[str, Any], title: str | None = None) -> None:
    """Print one record as a two-column (field, value) table on stdout."""
    print_table(("field", "value"), record.items(), title=title)


def print_long_table(records: Iterable[dict[str, Any]]) -> None:
    """The `keys -l` table on a terminal, printed batch by batch as the listing goes on."""
    from anystore_cli.cli.output.records import long_size
    from anystore_cli.util.text import human_size

    columns = ("size", "updated_at", "key")
    widths: dict[str, int] | None = None
    rows: list[tuple[str, str, str]] = []
    flushed = time.monotonic()

    def flush() -> None:
        nonlocal widths, rows, flushed
        if widths is None:  # the first batch sets the columns' widths, for every batch to align
            widths = {"size": 10, "updated_at": max([10, *(len(row[1]) for row in rows)])}
            print_table(columns, rows, widths=widths)
        else:
            print_table(columns, rows, widths=widths, header=False)
        rows = []
        flushed = time.monotonic()

    for record in records:
        size = human_size(record["size"]) if record["size"] is not None else long_size(record)
        rows.append((size, record["updated_at"] or "", record["key"]))
        if len(rows) >= TABLE_BATCH_ROWS or time.monotonic() - flushed >= TABLE_BATCH_SECONDS:
            flush()
    if rows or widths is None:
        flush()
