"""The start-up floor of a command line built on typer: one command that prints a file.

`bench/startup.py` times it beside `anystore get`, so the report shows what any typer program
pays before it does its own work.
"""

import sys

import typer

app = typer.Typer(add_completion=False)


@app.command()
def get(path: str) -> None:
    """Print the bytes of PATH."""
    with open(path, "rb") as handle:
        sys.stdout.buffer.write(handle.read())


if __name__ == "__main__":
    app()
