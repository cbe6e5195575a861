"""Store backends and the `get_store` entry point."""

from anystore_cli.core.store.base import BaseStore, VirtualIOMixin, check_readonly
from anystore_cli.core.store.registry import get_store

__all__ = ["BaseStore", "VirtualIOMixin", "check_readonly", "get_store"]
