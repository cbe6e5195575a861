"""Transfers through this process: `dump`, `load`, `io`.

`dump` writes JSON lines `{"key": K, "value": TEXT}` (or `"value_b64"` for bytes that are not
UTF-8); `load` reads them back through the store's bulk path (`put_many`). The line format and
both pipelines are `anystore_cli.services.jsonl`, `.dump` and `.load`; here are the commands.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import (
    InputConfigOption,
    OutputConfigOption,
    UsageProblem,
    get_state,
    open_input,
    open_output,
    split_backend_config,
    ttl_option,
)
from anystore_cli.cli.commands.filters import FilterCommand, with_key_filters
from anystore_cli.cli.options import JobsOption, OutputOption
from anystore_cli.errors import AlreadyExists, AnystoreError, InvalidKey, StoreError
from anystore_cli.util.keys import ensure_relative_key

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


def plural(count: int, word: str = "key") -> str:
    """`1 key`, `2 keys`: a count and its word, for summaries."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def note_skipped(state: Any, store: Any) -> None:
    """Say how many names of the listing held no value (Redis hashes, lists, ...) and were left out."""
    skipped = getattr(store, "skipped_non_values", None)
    if skipped:
        kinds = ", ".join(sorted(skipped))
        state.note(f"skipped {plural(sum(skipped.values()))} that are not values (Redis {kinds})")


def _read_key_list(source: str) -> Iterator[str]:
    with open_input(source) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line.strip():
                continue
            text = line.decode("utf-8", "surrogateescape")
            try:
                yield ensure_relative_key(text)
            except InvalidKey as exc:
                raise InvalidKey(f"{exc} (line {number} of `{source}`)") from None


