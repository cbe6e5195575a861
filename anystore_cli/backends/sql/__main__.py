"""`python -m anystore_cli.backends.sql migrate URI [TABLE]`: move a table of this tool's earlier
layout to the anystore library's."""

from __future__ import annotations

import sys

from anystore_cli.backends.sql.layout import DEFAULT_TABLE, MIGRATE_COMMAND
from anystore_cli.errors import InvalidUri, MissingDependency, StoreError


def main(argv: list[str] | None = None) -> int:
    """`python -m anystore_cli.backends.sql migrate URI [TABLE]`: migrate a table of this tool's
    earlier layout to the anystore library's (see `migrate_earlier_layout`).

    Returns:
        The exit status: 0 when migrated, 2 for a usage error, 3 when the store failed
    """
    from anystore_cli.backends.sql.schema import migrate_earlier_layout

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3) or args[0] != "migrate":
        sys.stderr.write(f"usage: {MIGRATE_COMMAND} URI [TABLE]\n")
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
