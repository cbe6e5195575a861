"""Metadata: `info`, `checksum`, `settings`."""

import sys
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import UsageProblem, get_state, mask_secrets
from anystore_cli.cli.completion import complete_key
from anystore_cli.errors import ChecksumMismatch, DoesNotExist, InvalidKey
from anystore_cli.util.uri import mask_uri

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(epilog="\b\nExample: anystore info data/a.csv --json | jq .size")
def info(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The key.", autocompletion=complete_key)],
    json: Annotated[bool, typer.Option("--json", help="JSON even on a terminal.")] = False,
) -> None:
    """Show a key's metadata: JSON when piped (or --json), a table on a terminal."""
    from anystore_cli.cli.console import stdout_is_terminal
    from anystore_cli.cli.output.records import info_record, json_line

    state = get_state(ctx)
    key = state.key(key)
    with state.reading(key):
        store = state.store()
        record = info_record(store, store.info(key))
    if json or not stdout_is_terminal():
        sys.stdout.buffer.write(json_line(record))
        return
    from anystore_cli.cli.output.tables import print_record
    from anystore_cli.util.text import human_size

    print_record({**record, "size": human_size(record["size"])})  # as `keys -l` shows sizes


def _complete_algorithm(incomplete: str) -> list[str]:
    import hashlib

    return sorted(name for name in hashlib.algorithms_guaranteed if name.startswith(incomplete.lower()))


@app.command(
    epilog="\b\nExample: anystore checksum -a sha256 a.bin b.bin > SUMS; anystore checksum -a sha256 -c SUMS\n\n"
    "Exit status: 1 when a key is missing or a digest differs (the other keys are still hashed)."
)
def checksum(
    ctx: typer.Context,
    keys: Annotated[
        list[str] | None,
        typer.Argument(metavar="KEY...", help="One or more keys (none with -c).", autocompletion=complete_key),
    ] = None,
    algorithm: Annotated[
        str,
        typer.Option(
            "-a",
            "--algorithm",
            metavar="ALG",
            autocompletion=_complete_algorithm,
            help="Any hashlib algorithm: sha1, sha256, md5, blake2b, ...",
        ),
    ] = "sha1",
    check: Annotated[
        str | None,
        typer.Option("--check", metavar="DIGEST", help="Compare with DIGEST: exit 1 if it differs; prints nothing."),
    ] = None,
    check_file: Annotated[
        str | None,
        typer.Option(
            "-c",
            "--check-file",
            metavar="FILE",
            help="Verify the `DIGEST  KEY` lines of FILE (path or uri, `-` is stdin), as `sha256sum -c`: "
            "`KEY: OK` or `KEY: FAILED` each (-q: only the failures).",
        ),
    ] = None,
    bare: Annotated[
        bool, typer.Option("--bare", help="Print the digests alone, one a line, without the keys.")
    ] = False,
) -> None:
    """Hash values: a `DIGEST  KEY` line for each key, as sha256sum prints (default sha1).

    A missing key is reported on stderr and the others are still hashed (exit 1 at the end).
    A key holding a newline or a backslash is printed escaped as sha256sum does: the line
    starts with a backslash and the key has `\\n` and `\\\\` in its place; -c reads such lines.
    """
    from anystore_cli.util.checksum import get_hasher

    state = get_state(ctx)
    get_hasher(algorithm)  # an unknown algorithm is a usage error before any I/O
    if check_file is not None:
        if keys:
            raise UsageProblem("checksum: give KEY... or -c FILE, not both (the keys come from FILE)")
        if check is not None:
            raise UsageProblem("checksum: give --check DIGEST or -c FILE, not both")
        raise typer.Exit(_verify(state, check_file, algorithm.lower()))
    if not keys:
        raise UsageProblem("checksum: give one or more keys, or -c FILE")
    checked = [state.key(key) for key in keys]
    store = state.store()
    expected = check.strip().lower() if check is not None else None
    missing = 0
    for key in checked:
        try:
            with state.reading(key):
                digest = store.checksum(key, algorithm.lower())
        except DoesNotExist as exc:
            _report(exc, state)
            missing += 1
            continue
        if expected is not None:
            if digest != expected:
                raise ChecksumMismatch(
                    f"Key `{key}` in store `{state.label}`: {algorithm} is {digest}, expected {expected}",
                    key=key,
                    store=mask_uri(store.uri),
                )
            state.detail(f"{key}: OK")
        else:
            _write_line(digest if bare else checksum_line(digest, key))
    if missing:
        raise typer.Exit(EXIT_NO)


