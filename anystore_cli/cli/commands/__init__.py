"""The commands of `anystore`, one module per family, registered lazily by `anystore_cli.cli.app`."""
