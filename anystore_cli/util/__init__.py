"""The util layer of anystore-cli (see docs/architecture.md)."""
