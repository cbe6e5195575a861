"""Transfers: `dump`, `load`, `mirror`, `check`, `io`.

`dump` writes JSON lines `{"key": K, "value": TEXT}` (or `"value_b64"` for bytes that are not
UTF-8); `load` reads them back through the store's bulk path (`put_many`).
"""

from __future__ import annotations

import base64
import sys
import threading
from collections.abc import Iterator
from operator import itemgetter
from typing import Annotated, Any

import orjson
import typer

from anystore_cli.cli.commands.common import (
    MAX_TTL,
    InputConfigOption,
    OutputConfigOption,
    UsageProblem,
    get_state,
    open_input,
    open_output,
    split_backend_config,
)
from anystore_cli.cli.commands.filters import (
    ExcludeOption,
    FilterCommand,
    GlobOption,
    IncludeOption,
    ShardOption,
    key_filters,
)
from anystore_cli.errors import (
    AlreadyExists,
    AnystoreError,
    InvalidData,
    InvalidKey,
    ReadOnlyError,
    StoreError,
)
from anystore_cli.store.base import as_backend
from anystore_cli.util.keys import all_canonical, ensure_relative_key, normalize_key

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)

PrefixOption = Annotated[
    str | None, typer.Option("--prefix", metavar="P", help="Only keys starting with P (literally).")
]
ExcludePrefixOption = Annotated[
    str | None, typer.Option("--exclude-prefix", metavar="P", help="Leave out keys starting with P.")
]
JobsOption = Annotated[int, typer.Option("-j", "--jobs", metavar="N", min=1, help="Work on N batches/keys at once.")]

LOAD_BATCH_KEYS = 1000
DUMP_INLINE_BYTES = 4 * 1024 * 1024
"""`dump` reads a value up to this size whole, in batches; a larger one in chunks"""
LOAD_BATCH_BYTES = 16 * 1024 * 1024


def _plural(count: int, word: str = "key") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _note_skipped(state: Any, store: Any) -> None:
    """Say how many names of the listing held no value (Redis hashes, lists, ...) and were left out."""
    skipped = getattr(store, "skipped_non_values", None)
    if skipped:
        kinds = ", ".join(sorted(skipped))
        state.note(f"skipped {_plural(sum(skipped.values()))} that are not values (Redis {kinds})")


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


