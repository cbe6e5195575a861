"""Transfers: `dump`, `load`, `mirror`, `io`.

`dump` writes JSON lines `{"key": K, "value": TEXT}` (or `"value_b64"` for bytes that are not
UTF-8); `load` reads them back through the store's bulk path (`put_many`).
"""

from __future__ import annotations

import base64
import binascii
import sys
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from anystore_cli.commands.common import (
    InputConfigOption,
    OutputConfigOption,
    UsageProblem,
    get_state,
    open_input,
    open_output,
    split_backend_config,
)
from anystore_cli.core.exceptions import AlreadyExists, AnystoreError, InvalidData, InvalidKey, StoreError

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)

PrefixOption = Annotated[
    str | None, typer.Option("--prefix", metavar="P", help="Only keys starting with P (literally).")
]
ExcludePrefixOption = Annotated[
    str | None, typer.Option("--exclude-prefix", metavar="P", help="Leave out keys starting with P.")
]
GlobOption = Annotated[
    str | None,
    typer.Option("--glob", metavar="G", help="Only keys matching the path glob G (`*` one segment, `**` any)."),
]
JobsOption = Annotated[int, typer.Option("-j", "--jobs", metavar="N", min=1, help="Work on N batches/keys at once.")]

LOAD_BATCH_KEYS = 1000
LOAD_BATCH_BYTES = 32 * 1024 * 1024


