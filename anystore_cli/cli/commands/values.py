"""Values: `get`, `put`, `pop`, `stream`, `touch`.

Values are bytes: `get` copies the stored bytes to stdout in chunks (the kernel copies between
real files) and `put` streams stdin into the store; `--mode` changes that per command.
"""

import contextlib
import sys
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import (
    InputConfigOption,
    LineMode,
    Mode,
    OutputConfigOption,
    UsageProblem,
    dump_json,
    encode_argument,
    get_state,
    load_json,
    open_input,
    open_output,
    render_value,
    split_backend_config,
    ttl_option,
)
from anystore_cli.cli.completion import complete_key
from anystore_cli.errors import DoesNotExist
from anystore_cli.store.io import copy_stream

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)

KeyArgument = Annotated[
    str,
    typer.Argument(metavar="KEY", help="Key relative to the store, e.g. `data/a.json`.", autocompletion=complete_key),
]
OutputOption = Annotated[
    str, typer.Option("-o", "--output", metavar="OUT", help="Write to this path or uri instead of stdout (`-`).")
]
ModeOption = Annotated[
    Mode,
    typer.Option(
        "--mode",
        case_sensitive=False,
        help="raw: bytes as stored; json: compact JSON and a newline; auto: JSON where it parses, "
        "else the bytes (never unpickles); pickle: unpickle (runs code from the store).",
    ),
]
TtlOption = Annotated[
    int | None, ttl_option("Expire the key after SECONDS (refused on stores that cannot expire keys).")
]


def _refuse_binary_on_terminal(source: Any, explicit: bool) -> bytes | None:
    """Read the first chunk of a value bound for a terminal and refuse it (status 2) when it is
    binary (a NUL byte, or not UTF-8), as curl does; `-o -` (`explicit`) writes it anyway.
    Returns the chunk read (None when stdout is no terminal)."""
    from anystore_cli.cli.console import stdout_is_terminal

    if explicit or not stdout_is_terminal():
        return None
    head = source.read(BINARY_SNIFF)
    binary = b"\x00" in head
    if not binary:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            binary = exc.start < len(head) - 3  # a character cut at the end of the chunk is text
    if binary:
        raise UsageProblem(
            "binary value: not written to the terminal (it could mess it up); "
            "use -o FILE, pipe it (`| less`, `> file`), or -o - to write it anyway"
        )
    return head


BINARY_SNIFF = 64 * 1024


@app.command(
    epilog="\b\nExample: anystore keys --glob 'logs/*.json' | xargs anystore get > all.json\n\n"
    "Exit status: 1 when a key is missing (the others are still written), unless --missing-ok."
)
def get(
    ctx: typer.Context,
    keys: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY...",
            help="One or more keys relative to the store, e.g. `data/a.json`.",
            autocompletion=complete_key,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            metavar="OUT",
            help="Write to this path or uri instead of stdout (several keys: one after the other, "
            "as `cat A B > OUT`); `-o -` writes binary values to a terminal too.",
        ),
    ] = None,
    mode: ModeOption = Mode.raw,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="A missing key prints nothing and is no error (exit 0).")
    ] = False,
    output_config: OutputConfigOption = None,
) -> None:
    """Read values: their bytes to stdout (or OUT), one after the other as `cat` prints files, streamed.

    A missing key is reported on stderr and the other keys are still written; the exit status
    is then 1. With --missing-ok a missing key prints nothing.
    """
    state = get_state(ctx)
    checked = [state.key(key) for key in keys]
    out_config = split_backend_config(output_config, "'--output-config'")
    store = state.store()
    missing = 0
    with contextlib.ExitStack() as outputs:
        target: Any = None
        for key in checked:
            with contextlib.ExitStack() as stack:
                try:
                    with state.reading(key):
                        source = stack.enter_context(store.open(key, "rb"))
                except DoesNotExist as exc:
                    if not missing_ok:
                        _report_and_go_on(exc, state)
                        missing += 1
                    continue
                head = (
                    _refuse_binary_on_terminal(source, explicit=output is not None) if output in (None, "-") else None
                )
                if mode is not Mode.raw:
                    data = render_value((head or b"") + source.read(), mode, f"key `{key}` in store `{state.label}`")
                if target is None:  # opened on the first value found: no OUT made for keys that are all missing
                    target = outputs.enter_context(open_output(output, out_config))
                if mode is not Mode.raw:
                    target.write(data)
                    continue
                from anystore_cli.cli.console import with_progress

                if head is not None:
                    target.write(head)
                reader, progress = with_progress(source, f"get {key}", quiet=state.quiet)
                if progress is not None:
                    stack.enter_context(progress)
                copy_stream(reader, target)
    if missing:
        from anystore_cli.cli.app import EXIT_NO

        raise typer.Exit(EXIT_NO)


def _report_and_go_on(exc: BaseException, state: Any) -> None:
    """One error line for a missing key among several, as `cat` reports a missing file and goes on."""
    from anystore_cli.cli.app import report

    sys.stdout.flush()
    report(exc, getattr(state, "names", None))


