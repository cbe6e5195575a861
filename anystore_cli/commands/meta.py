"""Metadata: `info`, `checksum`, `settings`."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from anystore_cli.commands.common import get_state, mask_secrets
from anystore_cli.completion import complete_key
from anystore_cli.core.exceptions import ChecksumMismatch

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command(epilog="\b\nExample: anystore info data/a.csv --json | jq .size")
def info(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="The key.", autocompletion=complete_key)],
    json: Annotated[bool, typer.Option("--json", help="JSON even on a terminal.")] = False,
) -> None:
    """Show a key's metadata: JSON when piped (or --json), a table on a terminal."""
    from anystore_cli.commands.keys import info_record
    from anystore_cli.console import json_line, stdout_is_terminal

    state = get_state(ctx)
    key = state.key(key)
    with state.reading(key):
        record = info_record(state.store().info(key))
    if json or not stdout_is_terminal():
        sys.stdout.buffer.write(json_line(record))
        return
    from anystore_cli.console import print_record

    print_record(record)


def _complete_algorithm(incomplete: str) -> list[str]:
    import hashlib

    return sorted(name for name in hashlib.algorithms_guaranteed if name.startswith(incomplete.lower()))


@app.command(epilog="\b\nExample: anystore checksum a.bin b.bin -a sha256")
def checksum(
    ctx: typer.Context,
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="One or more keys.", autocompletion=complete_key)],
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
        typer.Option("--check", metavar="DIGEST", help="Compare with DIGEST: exit 1 if it differs."),
    ] = None,
) -> None:
    """Hash values: one key prints the hex digest, several print `DIGEST  KEY` lines (as sha1sum)."""
    from anystore_cli.core.checksum import get_hasher

    state = get_state(ctx)
    get_hasher(algorithm)  # an unknown algorithm is a usage error before any I/O
    checked = [state.key(key) for key in keys]
    store = state.store()
    expected = check.strip().lower() if check is not None else None
    for key in checked:
        with state.reading(key):
            digest = store.checksum(key, algorithm.lower())
        if expected is not None:
            if digest != expected:
                raise ChecksumMismatch(
                    f"Key `{key}` in store `{state.label}`: {algorithm} is {digest}, expected {expected}"
                )
            state.detail(f"{key}: OK")
        elif len(checked) == 1:
            sys.stdout.write(f"{digest}\n")
        else:
            from anystore_cli.console import encode_text, stdout_is_terminal, terminal_safe

            name = terminal_safe(key) if stdout_is_terminal() else key
            sys.stdout.flush()
            sys.stdout.buffer.write(encode_text(f"{digest}  {name}\n"))
        sys.stdout.flush()


LIBRARY_ONLY_SETTINGS = ("serialization_mode", "allow_pickle")
"""Settings of the library's serialization that the command line never uses: its commands move
raw bytes and decode only as `--mode` says (their auto never unpickles)."""


@app.command(epilog="\b\nExample: ANYSTORE_URI=redis://localhost anystore settings")
def settings(ctx: typer.Context) -> None:
    """Print the effective configuration as JSON (indented on a terminal), secrets masked."""
    from anystore_cli import __version__
    from anystore_cli.backend.settings import Settings
    from anystore_cli.console import json_line, stdout_is_terminal

    state = get_state(ctx)
    uri, options = state.store_options()
    current = Settings()
    from anystore_cli.backend.options import typed_config
    from anystore_cli.core.uri import ensure_uri

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