EXIT_NO = 1
"""A missing key or a digest that differs: the answer is no."""
EXIT_USAGE = 2
"""A line of a -c FILE that is no `DIGEST  KEY` line: bad input data."""

BACKSLASH = "\\"
_ESCAPES = {"\\": "\\\\", "\n": "\\n"}
_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r"}


def escape_key(key: str) -> tuple[str, bool]:
    """`key` as sha256sum writes a file name (backslash and newline escaped), and whether it had to be."""
    if "\\" not in key and "\n" not in key:
        return key, False
    return "".join(_ESCAPES.get(char, char) for char in key), True


def unescape_key(text: str) -> str | None:
    """The key of an escaped checksum line (`\\\\`, `\\n`, `\\r`), or None when an escape is unknown."""
    out = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        replacement = _UNESCAPES.get(next(chars, ""))
        if replacement is None:
            return None
        out.append(replacement)
    return "".join(out)


def checksum_line(digest: str, key: str) -> str:
    """The `DIGEST  KEY` line of sha256sum for `key` (escaped, with a leading backslash, when needed)."""
    name, escaped = escape_key(key)
    return f"{BACKSLASH if escaped else ''}{digest}  {name}"


def _result_line(key: str, result: str) -> str:
    """A `KEY: OK` line of `-c`: escaped only for a newline in the key, as sha256sum -c prints it."""
    name, escaped = escape_key(key) if "\n" in key else (key, False)
    return f"{BACKSLASH if escaped else ''}{name}: {result}"


def _write_line(line: str) -> None:
    """One output line; a key's control characters shown escaped on a terminal, raw when piped."""
    from anystore_cli.cli.console import encode_text, stdout_is_terminal, terminal_safe

    if stdout_is_terminal():
        line = terminal_safe(line)
    sys.stdout.flush()
    sys.stdout.buffer.write(encode_text(f"{line}\n"))
    sys.stdout.flush()


def _report(exc: BaseException, state: Any) -> None:
    """One error line on stderr, and go on with the next key (as sha256sum does)."""
    from anystore_cli.cli.app import report

    sys.stdout.flush()
    report(exc, getattr(state, "names", None))


def _parse_line(line: str) -> tuple[str, str] | None:
    """(digest, key) of a `DIGEST  KEY` (or `DIGEST *KEY`) line, None when it is none."""
    escaped = line.startswith("\\")
    if escaped:
        line = line[1:]
    digest, space, rest = line.partition(" ")
    if not space or not digest or not rest or rest[0] not in " *" or len(rest) < 2:
        return None
    if any(char not in "0123456789abcdefABCDEF" for char in digest):
        return None
    key = rest[1:]
    if escaped:
        unescaped = unescape_key(key)
        if unescaped is None:
            return None
        key = unescaped
    return digest.lower(), key


