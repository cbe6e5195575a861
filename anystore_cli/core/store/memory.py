"""The library's `MemoryStore`: A store in this process's memory, with ttl; each store object has its own keys."""

from __future__ import annotations

from typing import ClassVar

from anystore_cli.core.store.base import BaseStore


class MemoryStore(BaseStore):
    """A store in this process's memory, with ttl; each store object has its own keys"""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.memory:MemoryStore"
