"""Keys: `keys`, `rm`, `exists`."""

import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands import filters
from anystore_cli.cli.commands.common import UsageProblem, get_state, open_output
from anystore_cli.cli.commands.filters import FilterCommand, key_filters
from anystore_cli.cli.completion import complete_key
from anystore_cli.cli.options import ExcludePrefixOption, OutputOption, PrefixOption
from anystore_cli.cli.output.records import RecordMaker
from anystore_cli.errors import DoesNotExist

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(
    cls=FilterCommand,
    epilog="\b\nExample: anystore keys --glob 'docs/**/*.pdf' -0 | xargs -0 -n1 anystore get",
)
def keys(
    ctx: typer.Context,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: filters.GlobOption = None,
    include: filters.IncludeOption = None,
    exclude: filters.ExcludeOption = None,
    shard: filters.ShardOption = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="End each key with NUL instead of a newline.")] = False,
    json: Annotated[bool, typer.Option("--json", help="One JSON object (the `info` fields) per key.")] = False,
    # anystore 0.3.0's spelling of --json, kept so its scripts run unchanged
    info: Annotated[bool, typer.Option("--info/--no-info", hidden=True)] = False,
    long: Annotated[
        bool, typer.Option("-l", "--long", help="Size, update time and key: a table on a terminal.")
    ] = False,
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", min=0, help="At most N keys.")] = None,
    sort: Annotated[bool, typer.Option("--sort", help="Sort the keys (reads them all first).")] = False,
    count: Annotated[bool, typer.Option("--count", help="Print only the number of matching keys.")] = False,
    output: OutputOption = "-",
) -> None:
    """List keys, one a line."""
    from anystore_cli.cli.console import encode_text, stdout_is_terminal

    state = get_state(ctx)
    filters = key_filters(ctx, include, exclude, shard)
    store = state.store()
    json = json or info
    if (json or long) and not count:
        _list_infos(store, prefix, exclude_prefix, glob, null, json, limit, sort, output, filters)
        return
    options = {"prefix": prefix, "exclude_prefix": exclude_prefix, "glob": glob, **filters}
    if count:
        total = sum(map(len, store.iterate_key_batches(**options)))
        if limit is not None:
            total = min(total, limit)
        with open_output(output) as out:
            out.write(f"{total}\n".encode())
        return
    batches: Iterable[list[str]] = store.iterate_key_batches(**options)
    if sort:
        everything = sorted(itertools.chain.from_iterable(batches))
        batches = [everything] if everything else []
    if limit is not None:
        batches = _first(batches, limit)
    with open_output(output) as out:
        separator = "\0" if null else "\n"
        shown = output == "-" and stdout_is_terminal()  # shown, not piped: no raw escape codes
        if shown:
            from anystore_cli.cli.console import terminal_safe
        pending: list[str] = []
        size = 0
        for batch in batches:  # the hot path: keys joined and encoded a folder or page at a time
            if shown:
                batch = [terminal_safe(key) for key in batch]
            pending.append(separator.join(batch))
            size += len(batch)
            if size >= 4096:
                out.write(encode_text(separator.join(pending) + separator))
                pending, size = [], 0
        if pending:
            out.write(encode_text(separator.join(pending) + separator))
        out.flush()


def _first(batches: Iterable[list[Any]], limit: int) -> Iterator[list[Any]]:
    """The first `limit` keys of `batches`, still in lists."""
    left = limit
    if left <= 0:
        return
    for batch in batches:
        if len(batch) >= left:
            yield batch[:left]
            return
        left -= len(batch)
        yield batch


def _list_infos(
    store: Any,
    prefix: str | None,
    exclude_prefix: str | None,
    glob: str | None,
    null: bool,
    json: bool,
    limit: int | None,
    sort: bool,
    output: str,
    filters: dict[str, Any] | None = None,
) -> None:
    """`keys --json` and `keys -l`: the listing with its metadata (one bulk listing, not a
    lookup per key), streamed: lines go out, and table rows on a terminal, as they come."""
    from anystore_cli.backends.local import LocalStore
    from anystore_cli.cli.console import encode_text, stdout_is_terminal
    from anystore_cli.cli.output.records import json_lines, long_line

    options = {"prefix": prefix, "exclude_prefix": exclude_prefix, "glob": glob, **(filters or {})}
    # --json hands datetimes to orjson, which writes them as `isoformat()` does, in one C call
    maker = RecordMaker(store, iso=not json)
    batches: Iterable[list[dict[str, Any]]]
    if isinstance(store, LocalStore):
        batches = _local_records(store, maker, options, limit, sort)
    else:
        infos: Iterable[Any] = store.iterate_infos(**options)
        if sort:
            infos = sorted(infos, key=lambda stats: stats.key)
        if limit is not None:
            infos = itertools.islice(infos, limit)
        infos = iter(infos)
        batches = iter(lambda: _stats_records(maker, list(itertools.islice(infos, STREAMED_BATCH))), [])
    if not json and output == "-" and stdout_is_terminal():
        from anystore_cli.cli.output.tables import print_long_table

        print_long_table(itertools.chain.from_iterable(batches))
        return
    with open_output(output) as out:
        try:
            if json:
                for batch in batches:
                    out.write(json_lines(batch))
            else:
                end = "\0" if null else "\n"
                for batch in batches:
                    out.write(encode_text(end.join(map(long_line, batch)) + end))
        finally:
            out.flush()