@app.command(epilog="\b\nExample: printf 'a\\0b' | anystore put data/blob")
def put(
    ctx: typer.Context,
    key: KeyArgument,
    value: Annotated[
        str | None,
        typer.Argument(metavar="[VALUE]", help="The value; without it (or `-`) the value is read from IN (stdin)."),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option("-i", "--input", metavar="IN", help="Read the value from this path or uri (`-` is stdin)."),
    ] = None,
    ttl: TtlOption = None,
    mode: ModeOption = Mode.raw,
    no_clobber: Annotated[bool, typer.Option("--no-clobber", help="Fail (exit 1) if the key already exists.")] = False,
    input_config: InputConfigOption = None,
) -> None:
    """Write a value from VALUE, else from IN (default stdin), streamed."""
    state = get_state(ctx)
    key = state.key(key)
    in_config = split_backend_config(input_config, "'--input-config'")
    if value == "-":  # `put KEY -` reads stdin, as `-i -` does
        if input not in (None, "-"):
            raise UsageProblem("put: give the value as `-` (stdin) or with `-i IN`, not both")
        value, input = None, "-"
    if value is None and input is None and sys.stdin is not None and sys.stdin.isatty():
        raise UsageProblem("put: no VALUE and stdin is a terminal; give VALUE, `-i FILE`, or pipe the value in")
    store = state.store()
    store.check_ttl(ttl)
    what = f"the value for key `{key}`"
    if mode is Mode.raw and value is None:
        from anystore_cli.cli.console import with_progress

        with contextlib.ExitStack() as stack:
            source = stack.enter_context(open_input(input, in_config))
            reader, progress = with_progress(source, f"put {key}", quiet=state.quiet)
            if progress is not None:
                stack.enter_context(progress)
            with state.writing(key):
                store.put_stream(key, reader, ttl=ttl, no_clobber=no_clobber)
        return
    if value is not None:
        data = encode_argument(value)
    else:
        with open_input(input, in_config) as source:
            data = source.read()
    if mode is Mode.json:
        data = dump_json(load_json(data, what))
    elif mode is Mode.pickle:
        import pickle

        try:
            content: str | bytes = data.decode()
        except UnicodeDecodeError:
            content = data
        data = pickle.dumps(content)
    with state.writing(key):
        store.put(key, data, serialization_mode="raw", ttl=ttl, no_clobber=no_clobber)


@app.command(epilog="\b\nExample: anystore pop queue/job-42 > job.json")
def pop(
    ctx: typer.Context,
    key: KeyArgument,
    output: OutputOption = "-",
    mode: ModeOption = Mode.raw,
) -> None:
    """Read a value and delete it (atomically where the backend can); output as `get`."""
    state = get_state(ctx)
    key = state.key(key)
    store = state.store()
    with state.reading(key), state.writing(key):
        data = store.pop_bytes(key)
    # the key is gone now (atomically, so two pops never both get it): until its value is out
    # in full, a failure puts it back
    try:
        rendered = render_value(data, mode, f"key `{key}` in store `{state.label}`")
        with open_output(output) as target:
            target.write(rendered)
    except BaseException:
        _put_back(state, store, key, data)
        raise


def _put_back(state: Any, store: Any, key: str, data: bytes) -> None:
    """Store a popped value again after its output failed (unless the key was written since)."""
    try:
        store.put(key, data, serialization_mode="raw", no_clobber=True)
    except Exception as exc:  # noqa: BLE001 - the output's own error is the one to report
        from anystore_cli.cli.console import error

        error(f"Key `{key}` in store `{state.label}`: its value could not be written out nor put back ({exc})")
    else:
        state.note(f"Key `{key}` in store `{state.label}`: kept, its value could not be written out")


@app.command(epilog="\b\nExample: anystore stream logs/a.jsonl logs/b.jsonl --mode json")
def stream(
    ctx: typer.Context,
    keys: Annotated[
        list[str],
        typer.Argument(metavar="KEY...", help="One or more keys, streamed in order.", autocompletion=complete_key),
    ],
    mode: Annotated[
        LineMode,
        typer.Option(
            "--mode", case_sensitive=False, help="raw: the lines as stored; json: each line re-emitted as compact JSON."
        ),
    ] = LineMode.raw,
) -> None:
    """Print the lines of one or more values, in order, streamed.

    A value's bytes are written as stored (a last line without a newline stays so); only
    between two values is a newline added, so that their lines never run together.
    """
    from anystore_cli.cli.console import LineWriter

    state = get_state(ctx)
    checked = [state.key(key) for key in keys]
    store = state.store()
    out = LineWriter(sys.stdout.buffer, batch=256)
    unended = False  # the last line written had no newline: the value's own bytes, as stored
    try:
        for key in checked:
            with state.reading(key):
                for number, line in enumerate(store.stream(key, serialization_mode="raw"), start=1):
                    if mode is LineMode.json:
                        if not line.strip():
                            continue
                        value = load_json(line, f"key `{key}` line {number} (store `{state.label}`)")
                        out.write(dump_json(value) + b"\n")
                        continue
                    if unended:  # a value's last line never runs into the next value's first
                        out.write(b"\n")
                    out.write(line)
                    unended = not line.endswith(b"\n")
    finally:
        out.flush()


@app.command(epilog="\b\nExample: anystore touch runs/last-success")
def touch(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="One or more keys.", autocompletion=complete_key)],
    ttl: TtlOption = None,
) -> None:
    """Store the current timestamp (ISO 8601 text) at each KEY and print it."""
    from datetime import datetime

    state = get_state(ctx)
    checked = [state.key(key) for key in keys]
    store = state.store()
    store.check_ttl(ttl)
    stamp = datetime.now().astimezone().isoformat()
    for key in checked:
        with state.writing(key):
            store.put(key, stamp.encode(), serialization_mode="raw", ttl=ttl)
    sys.stdout.write(f"{stamp}\n")
