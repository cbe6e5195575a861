"""The command line as a library module (anystore's `cli`): `from anystore_cli.core.cli import cli`.

`cli` is the Typer application of the `anystore` command, e.g. for `typer.testing.CliRunner`.
Its commands and options are those of anystore-cli (see `anystore --help`).
"""

from __future__ import annotations

from anystore_cli.cli.app import app as cli
from anystore_cli.cli.app import main

__all__ = ["cli", "main"]
