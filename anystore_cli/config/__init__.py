"""The config layer of anystore-cli (see docs/architecture.md)."""
