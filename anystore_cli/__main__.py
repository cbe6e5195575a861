"""Entry point for `python -m anystore_cli`."""

from anystore_cli.cli.app import main

if __name__ == "__main__":
    main()