def _stats_records(maker: Any, batch: list[Any]) -> list[dict[str, Any]]:
    """The records of a batch of `Stats`, built together (what `maker(stats)` gives each: the
    kind of a name that holds no value, a Redis hash say, as `type`)."""
    records = maker.records([(stats.key, stats.size, stats.created_at, stats.updated_at) for stats in batch])
    for record, stats in zip(records, batch, strict=True):
        kind = getattr(stats, "value_type", None)
        if kind is not None:
            record["type"] = kind
    return records


RECORD_BATCH = 4096
"""Records of a sorted local listing built and written at a time"""
STREAMED_BATCH = 256
"""Records of other listings written at a time: lines go out soon on a slow listing"""


def _local_records(
    store: Any, maker: Any, options: dict[str, Any], limit: int | None, sort: bool
) -> Iterator[list[dict[str, Any]]]:
    """The records of a local folder's keys straight from its listing's entries, a folder at a
    time (no model object a key): what `iterate_infos` gives, through the same `maker`."""
    from datetime import datetime, timezone

    batches: Iterable[list[Any]] = store.iterate_entry_batches(**options)
    if sort:
        everything = sorted(itertools.chain.from_iterable(batches), key=lambda entry: entry[0])
        batches = [everything[start : start + RECORD_BATCH] for start in range(0, len(everything), RECORD_BATCH)]
    if limit is not None:
        batches = _first(batches, limit)
    fromtimestamp, utc = datetime.fromtimestamp, timezone.utc

    def rows(batch: list[Any]) -> Iterator[tuple[str, int, datetime, datetime]]:
        # a local entry's created time is never after its update, and most often the same:
        # one datetime then serves for both
        for key, size, mtime, _, created, _ in batch:
            updated = fromtimestamp(mtime, utc)
            yield key, size, fromtimestamp(created, utc) if created < mtime else updated, updated

    for batch in batches:
        yield maker.records(list(rows(batch)))


@app.command(cls=FilterCommand, epilog="\b\nExample: anystore rm --prefix tmp/ --dry-run")
def rm(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None, typer.Argument(metavar="[KEY]...", help="Keys to delete.", autocompletion=complete_key)
    ] = None,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: filters.GlobOption = None,
    include: filters.IncludeOption = None,
    exclude: filters.ExcludeOption = None,
    shard: filters.ShardOption = None,
    force: Annotated[bool, typer.Option("-f", "--force", help="A missing key is not an error.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
) -> None:
    """Delete keys, or every key matching --prefix/--glob/--include (and --exclude-prefix, --exclude, --shard)."""
    state = get_state(ctx)
    keys = keys or []
    if not keys and not prefix and not glob and not include:
        raise UsageProblem("rm: give KEY..., --prefix, --glob or --include")
    if prefix is not None:
        from anystore_cli.util.keys import normalize_prefix

        if not normalize_prefix(prefix):
            raise UsageProblem(f"rm: --prefix `{prefix}` names the whole store; to delete every key say --glob '**'")
    filters = key_filters(ctx, include, exclude, shard)
    checked = [state.key(key) for key in keys]
    store = state.store()
    missing: list[str] = []
    deleted = 0
    sys.stdout.flush()
    out = sys.stdout.buffer
    from anystore_cli.cli.console import encode_text, stdout_is_terminal, terminal_safe

    shown = terminal_safe if stdout_is_terminal() else str

    def remove(key: str, listed: bool = False) -> bool:
        """Delete `key` (or, with --dry-run, list it if it exists); true if it was there.

        `listed` keys came from the store's own listing: a dry run need not ask again."""
        if dry_run:
            if not listed and not store.exists(key):
                return False
            out.write(encode_text(shown(key)) + b"\n")
            return True
        with state.writing(key):
            gone = store.delete(key)
        if gone:
            state.detail(f"deleted {key}")
        return gone

    for key in checked:
        if remove(key):
            deleted += 1
        else:
            missing.append(key)
    bulk = bool(prefix or glob or include)
    if bulk:
        matched = list(store.iterate_keys(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob, **filters))
        deleted += sum(1 for key in matched if remove(key, listed=True))
    out.flush()
    if bulk:
        verb = "would delete" if dry_run else "deleted"
        state.note(f"{verb} {deleted} key{'' if deleted == 1 else 's'} from `{state.label}`")
    if missing and not force:
        names = ", ".join(f"`{key}`" for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DoesNotExist(f"Key {names} in store `{state.label}`: does not exist")


@app.command(epilog="\b\nExample: anystore exists config.json && echo present")
def exists(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The key to test.", autocompletion=complete_key)],
) -> None:
    """Test for a key: exit 0 if it exists, 1 if not, with no output (like `test -e`)."""
    state = get_state(ctx)
    key = state.key(key)
    if not state.store().exists(key):
        raise typer.Exit(1)
