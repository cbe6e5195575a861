"""The server layer of anystore-cli (see docs/architecture.md)."""