def _plural(count: int, word: str = "key") -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _read_key_list(source: str) -> Iterator[str]:
    from anystore_cli.core.keys import ensure_relative_key

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
    """The dump line of one key: its text, or base64 when the bytes are not UTF-8."""
    try:
        return {"key": key, "value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"key": key, "value_b64": base64.b64encode(value).decode("ascii")}


@app.command(epilog="\b\nExample: anystore dump --prefix users/ -o users.jsonl")
def dump(
    ctx: typer.Context,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    keys_from: Annotated[
        str | None,
        typer.Option("--keys-from", metavar="FILE", help="Dump the keys listed in FILE, one a line (`-` is stdin)."),
    ] = None,
    output: Annotated[
        str, typer.Option("-o", "--output", metavar="OUT", help="Write to this path or uri instead of stdout.")
    ] = "-",
) -> None:
    """Export keys and values as JSON lines."""
    from anystore_cli.console import LineWriter, Progress, json_line

    state = get_state(ctx)
    store = state.store()
    if keys_from is not None:
        from anystore_cli.core.keys import make_key_filter

        match = make_key_filter(prefix, exclude_prefix, glob)
        keys: Any = (key for key in _read_key_list(keys_from) if match(key))
    else:
        keys = store.iterate_keys(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob)
    # file-like stores read each value whole: keep few in memory; others gain from batching
    batch_size = 8 if store.is_fslike else 500
    missing: list[str] = []
    written = 0
    with open_output(output) as out, Progress("dumping", enabled=not state.quiet) as progress:
        writer = LineWriter(out, batch=64)
        try:
            for key, value in store.get_many(keys, serialization_mode="raw", batch_size=batch_size):
                if value is None:
                    missing.append(key)
                    continue
                writer.write(json_line(dump_record(key, value)))
                written += 1
                progress.advance()
        finally:
            writer.flush()
    state.note(f"dumped {_plural(written)} from `{state.label}`")
    if missing:
        from anystore_cli.core.exceptions import DoesNotExist

        names = ", ".join(f"`{key}`" for key in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DoesNotExist(f"Key {names} in store `{state.label}`: does not exist")


def parse_dump_line(raw: bytes, number: int, source: str) -> tuple[str, bytes, int | None] | None:
    """Parse one `dump` line into `(key, bytes, ttl)`; None for a blank line; `InvalidData` naming the line."""
    import orjson

    from anystore_cli.core.keys import ensure_relative_key

    if not raw.strip():
        return None
    where = f"line {number} of `{source}`"
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidData(f"Malformed {where}: invalid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("key"), str):
        raise InvalidData(f"Malformed {where}: expected an object with a string `key`")
    try:
        key = ensure_relative_key(record["key"])
    except InvalidKey as exc:
        raise InvalidData(f"Malformed {where}: {exc}") from None
    if "value_b64" in record:
        encoded = record["value_b64"]
        if not isinstance(encoded, str):
            raise InvalidData(f"Malformed {where}: `value_b64` must be a string")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidData(f"Malformed {where}: bad base64 in `value_b64` ({exc})") from None
    elif "value" in record:
        value = record["value"]
        data = value.encode("utf-8") if isinstance(value, str) else orjson.dumps(value)
    else:
        raise InvalidData(f"Malformed {where}: needs `value` or `value_b64`")
    ttl = record.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
        raise InvalidData(f"Malformed {where}: `ttl` must be a whole number of seconds")
    return key, data, ttl


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
        if jobs > 1:
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
        self._pool.submit(self._run, batch, ttl)

    def _run(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        try:
            self._write(batch, ttl)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            self._errors.append(exc)
        finally:
            self._slots.release()

    def _write(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        skipped = 0
        if self.no_clobber:
            kept = []
            for key, data in batch:
                if self.store.exists(key):
                    skipped += 1
                else:
                    kept.append((key, data))
            batch = kept
        if batch:
            self.store.put_many(batch, ttl=ttl, serialization_mode="raw", batch_size=len(batch))
        with self._lock:
            self.loaded += len(batch)
            self.skipped += skipped
        self.progress.advance(len(batch) + skipped)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._errors:
            raise self._errors[0]


def _load_lines(loader: _Loader, source: str, name: str, ttl: int | None) -> None:
    """Read dump lines from `source` and hand them to `loader` in batches of one ttl."""
    batch: list[tuple[str, bytes]] = []
    batch_bytes = 0
    batch_ttl: int | None = None
    try:
        with open_input(source) as handle:
            for number, raw in enumerate(handle, start=1):
                parsed = parse_dump_line(raw, number, name)
                if parsed is None:
                    continue
                key, data, line_ttl = parsed
                line_ttl = line_ttl if line_ttl is not None else ttl
                if batch and line_ttl != batch_ttl:
                    loader.submit(batch, batch_ttl)
                    batch, batch_bytes = [], 0
                batch_ttl = line_ttl
                batch.append((key, data))
                batch_bytes += len(data)
                if len(batch) >= LOAD_BATCH_KEYS or batch_bytes >= LOAD_BATCH_BYTES:
                    loader.submit(batch, batch_ttl)
                    batch, batch_bytes = [], 0
        if batch:
            loader.submit(batch, batch_ttl)
    except InvalidData:
        if batch:  # the lines before a malformed one are kept
            loader.submit(batch, batch_ttl)
        raise
    finally:
        loader.close()


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
        typer.Option("--ttl", metavar="SECONDS", min=0, help="Expire keys after SECONDS (a line's `ttl` wins)."),
    ] = None,
    no_clobber: Annotated[
        bool, typer.Option("--no-clobber", help="Keep keys that exist (exit 1 if any was kept).")
    ] = False,
    jobs: JobsOption = 1,
) -> None:
    """Import JSON lines as `dump` writes them (an optional "ttl" per line), through the bulk path."""
    from anystore_cli.console import Progress

    state = get_state(ctx)
    store = state.store()
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


@app.command(epilog="\b\nExample: anystore mirror -i ./data -o s3://bucket/data -j 8")
def mirror(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", metavar="DST", help="Target store uri.")],
    input: Annotated[
        str | None,
        typer.Option("-i", "--input", metavar="SRC", help="Source store uri [default: the --store]."),
    ] = None,
    prefix: PrefixOption = None,
    exclude_prefix: ExcludePrefixOption = None,
    glob: GlobOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Copy keys the target already has.")] = False,
    jobs: JobsOption = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be copied.")] = False,
    input_config: InputConfigOption = None,
    output_config: OutputConfigOption = None,
) -> None:
    """Copy every matching key from SRC to DST, skipping existing keys unless --overwrite."""
    from anystore_cli.console import Progress
    from anystore_cli.backend.mirror import mirror as run_mirror
    from anystore_cli.core.uri import mask_uri

    state = get_state(ctx)
    state.check_backend_config_used(input, output)
    source_config = split_backend_config(input_config, "'--input-config'")
    target_config = split_backend_config(output_config, "'--output-config'")
    source = state.open_store(input, config=source_config, option="--input-config")
    target = state.open_store(output, writing=True, config=target_config, option="--output-config")
    lock = threading.Lock()
    with Progress("mirroring", enabled=not state.quiet) as progress:

        def on_progress(key: str, outcome: str) -> None:
            progress.advance()
            if dry_run and outcome == "mirrored":
                with lock:
                    sys.stdout.write(f"{key}\n")
            state.detail(f"{outcome} {key}")

        status = run_mirror(
            source,
            target,
            glob=glob,
            prefix=prefix,
            exclude_prefix=exclude_prefix,
            overwrite=overwrite,
            workers=jobs,
            dry_run=dry_run,
            on_progress=on_progress,
        )
    sys.stdout.flush()
    verb = "would mirror" if dry_run else "mirrored"
    summary = (
        f"{verb} {_plural(status.mirrored)} ({status.bytes} bytes) from `{mask_uri(source.uri)}` "
        f"to `{mask_uri(target.uri)}`: {status.mirrored} copied, {status.skipped} skipped, {status.failed} failed"
    )
    if dry_run:
        summary = (
            f"would mirror {_plural(status.mirrored)} from `{mask_uri(source.uri)}` to `{mask_uri(target.uri)}`: "
            f"{status.mirrored} to copy, {status.skipped} skipped"
        )
    state.note(summary)
    if status.failed:
        from anystore_cli.console import error

        for key, message in status.errors[:10]:
            error(f"mirror failed for key `{key}`: {mask_uri(message)}")
        raise StoreError(f"{_plural(status.failed)} failed to mirror to `{mask_uri(target.uri)}`")


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
    from anystore_cli.core.io import copy_stream

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