def dump_record(key: str, value: bytes) -> dict[str, str]:
    """The dump line of one key: its text, or base64 when the bytes are not UTF-8; the same for
    the key's name (`key_b64` instead of `key`)."""
    from anystore_cli.cli.commands.common import is_text_key, key_b64

    record = {"key": key} if is_text_key(key) else {"key_b64": key_b64(key)}
    try:
        record["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        record["value_b64"] = base64.b64encode(value).decode("ascii")
    return record


@app.command(cls=FilterCommand, epilog="\b\nExample: anystore dump --prefix users/ -o users.jsonl")
def dump(
    ctx: typer.Context,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    shard: ShardOption = None,
    keys_from: Annotated[
        str | None,
        typer.Option("--keys-from", metavar="FILE", help="Dump the keys listed in FILE, one a line (`-` is stdin)."),
    ] = None,
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="OUT", help="Write to this path or uri instead of stdout.")
    ] = "-",
) -> None:
    """Export keys and values as JSON lines."""
    from anystore_cli.cli.console import LineWriter, Progress, json_line

    state = get_state(ctx)
    filters = key_filters(ctx, include, exclude, shard)
    store = state.store()
    sized: Any  # (key, size or None when missing) in order: small values are batched, large ones streamed
    if keys_from is not None:
        from anystore_cli.util.keys import make_key_filter

        match = make_key_filter(prefix, exclude_prefix, glob, **filters)
        keys = (key for key in _read_key_list(keys_from) if match(key))
        sized = ((key, None if stats is None else stats.size) for key, stats in store.info_many(keys))
    else:
        # sizes only (no timestamps, no Stats objects): the lightest bulk listing of each store
        entries = store.iterate_entries(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob, **filters)
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
                    if _dump_large(store, key, out):
                        written += 1
                        progress.advance()
                    else:
                        missing.append(key)
            if pending:
                flush()
        finally:
            writer.flush()
    state.note(f"dumped {_plural(written)} from `{state.label}`")
    _note_skipped(state, store)
    if missing:
        from anystore_cli.errors import DoesNotExist

        names = ", ".join(f"`{key}`" for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DoesNotExist(f"Key {names} in store `{state.label}`: does not exist")


def _dump_large(store: Any, key: str, out: Any) -> bool:
    """Write the dump line of a large value in chunks; False if the key is gone."""
    from anystore_cli.cli.commands.jsonl import write_value_line
    from anystore_cli.errors import DoesNotExist

    record = dump_record(key, b"")
    record.pop("value", None)
    if store.is_fslike:

        def open_value() -> Any:
            return store.open(key, "rb")

    else:  # the backend reads a value whole anyway: read it once, write it in pieces
        import contextlib
        import io

        value = store.get(key, serialization_mode="raw", raise_on_nonexist=False)
        if value is None:
            return False

        def open_value() -> Any:
            return contextlib.closing(io.BytesIO(value))

    try:
        write_value_line(out, record, open_value)
    except DoesNotExist:
        return False
    return True


def parse_dump_line(raw: bytes, number: int, source: str) -> tuple[str, bytes, int | None] | None:
    """Parse one `dump` line into `(key, bytes, ttl)`; None for a blank line; `InvalidData` naming the line."""
    from anystore_cli.cli.commands.jsonl import parse_line

    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not raw.strip():
            return None
        record = None
    # the common line, `{"key": K, "value": TEXT}` with a canonical key, checked inline: this
    # runs once per key of a load, and the field by field checks cost several times the JSON
    # parse. Its bytes must be what orjson writes for it: a repeated field, which the parse
    # drops, then shows as a difference
    if type(record) is dict and len(record) == 2:
        key = record.get("key")
        value = record.get("value")
        if type(key) is str and type(value) is str and key and key[0] != "/":
            try:
                canonical = normalize_key(key) is key
            except InvalidKey:
                canonical = False  # the full checks say what is wrong
            if canonical and orjson.dumps(record) == raw:
                return key, value.encode("utf-8"), None
    return parse_line(raw, number, source)


class _Loader:
    """Writes batches through `put_many`, on `jobs` threads, counting what it did."""

    def __init__(self, store: Any, no_clobber: bool, jobs: int, progress: Any) -> None:
        self.store = store
        self.no_clobber = no_clobber
        self.progress = progress
        self.loaded = 0
        self.skipped = 0
        self._lock = threading.Lock()
        self._pool: Any = None
        self._slots: Any = None
        self._errors: list[BaseException] = []
        self._pending: list[Any] = []
        backend = as_backend(store)
        self.batch_keys: int = getattr(backend, "bulk_batch_keys", LOAD_BATCH_KEYS)
        """Keys handed to one `put_many` (one transaction, pipeline or request)"""
        # even with one job, batches are written on a thread of their own (in order) when the
        # store's writes wait on a server or the disk: that wait overlaps with parsing the next lines
        if jobs > 1 or getattr(backend, "writes_wait", True):
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=jobs)
        self._slots = threading.BoundedSemaphore(jobs * 2)

    def submit(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        if self._errors:
            raise self._errors[0]
        if self._pool is None:
            self._write(batch, ttl)
            return
        self._slots.acquire()
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._run, batch, ttl))

    def wait(self) -> None:
        """Wait for the batches handed over so far (a later line may write the same key)."""
        from concurrent.futures import wait

        wait(self._pending)
        self._pending = []
        if self._errors:
            raise self._errors[0]

    def count(self, stored: bool) -> None:
        """Count one key written outside the batches (stored, or kept as it existed)."""
        with self._lock:
            if stored:
                self.loaded += 1
            else:
                self.skipped += 1
        self.progress.advance(1)

    def _run(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        try:
            if self._errors:  # a batch failed: the load stops, the batches queued after it are not written
                return
            self._write(batch, ttl)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            self._errors.append(exc)
        finally:
            self._slots.release()

    def _write(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        skipped = 0
        if self.no_clobber:
            # which keys exist, asked for the batch at once (one query, script call or archive
            # reading where the backend can; `exists` per key took a round trip each)
            found = self.store.info_many([key for key, _ in batch], batch_size=len(batch))
            kept = [item for item, (_, stats) in zip(batch, found, strict=True) if stats is None]
            skipped, batch = len(batch) - len(kept), kept
        if batch:
            try:
                self.store.put_many(batch, ttl=ttl, serialization_mode="raw", batch_size=len(batch))
            except BaseException as exc:
                # a batch may fail part-way (a full disk), but one the store refused (an
                # append-only store's existing key) wrote nothing: not a value to read back
                refused = isinstance(exc, (ReadOnlyError, AlreadyExists))
                stored = 0 if refused else self._count_stored(batch)
                with self._lock:
                    self.loaded += stored
                    self.skipped += skipped
                raise
        with self._lock:
            self.loaded += len(batch)
            self.skipped += skipped
        self.progress.advance(len(batch) + skipped)

    def _count_stored(self, batch: list[tuple[str, bytes]]) -> int:
        """How many keys of a failed batch hold their new value (0 when the store cannot say)."""
        wanted = dict(batch)
        try:
            found = self.store.get_many(list(wanted), serialization_mode="raw", batch_size=len(wanted))
            return sum(1 for key, value in found if value is not None and value == wanted[key])
        except Exception:  # noqa: BLE001 - the store is failing: report what is known for sure
            return 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=bool(self._errors))
            self._pool = None
        if self._errors:
            raise self._errors[0]


def parse_dump_block(lines: list[bytes]) -> list[tuple[str, bytes]] | None:
    """Parse lines that are all the common dump line, `{"key": K, "value": TEXT}` with a
    canonical key and nothing around the braces, in one JSON parse and a few C-level scans;
    None when any line is not (those lines take `parse_dump_line`, which says what is wrong).

    The lines are parsed as one JSON array joined on `,` and a newline. A raw newline cannot
    stand inside a JSON string, so no string runs from one line into the next; every line but
    the last ending in `}` then means no object runs across lines either (the common line's
    values are strings: its only `}` is its own last byte), and as many objects as lines means
    one a line."""
    text = b",\n".join(lines)
    if text[-1:] != b"}" or text.count(b"},\n") != len(lines) - 1:
        return None
    try:
        records = orjson.loads(b"[" + text + b"]")
        if len(records) != len(lines) or sum(map(len, records)) != 2 * len(records):
            return None
        keys = [record["key"] for record in records]
        values = [record["value"] for record in records]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if set(map(type, values)) != {str} or not all_canonical(keys):
        return None
    if orjson.dumps(records) != b"[" + b",".join(lines) + b"]":
        return None  # a repeated field (which the parse drops), or written otherwise than orjson does
    return list(zip(keys, [value.encode("utf-8") for value in values], strict=True))


class _Batcher:
    """Gathers parsed lines into batches of one ttl for the loader."""

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.items: list[tuple[str, bytes]] = []
        self.size = 0
        self.ttl: int | None = None

    def add(self, items: list[tuple[str, bytes]], size: int, ttl: int | None) -> None:
        """Add parsed `items` (values of `size` bytes in all) written with `ttl`."""
        if self.items and ttl != self.ttl:
            self.flush()
        self.ttl = ttl
        self.items += items
        self.size += size
        limit = self.loader.batch_keys
        if len(self.items) >= limit or self.size >= LOAD_BATCH_BYTES:
            items = self.items
            # whole batches go; short of the byte limit, a tail under `limit` keys waits for more
            end = len(items) if self.size >= LOAD_BATCH_BYTES else len(items) - len(items) % limit
            for start in range(0, end, limit):
                self.loader.submit(items[start : min(start + limit, end)], ttl)
            self.items = items[end:]
            self.size = sum(map(len, map(itemgetter(1), self.items)))  # the tail's values, in C

    def flush(self) -> None:
        """Hand what is gathered to the loader."""
        if self.items:
            items, self.items, self.size = self.items, [], 0
            self.loader.submit(items, self.ttl)


def _load_lines(loader: _Loader, source: str, name: str, ttl: int | None) -> None:
    """Read dump lines from `source` and hand them to `loader` in batches of one ttl; store the
    values of long lines as streams, in their turn."""
    from anystore_cli.cli.commands.jsonl import LongLine, iter_dump_blocks, load_long_line

    batcher = _Batcher(loader)
    step = loader.batch_keys
    try:
        with open_input(source) as handle:
            for first, block in iter_dump_blocks(handle, name):
                if isinstance(block, LongLine):
                    batcher.flush()
                    loader.wait()
                    stored = load_long_line(block, loader.store, ttl, loader.no_clobber)
                    loader.count(stored)
                    continue
                for start in range(0, len(block), step):
                    lines = block[start : start + step]
                    items = parse_dump_block(lines)
                    if items is not None:
                        batcher.add(items, sum(map(len, lines)), ttl)
                        continue
                    for number, raw in enumerate(lines, first + start):
                        parsed = parse_dump_line(raw, number, name)
                        if parsed is not None:
                            key, data, line_ttl = parsed
                            if line_ttl:
                                _check_line_ttl(loader.store, number, name)
                            batcher.add([(key, data)], len(data), line_ttl if line_ttl is not None else ttl)
        batcher.flush()
    except InvalidData:
        batcher.flush()  # the lines before a malformed one are kept
        raise
    finally:
        loader.close()


def _check_line_ttl(store: Any, number: int, name: str) -> None:
    """Refuse a line's `ttl` on a store that cannot expire keys, naming the line."""
    try:
        store.check_ttl(1, "`ttl`")
    except InvalidData as exc:
        raise InvalidData(f"Malformed line {number} of `{name}`: {exc}") from None


def _counted(exc: BaseException, loaded: int) -> BaseException:
    """`exc` with the number of keys loaded before it added to its message (same exit status)."""
    text = f"{exc} (loaded {_plural(loaded)} before the failure)"
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
        typer.Option(
            "--ttl",
            metavar="SECONDS",
            min=0,
            max=MAX_TTL,
            help="Expire keys after SECONDS (a line's `ttl` wins; refused on stores that cannot expire keys).",
        ),
    ] = None,
    no_clobber: Annotated[
        bool, typer.Option("--no-clobber", help="Keep keys that exist (exit 1 if any was kept).")
    ] = False,
    jobs: JobsOption = 1,
) -> None:
    """Import JSON lines as `dump` writes them (an optional "ttl" per line), through the bulk path."""
    from anystore_cli.cli.console import Progress

    state = get_state(ctx)
    store = state.store()
    store.check_ttl(ttl)
    name = "stdin" if input == "-" else input
    with Progress("loading", enabled=not state.quiet) as progress:
        loader = _Loader(store, no_clobber, jobs, progress)
        try:
            _load_lines(loader, input, name, ttl)
        except (AnystoreError, OSError) as exc:
            # say how much is in: the batches written before the failure are kept
            raise _counted(exc, loader.loaded) from exc
    summary = f"loaded {_plural(loader.loaded)} into `{state.label}`"
    if loader.skipped:
        summary += f", kept {_plural(loader.skipped, 'existing key')}"
    state.note(summary)
    if loader.skipped:
        raise AlreadyExists(f"{_plural(loader.skipped, 'key')} already existed in store `{state.label}` (--no-clobber)")


