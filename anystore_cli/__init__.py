"""anystore-cli: script key-value stores from the shell."""

__version__ = "0.1.0"
