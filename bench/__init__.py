"""Benchmarks for anystore-cli: `python -m bench` (see bench/README.md)."""