SourceOption = Annotated[
    str | None,
    typer.Option("-i", "--input", metavar="SRC", help="Source store uri [default: the --store]."),
]
ChecksumOption = Annotated[
    bool, typer.Option("--checksum", help="Compare MD5 digests (a stored one where the store has it) of equal sizes.")
]


MIRROR_JOBS = 4
"""Keys copied at once by default (rclone's --transfers)"""


class _MirrorCounts:
    """What `mirror` has done so far, as its progress reports it (the summary of an
    interrupted run), and the progress bar on a terminal: keys and bytes done of those planned
    (the plan grows as the source is listed), the rate and an ETA."""

    def __init__(self, enabled: bool) -> None:
        self.counts = dict.fromkeys(("mirrored", "skipped", "deleted", "failed"), 0)
        self.planned_keys = 0
        self.planned_bytes = 0
        self.done_bytes = 0
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        self.enabled = enabled

    def __enter__(self) -> _MirrorCounts:
        from anystore_cli.cli.console import dumb_terminal, stderr_is_terminal

        if self.enabled and stderr_is_terminal() and not dumb_terminal():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._progress = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[keys]}"),
                DownloadColumn(),
                TransferSpeedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("mirroring", total=None, keys="0/0 keys")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def plan(self, key: str, size: int | None) -> None:
        """`key` (of `size` bytes, None unknown) is to be copied."""
        with self._lock:
            self.planned_keys += 1
            self.planned_bytes += size or 0
            self._sizes[key] = size or 0
            self._draw()

    def done(self, key: str, outcome: str) -> None:
        """`key` is done with `outcome`."""
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            size = self._sizes.pop(key, 0)
            if outcome == "mirrored":
                self.done_bytes += size
            elif outcome == "failed":
                self.planned_bytes -= size
            self._draw()

    def _draw(self) -> None:
        if self._progress is not None:
            keys = f"{self.counts['mirrored'] + self.counts['failed']}/{self.planned_keys} keys"
            self._progress.update(self._task, total=self.planned_bytes, completed=self.done_bytes, keys=keys)


