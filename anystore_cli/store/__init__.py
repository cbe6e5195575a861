"""The store layer of anystore-cli (see docs/architecture.md)."""
