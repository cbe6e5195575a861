"""Keys: `keys`, `rm`, `exists`."""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import UsageProblem, get_state, open_output
from anystore_cli.cli.commands.filters import (
    ExcludeOption,
    FilterCommand,
    GlobOption,
    IncludeOption,
    ShardOption,
    key_filters,
)
from anystore_cli.cli.completion import complete_key
from anystore_cli.cli.options import ExcludePrefixOption, OutputOption, PrefixOption
from anystore_cli.errors import DoesNotExist

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


INFO_FIELDS = ("key", "name", "store", "uri", "size", "created_at", "updated_at")


def info_record(stats: Any) -> dict[str, Any]:
    """The JSON record of a key's metadata, fields in the order of CLI.md, store password masked.

    A key whose name is not UTF-8 (a file made by another tool, raw bytes in Redis) gets
    `key_b64`, its exact bytes in base64, after `key`; `key` and `name` then show each
    undecodable byte as U+FFFD and `uri` percent-encodes it.
    """
    from anystore_cli.cli.commands.common import is_text_key, key_b64, readable_text, uri_text
    from anystore_cli.util.uri import mask_uri

    data = stats.model_dump(mode="json")
    data["uri"] = stats.uri
    record = {name: data.get(name) for name in INFO_FIELDS}
    record["store"] = mask_uri(record["store"])
    record["uri"] = mask_uri(record["uri"])
    key = record["key"]
    if isinstance(key, str) and not is_text_key(key):
        record = {
            "key": readable_text(key),
            "key_b64": key_b64(key),
            **{name: value for name, value in record.items() if name != "key"},
        }
    for name in ("store", "uri"):
        if isinstance(record[name], str):
            record[name] = uri_text(record[name])
    if isinstance(record["name"], str):
        record["name"] = readable_text(record["name"])
    return record


class RecordMaker:
    """Builds the `info` records of a listing: what is the same for every key is worked out once."""

    def __init__(self, store: Any, iso: bool = True) -> None:
        from anystore_cli.util.uri import join_uri, mask_uri

        self.iso = iso
        """Times as ISO 8601 strings; False: as datetimes (orjson writes the same text, faster)"""

        self.mask = mask_uri
        self.store_label = mask_uri(str(store.uri))
        self.uri_head: str | None = ""
        if store.is_fslike:
            probe = join_uri(store.uri, "k")
            # keys are normalised (no `.`, `..` or empty segments): the uri is a plain join
            self.uri_head = probe[:-1] if probe.endswith("/k") else None
        self.join = functools.partial(join_uri, store.uri)
        from anystore_cli.cli.commands.common import is_text_key

        self.is_text_key = is_text_key

    def __call__(self, stats: Any) -> dict[str, Any]:
        """The record of one key's `Stats`, fields in the order of CLI.md, passwords masked."""
        key = stats.key
        head = self.uri_head
        uri = key if head == "" else (head + key if head is not None else self.join(key))
        if "@" in uri or "=" in uri:  # what a password or secret in a uri needs
            uri = self.mask(uri)
        created, updated = stats.created_at, stats.updated_at
        if self.iso:
            created = None if created is None else created.isoformat()
            updated = None if updated is None else updated.isoformat()
        record = {
            "key": key,
            "name": stats.name,
            "store": self.store_label,
            "uri": uri,
            "size": stats.size,
            "created_at": created,
            "updated_at": updated,
        }
        kind = getattr(stats, "value_type", None)
        if kind is not None:  # a name that holds no value (a Redis hash, list, ...)
            record["type"] = kind
        if not self.is_text_key(key):  # a name that is not UTF-8: as `info` shows it (key_b64)
            from anystore_cli.cli.commands.common import key_b64, readable_text, uri_text

            record = {
                "key": readable_text(key),
                "key_b64": key_b64(key),
                **{k: v for k, v in record.items() if k != "key"},
            }
            record["name"] = readable_text(record["name"])
            record["uri"] = uri_text(record["uri"])
        return record


TABLE_BATCH_ROWS = 1000
TABLE_BATCH_SECONDS = 0.25
"""A table on a terminal is printed in batches: at most this many rows or seconds apart"""


def _print_long_table(records: Iterable[dict[str, Any]]) -> None:
    """The `-l` table on a terminal, printed batch by batch as the listing goes on."""
    import time

    from anystore_cli.cli.console import print_table
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
        size = human_size(record["size"]) if record["size"] is not None else record.get("type", "")
        rows.append((size, record["updated_at"] or "", record["key"]))
        if len(rows) >= TABLE_BATCH_ROWS or time.monotonic() - flushed >= TABLE_BATCH_SECONDS:
            flush()
    if rows or widths is None:
        flush()