@app.command(
    cls=FilterCommand,
    epilog="\b\nExample: anystore mirror -i ./site -o s3://bucket/site --delete -j 8\n\n"
    "A key is copied when DST lacks it, when the sizes differ, or when SRC's copy was modified later than "
    "DST's; --checksum compares digests instead of times. A DST bucket that does not exist is created "
    "(--no-create refuses). SRC and DST may not overlap. With --delete, nothing is deleted when a copy "
    "failed or SRC could not be listed in full. Summary on stderr (Ctrl-C prints it too); exit 3 when a "
    "key failed or SRC's listing was incomplete.",
)
def mirror(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", metavar="DST", help="Target store uri.")],
    input: SourceOption = None,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    shard: ShardOption = None,
    checksum: ChecksumOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Copy every key, changed or not.")] = False,
    ignore_existing: Annotated[
        bool, typer.Option("--ignore-existing", help="Copy only the keys DST lacks (compare names only).")
    ] = False,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            help="Delete DST's matching keys that SRC lacks, after the copies (none after a failed copy or listing).",
        ),
    ] = False,
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", metavar="N", min=1, help="Copy N keys at once (rclone's --transfers).")
    ] = MIRROR_JOBS,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List each planned copy and delete (`copy KEY`, `delete KEY`).")
    ] = False,
    no_create: Annotated[
        bool, typer.Option("--no-create", help="Refuse a DST that does not exist (a bucket is created otherwise).")
    ] = False,
    input_config: InputConfigOption = None,
    output_config: OutputConfigOption = None,
) -> None:
    """Make DST hold SRC's matching keys: copy what DST lacks or holds changed."""
    from anystore_cli.cli.commands.common import UsageProblem
    from anystore_cli.cli.console import encode_text
    from anystore_cli.errors import InvalidData
    from anystore_cli.services.mirror import check_overlap, compare_mode
    from anystore_cli.services.mirror import mirror as run_mirror
    from anystore_cli.util.uri import mask_uri

    state = get_state(ctx)
    filters = key_filters(ctx, include, exclude, shard)
    source, target = state.open_sides(input, output, input_config, output_config, writing=True)
    try:
        compare_mode(overwrite, checksum, ignore_existing)
        check_overlap(as_backend(source), as_backend(target))
    except InvalidData as exc:
        raise UsageProblem(str(exc)) from None
    ends = f"from `{mask_uri(source.uri)}` to `{mask_uri(target.uri)}`"
    lock = threading.Lock()
    with _MirrorCounts(enabled=not state.quiet) as counts:

        def on_progress(key: str, outcome: str) -> None:
            counts.done(key, outcome)
            if dry_run and outcome in ("mirrored", "deleted"):
                line = f"{'copy' if outcome == 'mirrored' else 'delete'} {key}\n"
                with lock:
                    sys.stdout.buffer.write(encode_text(line))
            if dry_run:
                outcome = {"mirrored": "would copy", "deleted": "would delete"}.get(outcome, outcome)
            state.detail(f"{outcome} {key}")

        try:
            status = run_mirror(
                source,
                target,
                glob=glob,
                prefix=prefix,
                exclude_prefix=exclude_prefix,
                overwrite=overwrite,
                checksum=checksum,
                ignore_existing=ignore_existing,
                delete=delete,
                workers=jobs,
                dry_run=dry_run,
                on_progress=on_progress,
                on_plan=counts.plan,
                create=not no_create,
                **filters,
            )
        except KeyboardInterrupt:
            done = counts.counts
            counts.__exit__(None, None, None)
            state.note(
                f"interrupted: {'would copy' if dry_run else 'copied'} {_plural(done['mirrored'])} "
                f"({counts.done_bytes} bytes) {ends} before the interrupt: {done['skipped']} skipped, "
                f"{done['deleted']} {'to delete' if dry_run else 'deleted'}, {done['failed']} failed"
            )
            raise
    sys.stdout.buffer.flush()
    if status.created:
        state.note(f"created the bucket of `{mask_uri(target.uri)}`")
    if dry_run:
        summary = f"would copy {_plural(status.mirrored)} {ends}: {status.mirrored} to copy, {status.skipped} skipped"
        if delete:
            summary += f", {status.deleted} to delete"
    else:
        server = f" ({status.server_side} on the server)" if status.server_side else ""
        summary = (
            f"mirrored {_plural(status.mirrored)} ({status.bytes} bytes) {ends}: {status.mirrored} copied{server}, "
            f"{status.skipped} skipped, {status.deleted} deleted, {status.failed} failed"
        )
    if status.listing_errors:
        summary += f", {_plural(len(status.listing_errors), 'listing error')}"
    state.note(summary)
    _note_skipped(state, source)
    if status.failed or status.listing_errors:
        from anystore_cli.cli.console import error

        for key, message in status.errors[:10]:
            error(f"mirror failed for key `{key}`: {mask_uri(message)}")
        if len(status.errors) > 10:
            error(f"... and {len(status.errors) - 10} more failed keys")
        for message in status.listing_errors:
            error(f"listing the source failed: {mask_uri(message)}")
        if status.delete_skipped:
            why = "a copy failed" if status.failed else "the source could not be listed in full"
            error(f"nothing deleted from the target (--delete): {why}")
        if status.failed:
            raise StoreError(f"{_plural(status.failed)} failed to mirror to `{mask_uri(target.uri)}`")
        raise StoreError(f"the listing of `{mask_uri(source.uri)}` is incomplete: not every key was mirrored")


