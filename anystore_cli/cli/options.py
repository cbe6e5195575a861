"""Typer option declarations that several commands share: declared once, used alike.

The key filters (`--glob`, `--include`, `--exclude`, `--shard`) live beside their parsing in
`anystore_cli.cli.commands.filters`; what is here are the plain options that carry no logic.
"""

from typing import Annotated, Any

import typer

from anystore_cli.cli.completion import complete_key

PrefixOption = Annotated[
    str | None,
    typer.Option("--prefix", metavar="P", help="Only keys starting with P (literally).", autocompletion=complete_key),
]
ExcludePrefixOption = Annotated[
    str | None,
    typer.Option("--exclude-prefix", metavar="P", help="Leave out keys starting with P.", autocompletion=complete_key),
]
OutputOption = Annotated[
    str, typer.Option("-o", "--output", metavar="OUT", help="Write to this path or uri instead of stdout.")
]
JobsOption = Annotated[int, typer.Option("-j", "--jobs", metavar="N", min=1, help="Work on N batches/keys at once.")]
SourceOption = Annotated[
    str | None,
    typer.Option("-i", "--input", metavar="SRC", help="Source store uri [default: the --store]."),
]
ChecksumOption = Annotated[
    bool, typer.Option("--checksum", help="Compare MD5 digests (a stored one where the store has it) of equal sizes.")
]


def flag(name: str, help: str) -> Any:
    """An on/off option `name` (off unless given) with its `help` text."""
    return typer.Option(name, help=help)
