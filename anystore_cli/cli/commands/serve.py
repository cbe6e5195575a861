"""`serve`: the store over HTTP (Starlette on uvicorn, from the `serve` extra)."""

import os
from typing import Annotated

import typer

from anystore_cli.cli.commands.common import UsageProblem, get_state
from anystore_cli.errors import MissingDependency

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)

TOKEN_ENV = "ANYSTORE_SERVE_TOKEN"


def read_token(token_file: str | None) -> str | None:
    """The bearer token for writes: the first line of `token_file`, else env ANYSTORE_SERVE_TOKEN."""
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except OSError as exc:
            raise UsageProblem(f"serve: cannot read the token file `{token_file}`: {exc.strerror or exc}") from None
        if not token:
            raise UsageProblem(f"serve: the token file `{token_file}` is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


@app.command(
    epilog="\b\nExample: anystore serve --port 8000 --writable --token-file token.txt\n"
    "\b\nThen: curl http://127.0.0.1:8000/KEY, curl http://127.0.0.1:8000/PREFIX/, "
    "anystore -s anystore+http://127.0.0.1:8000 keys"
)
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", metavar="H", help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="P", min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8000,
    writable: Annotated[
        bool, typer.Option("--writable", help="Take PUT and DELETE with the bearer token (read-only by default).")
    ] = False,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="Also answer requests for the host NAME (repeatable); others get 421. "
            "On loopback only the bound address and localhost are answered by default.",
        ),
    ] = None,
    token_file: Annotated[
        str | None,
        typer.Option(
            "--token-file", metavar="F", help=f"Read the bearer token for writes from F (else env {TOKEN_ENV})."
        ),
    ] = None,
) -> None:
    """Serve the store over HTTP: GET (Range), HEAD, listings of PREFIX/, a page for browsers at /."""
    state = get_state(ctx)
    token = read_token(token_file)
    if writable and not token:
        raise UsageProblem(f"serve: --writable needs a bearer token (give --token-file F or env {TOKEN_ENV})")
    try:
        from anystore_cli.server.app import serve as run_server
    except ImportError as exc:
        raise MissingDependency(
            f"serve needs a missing package ({exc.name}): pip install 'anystore-cli[serve]'"
        ) from None
    store = state.store()
    run_server(
        store, host=host, port=port, writable=writable, token=token, quiet=state.quiet, allow_hosts=allow_host or ()
    )
