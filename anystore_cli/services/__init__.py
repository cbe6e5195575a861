"""The services layer of anystore-cli (see docs/architecture.md)."""
