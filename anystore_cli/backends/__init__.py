"""The backends layer of anystore-cli (see docs/architecture.md)."""