@app.command(
    cls=FilterCommand,
    epilog="\b\nExample: anystore check -i ./site -o s3://bucket/site --checksum\n\n"
    "Lines: `+ KEY` only in SRC, `- KEY` only in DST, `* KEY` differs, `! KEY` could not be compared "
    "(rclone check --combined's markers). Exit status: 0 the same, 1 they differ, 3 a store failed.",
)
def check(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", metavar="DST", help="Store uri to compare with.")],
    input: SourceOption = None,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    shard: ShardOption = None,
    checksum: ChecksumOption = False,
    json: Annotated[
        bool, typer.Option("--json", help='One JSON object a line: {"key", "status", "source_size", "target_size"}.')
    ] = False,
    jobs: JobsOption = 1,
    input_config: InputConfigOption = None,
    output_config: OutputConfigOption = None,
) -> None:
    """Compare two stores: the keys only in SRC, only in DST, and those that differ (by size, or digest)."""
    from anystore_cli.cli.console import LineWriter, encode_text, json_line
    from anystore_cli.services.check import check as run_check
    from anystore_cli.util.uri import mask_uri

    state = get_state(ctx)
    filters = key_filters(ctx, include, exclude, shard)
    source, target = state.open_sides(input, output, input_config, output_config)
    markers = {"only_source": "+", "only_target": "-", "differ": "*", "failed": "!"}
    out = LineWriter(sys.stdout.buffer)

    def on_result(outcome: str, ours: Any, theirs: Any, error: str | None) -> None:
        key = (ours or theirs).key
        if json:
            record: dict[str, Any] = {
                "key": key,
                "status": outcome,
                "source_size": ours.size if ours is not None else None,
                "target_size": theirs.size if theirs is not None else None,
            }
            if error is not None:
                record["error"] = mask_uri(error)
            out.write(json_line(record))
        else:
            out.write(encode_text(f"{markers[outcome]} {key}\n"))
        if error is not None:
            state.detail(f"{key}: {mask_uri(error)}")

    try:
        status = run_check(
            source,
            target,
            glob=glob,
            prefix=prefix,
            exclude_prefix=exclude_prefix,
            checksum=checksum,
            workers=jobs,
            on_result=on_result,
            **filters,
        )
    finally:
        out.flush()
    state.note(
        f"checked `{mask_uri(source.uri)}` against `{mask_uri(target.uri)}`: {status.equal} equal, "
        f"{status.differ} differ, {status.only_source} only in SRC, {status.only_target} only in DST"
        + (f", {status.failed} failed" if status.failed else "")
    )
    if status.failed:
        raise StoreError(f"{_plural(status.failed)} could not be compared (the `!` lines)")
    if not status.same:
        raise typer.Exit(1)


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