@app.command(
    cls=FilterCommand,
    epilog="\b\nExample: anystore keys --glob 'docs/**/*.pdf' -0 | xargs -0 -n1 anystore get",
)
def keys(
    ctx: typer.Context,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    shard: ShardOption = None,
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
    from anystore_cli.cli.console import LineWriter, encode_text, stdout_is_terminal

    if isinstance(store, LocalStore):
        options = {"prefix": prefix, "exclude_prefix": exclude_prefix, "glob": glob, **(filters or {})}
        _list_local_infos(store, options, null, json, limit, sort, output)
        return
    infos: Iterable[Any] = store.iterate_infos(
        prefix=prefix, exclude_prefix=exclude_prefix, glob=glob, **(filters or {})
    )
    if sort:
        infos = sorted(infos, key=lambda stats: stats.key)
    if limit is not None:
        infos = itertools.islice(infos, limit)
    table = not json and output == "-" and stdout_is_terminal()
    # --json hands datetimes to orjson, which writes them as `isoformat()` does, in one C call
    records = map(RecordMaker(store, iso=not json), infos)
    if table:
        _print_long_table(records)
        return
    with open_output(output) as out:
        writer = LineWriter(out, batch=256)
        end = b"\0" if null else b"\n"
        try:
            if json:
                import orjson

                dumps = orjson.dumps
                for record in records:
                    writer.write(dumps(record) + b"\n")
            else:
                for record in records:
                    size = record["size"] if record["size"] is not None else record.get("type", "")
                    line = f"{size}\t{record['updated_at'] or ''}\t{record['key']}"
                    writer.write(encode_text(line) + end)
        finally:
            writer.flush()


SORTED_BATCH = 4096
"""Rows a batch when a sorted listing is formatted and written"""


def _json_strings(values: list[Any]) -> list[str]:
    """The JSON text of each of `values` (strings, datetimes), without its quotes, in one
    `orjson` call: a list of JSON strings split at `","`, which only separates them (a quote
    inside a JSON string is always escaped)."""
    import orjson

    if not values:
        return []
    return orjson.dumps(values).decode()[2:-2].split('","')


def _list_local_infos(
    store: Any,
    options: dict[str, Any],
    null: bool,
    json: bool,
    limit: int | None,
    sort: bool,
    output: str,
) -> None:
    """`keys --json` and `keys -l` on a local folder: each folder's lines formatted straight from
    its files' `stat` (no model object a key, the times written by `orjson` a folder at a time),
    byte for byte what the generic path (`iterate_infos` and `RecordMaker`) writes."""
    import os
    from datetime import datetime, timezone

    import orjson

    from anystore_cli.backends.local import _stats, stat_created
    from anystore_cli.cli.commands.common import is_text_key, readable_text
    from anystore_cli.cli.console import encode_text, stdout_is_terminal
    from anystore_cli.store.model import Stats

    batches: Iterable[list[Any]] = store.iterate_stat_batches(**options)
    if sort:
        everything = sorted(itertools.chain.from_iterable(batches), key=lambda row: row[0])
        batches = [everything[start : start + SORTED_BATCH] for start in range(0, len(everything), SORTED_BATCH)]
    if limit is not None:
        batches = _first(batches, limit)
    fromtimestamp, utc = datetime.fromtimestamp, timezone.utc

    def long_rows() -> Iterator[tuple[list[Any], list[str], list[str]]]:
        """Each batch with its keys as `-l` shows them and the ISO times of its updates."""
        for batch in batches:
            keys = [key for key, _ in batch]
            if not is_text_key("".join(keys)):
                keys = [readable_text(key) for key in keys]
            yield batch, keys, _json_strings([fromtimestamp(info.st_mtime, utc) for _, info in batch])

    if not json and output == "-" and stdout_is_terminal():
        _print_long_table(
            {"size": info.st_size, "updated_at": updated, "key": key}
            for batch, keys, times in long_rows()
            for (_, info), key, updated in zip(batch, keys, times, strict=True)
        )
        return
    with open_output(output) as out:
        try:
            if not json:
                end = "\0" if null else "\n"
                for batch, keys, times in long_rows():
                    rows = zip(batch, keys, times, strict=True)
                    lines = [f"{info.st_size}\t{updated}\t{key}" for (_, info), key, updated in rows]
                    out.write(encode_text(end.join(lines) + end))
                return
            maker = RecordMaker(store, iso=False)
            head = maker.uri_head
            store_uri = str(store.uri)
            # what the generic path changes (a password masked, undecodable bytes shown) is left to it
            plain_head = head is not None and "@" not in head and "=" not in head and is_text_key(head)
            store_json = orjson.dumps(maker.store_label).decode() if is_text_key(maker.store_label) else None
            head_json = _json_strings([head])[0] if plain_head else ""
            dumps = orjson.dumps
            middle = f'","store":{store_json},"uri":"{head_json}'
            # without birth times (Linux) a file's created time is its inode change, when earlier
            birth = hasattr(os.stat_result, "st_birthtime")
            for batch in batches:
                keys = [key for key, _ in batch]
                joined = "".join(keys)
                if not plain_head or store_json is None or "@" in joined or "=" in joined or not is_text_key(joined):
                    out.write(
                        b"".join(dumps(maker(Stats.build(key, store_uri, _stats(info)))) + b"\n" for key, info in batch)
                    )
                    continue
                times = _json_strings([fromtimestamp(info.st_mtime, utc) for _, info in batch])
                lines = []
                for escaped, (_, info), updated in zip(_json_strings(keys), batch, times, strict=True):
                    created = updated
                    if (stat_created(info) if birth else info.st_ctime) < info.st_mtime:
                        created = dumps(fromtimestamp(stat_created(info), utc)).decode()[1:-1]
                    lines.append(
                        f'{{"key":"{escaped}","name":"{escaped.rpartition("/")[2]}{middle}{escaped}",'
                        f'"size":{info.st_size},"created_at":"{created}","updated_at":"{updated}"}}'
                    )
                out.write(("\n".join(lines) + "\n").encode())
        finally:
            out.flush()


@app.command(cls=FilterCommand, epilog="\b\nExample: anystore rm --prefix tmp/ --dry-run")
def rm(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None, typer.Argument(metavar="[KEY]...", help="Keys to delete.", autocompletion=complete_key)
    ] = None,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    shard: ShardOption = None,
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