@app.command(cls=FilterCommand, epilog="\b\nExample: anystore dump --prefix users/ -o users.jsonl")
@with_key_filters(after="ctx")
def dump(
    ctx: typer.Context,
    keys_from: Annotated[
        str | None,
        typer.Option("--keys-from", metavar="FILE", help="Dump the keys listed in FILE, one a line (`-` is stdin)."),
    ] = None,
    output: OutputOption = "-",
    selection: dict[str, Any] | None = None,
) -> None:
    """Export keys and values as JSON lines."""
    from anystore_cli.cli.console import LineWriter, Progress, json_line
    from anystore_cli.services.dump import DUMP_INLINE_BYTES, dump_record, write_large_value
    from anystore_cli.services.load import LOAD_BATCH_BYTES

    state = get_state(ctx)
    selection = selection or {}
    store = state.store()
    sized: Any  # (key, size or None when missing) in order: small values are batched, large ones streamed
    if keys_from is not None:
        from anystore_cli.util.keys import make_key_filter

        match = make_key_filter(**selection)
        keys = (key for key in _read_key_list(keys_from) if match(key))
        sized = ((key, None if stats is None else stats.size) for key, stats in store.info_many(keys))
    else:
        # sizes only (no timestamps, no Stats objects): the lightest bulk listing of each store
        entries = store.iterate_entries(**selection)
        sized = ((entry.key, entry.size) for entry in entries)
    # batches are bounded in bytes too (the sizes come with the listing): object stores read a
    # batch on parallel threads, databases in one query
    batch_size = 64 if store.is_fslike else 500
    missing: list[str] = []
    written = 0
    with open_output(output) as out, Progress("dumping", enabled=not state.quiet) as progress:
        writer = LineWriter(out, batch=64)
        pending: list[str] = []
        pending_bytes = 0

        def flush() -> None:
            nonlocal written, pending, pending_bytes
            for key, value in store.get_many(pending, serialization_mode="raw", batch_size=len(pending)):
                if value is None:
                    missing.append(key)
                    continue
                writer.write(json_line(dump_record(key, value)))
                written += 1
                progress.advance()
            pending, pending_bytes = [], 0

        try:
            for key, size in sized:
                if size is None:
                    missing.append(key)
                elif size <= DUMP_INLINE_BYTES:
                    pending.append(key)
                    pending_bytes += size
                    if len(pending) >= batch_size or pending_bytes >= LOAD_BATCH_BYTES:
                        flush()
                else:
                    if pending:
                        flush()
                    writer.flush()
                    if write_large_value(store, key, out):
                        written += 1
                        progress.advance()
                    else:
                        missing.append(key)
            if pending:
                flush()
        finally:
            writer.flush()
    state.note(f"dumped {plural(written)} from `{state.label}`")
    note_skipped(state, store)
    if missing:
        from anystore_cli.errors import DoesNotExist

        names = ", ".join(f"`{key}`" for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DoesNotExist(f"Key {names} in store `{state.label}`: does not exist")


def _counted(exc: BaseException, loaded: int) -> BaseException:
    """`exc` with the number of keys loaded before it added to its message (same exit status)."""
    text = f"{exc} (loaded {plural(loaded)} before the failure)"
    if isinstance(exc, AnystoreError):
        try:
            return type(exc)(text)
        except TypeError:  # pragma: no cover - an error type with another signature
            return StoreError(text)
    return StoreError(text)


@app.command(epilog="\b\nExample: anystore load -i backup.jsonl -j 4")
def load(
    ctx: typer.Context,
    input: Annotated[
        str, typer.Option("-i", "--input", metavar="IN", help="Read dump lines from this path or uri (`-` is stdin).")
    ] = "-",
    ttl: Annotated[
        int | None,
        ttl_option("Expire keys after SECONDS (a line's `ttl` wins; refused on stores that cannot expire keys)."),
    ] = None,
    no_clobber: Annotated[
        bool, typer.Option("--no-clobber", help="Keep keys that exist (exit 1 if any was kept).")
    ] = False,
    jobs: JobsOption = 1,
) -> None:
    """Import JSON lines as `dump` writes them (an optional "ttl" per line), through the bulk path."""
    from anystore_cli.cli.console import Progress
    from anystore_cli.services.load import Loader, load_lines

    state = get_state(ctx)
    store = state.store()
    store.check_ttl(ttl)
    name = "stdin" if input == "-" else input
    with Progress("loading", enabled=not state.quiet) as progress:
        loader = Loader(store, no_clobber, jobs, progress)
        try:
            load_lines(loader, lambda: open_input(input), name, ttl)
        except (AnystoreError, OSError) as exc:
            # say how much is in: the batches written before the failure are kept
            raise _counted(exc, loader.loaded) from exc
    summary = f"loaded {plural(loader.loaded)} into `{state.label}`"
    if loader.skipped:
        summary += f", kept {plural(loader.skipped, 'existing key')}"
    state.note(summary)
    if loader.skipped:
        raise AlreadyExists(f"{plural(loader.skipped, 'key')} already existed in store `{state.label}` (--no-clobber)")


@app.command(epilog="\b\nExample: anystore io -i s3://bucket/big.csv -o big.csv")
def io(
    ctx: typer.Context,
    input: Annotated[str, typer.Option("-i", "--input", metavar="IN", help="Source path or uri (`-` is stdin).")] = "-",
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="OUT", help="Target path or uri (`-` is stdout).")
    ] = "-",
    input_config: InputConfigOption = None,
    output_config: OutputConfigOption = None,
) -> None:
    """Copy bytes from one uri to another, streamed (`-` is stdin/stdout); errors name the uri."""
    from anystore_cli.store.io import copy_stream

    state = get_state(ctx)
    if state.backend_config:
        raise UsageProblem(
            "-b configures the store (-s), which io does not use: "
            "configure its uris with --input-config / --output-config KEY=VALUE"
        )
    source_config = split_backend_config(input_config, "'--input-config'")
    target_config = split_backend_config(output_config, "'--output-config'")
    with open_input(input, source_config) as source, open_output(output, target_config) as target:
        copy_stream(source, target)