def _verify(state: Any, source: str, algorithm: str) -> int:
    """Check the `DIGEST  KEY` lines of `source` against the store; the exit status."""
    from anystore_cli.cli.commands.common import open_input
    from anystore_cli.util.checksum import get_hasher

    hasher = get_hasher(algorithm)
    width = 0 if hasher.name.startswith("shake") else hasher.digest_size * 2
    store = state.store()
    where = "stdin" if source == "-" else f"`{source}`"
    failed = unreadable = malformed = total = 0
    with open_input(source) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8", "surrogateescape").removesuffix("\n")
            if not line.strip():
                continue
            parsed = _parse_line(line)
            if parsed is None or (width and len(parsed[0]) != width):
                what = "no `DIGEST  KEY` line" if parsed is None else f"not a {algorithm} digest (-a ALG?)"
                _report(UsageProblem(f"checksum -c: {where} line {number}: {what}"), state)
                malformed += 1
                continue
            expected, key = parsed
            total += 1
            try:
                key = state.key(key)
                with state.reading(key):
                    digest = store.checksum(key, algorithm)
            except (DoesNotExist, InvalidKey) as exc:
                _write_line(_result_line(key, "FAILED open or read"))
                _report(exc, state)
                unreadable += 1
                continue
            if digest == expected:
                if not state.quiet:
                    _write_line(_result_line(key, "OK"))
            else:
                _write_line(_result_line(key, "FAILED"))
                failed += 1
    if failed:
        noun = "checksum" if total == 1 else "checksums"
        _report(ChecksumMismatch(f"{failed} of {total} computed {noun} did NOT match (store `{state.label}`)"), state)
    if malformed:
        return EXIT_USAGE
    return EXIT_NO if failed or unreadable else 0


LIBRARY_ONLY_SETTINGS = ("serialization_mode", "allow_pickle")
"""Settings of the library's serialization that the command line never uses: its commands move
raw bytes and decode only as `--mode` says (their auto never unpickles)."""


@app.command(epilog="\b\nExample: ANYSTORE_URI=redis://localhost anystore settings")
def settings(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON (indented on a terminal), secrets masked."""
    from anystore_cli import __version__
    from anystore_cli.cli.console import stdout_is_terminal
    from anystore_cli.cli.output.records import json_line
    from anystore_cli.config.settings import Settings

    state = get_state(ctx)
    uri, options = state.store_options()
    current = Settings()
    from anystore_cli.store.options import typed_config
    from anystore_cli.util.uri import ensure_uri

    uri = ensure_uri(uri)
    backend_config = {**(current.backend_config or {}), **(options.get("backend_config") or {})}
    store: dict[str, Any] = {
        "uri": uri,
        "source": _store_source(state),
        "readonly": bool(options.get("readonly") or current.readonly),
        "default_ttl": options.get("default_ttl") or current.default_ttl or None,
        "backend_config": typed_config(uri, backend_config),  # as the store reads them (or exit 2)
        "values": "raw bytes; --mode per command (raw, json, auto; auto never unpickles; pickle only by name)",
    }
    endpoint = _s3_endpoint(uri, store["backend_config"])
    if endpoint is not None:
        store["endpoint"] = endpoint
    # one effective store: the fields that define it are shown above, not beside it
    library = {
        k: v for k, v in current.model_dump().items() if k not in LIBRARY_ONLY_SETTINGS and k not in STORE_SETTINGS
    }
    record = {
        "version": __version__,
        "store": store,
        "settings": library,
    }
    record = mask_secrets(record)
    if stdout_is_terminal():
        import json

        sys.stdout.write(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    sys.stdout.buffer.write(json_line(record))


STORE_SETTINGS = ("uri", "yaml_uri", "json_uri", "backend_config", "readonly", "default_ttl")
"""Settings that make the store: `settings` shows their effect once, under `store`"""


def _s3_endpoint(uri: str, config: dict[str, Any]) -> str | None:
    """The endpoint an S3 store talks to: from its options, else `AWS_ENDPOINT_URL_S3` or
    `AWS_ENDPOINT_URL` (as botocore reads them), else AWS itself."""
    import os

    if uri.split(":", 1)[0] not in ("s3", "s3a"):
        return None
    client_kwargs = config.get("client_kwargs")
    nested = client_kwargs.get("endpoint_url") if isinstance(client_kwargs, dict) else None
    return (
        config.get("endpoint_url")
        or nested
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "AWS (default)"
    )


def _store_source(state: Any) -> str:
    if state.store_from_command_line:
        return "--store"
    if state.uses_config:
        return f"config {state.config_uri}"
    if state.store_uri is not None:
        return "ANYSTORE_URI"
    return "default"
