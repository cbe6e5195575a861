"""The cli layer of anystore-cli (see docs/architecture.md)."""
