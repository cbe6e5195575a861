"""Store to store: `mirror` (make DST hold SRC's keys) and `check` (tell them apart).

The engines are `anystore_cli.services.mirror` and `.check`; here are the commands, their
progress and their summaries.
"""

import sys
import threading
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import InputConfigOption, OutputConfigOption, get_state
from anystore_cli.cli.commands.filters import FilterCommand, with_key_filters
from anystore_cli.cli.commands.transfer import note_skipped, plural
from anystore_cli.cli.options import ChecksumOption, JobsOption, SourceOption
from anystore_cli.errors import StoreError
from anystore_cli.store.base import as_backend

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


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

    def __enter__(self) -> "_MirrorCounts":
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
@with_key_filters(after="input")
def mirror(
    ctx: typer.Context,
    output: Annotated[str, typer.Option("-o", "--output", metavar="DST", help="Target store uri.")],
    input: SourceOption = None,
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
    selection: dict[str, Any] | None = None,
) -> None:
    """Make DST hold SRC's matching keys: copy what DST lacks or holds changed."""
    from anystore_cli.cli.commands.common import UsageProblem
    from anystore_cli.cli.console import encode_text
    from anystore_cli.errors import InvalidData
    from anystore_cli.services.mirror import check_overlap, compare_mode
    from anystore_cli.services.mirror import mirror as run_mirror
    from anystore_cli.util.uri import mask_uri

    state = get_state(ctx)
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
                overwrite=overwrite,
                checksum=checksum,
                ignore_existing=ignore_existing,
                delete=delete,
                workers=jobs,
                dry_run=dry_run,
                on_progress=on_progress,
                on_plan=counts.plan,
                create=not no_create,
                **(selection or {}),
            )
        except KeyboardInterrupt:
            done = counts.counts
            counts.__exit__(None, None, None)
            state.note(
                f"interrupted: {'would copy' if dry_run else 'copied'} {plural(done['mirrored'])} "
                f"({counts.done_bytes} bytes) {ends} before the interrupt: {done['skipped']} skipped, "
                f"{done['deleted']} {'to delete' if dry_run else 'deleted'}, {done['failed']} failed"
            )
            raise
    sys.stdout.buffer.flush()
    if status.created:
        state.note(f"created the bucket of `{mask_uri(target.uri)}`")
    if dry_run:
        summary = f"would copy {plural(status.mirrored)} {ends}: {status.mirrored} to copy, {status.skipped} skipped"
        if delete:
            summary += f", {status.deleted} to delete"
    else:
        server = f" ({status.server_side} on the server)" if status.server_side else ""
        summary = (
            f"mirrored {plural(status.mirrored)} ({status.bytes} bytes) {ends}: {status.mirrored} copied{server}, "
            f"{status.skipped} skipped, {status.deleted} deleted, {status.failed} failed"
        )
    if status.listing_errors:
        summary += f", {plural(len(status.listing_errors), 'listing error')}"
    state.note(summary)
    note_skipped(state, source)
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
            raise StoreError(f"{plural(status.failed)} failed to mirror to `{mask_uri(target.uri)}`")
        raise StoreError(f"the listing of `{mask_uri(source.uri)}` is incomplete: not every key was mirrored")


CHECK_EPILOG = (
    "\b\nExample: anystore check -i ./site -o s3://bucket/site --checksum\n\n"
    "Lines: `+ KEY` only in SRC, `- KEY` only in DST, `* KEY` differs, `! KEY` could not be compared "
    "(rclone check --combined's markers). Exit status: 0 the same, 1 they differ, 3 a store failed."
)
CompareWithOption = Annotated[str, typer.Option("-o", "--output", metavar="DST", help="Store uri to compare with.")]


@app.command(cls=FilterCommand, epilog=CHECK_EPILOG)
@with_key_filters(after="input")
def check(
    ctx: typer.Context,
    output: CompareWithOption,
    input: SourceOption = None,
    checksum: ChecksumOption = False,
    json: Annotated[
        bool, typer.Option("--json", help='One JSON object a line: {"key", "status", "source_size", "target_size"}.')
    ] = False,
    jobs: JobsOption = 1,
    input_config: InputConfigOption = None,
    output_config: OutputConfigOption = None,
    selection: dict[str, Any] | None = None,
) -> None:
    """Compare two stores: the keys only in SRC, only in DST, and those that differ (by size, or digest)."""
    from anystore_cli.cli.console import LineWriter, encode_text, json_line
    from anystore_cli.services.check import check as run_check
    from anystore_cli.util.uri import mask_uri

    state = get_state(ctx)
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
            checksum=checksum,
            workers=jobs,
            on_result=on_result,
            **(selection or {}),
        )
    finally:
        out.flush()
    state.note(
        f"checked `{mask_uri(source.uri)}` against `{mask_uri(target.uri)}`: {status.equal} equal, "
        f"{status.differ} differ, {status.only_source} only in SRC, {status.only_target} only in DST"
        + (f", {status.failed} failed" if status.failed else "")
    )
    if status.failed:
        raise StoreError(f"{plural(status.failed)} could not be compared (the `!` lines)")
    if not status.same:
        raise typer.Exit(1)
