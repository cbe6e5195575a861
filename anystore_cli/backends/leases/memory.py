"""Leases in memory:// stores: a dict under a process-wide lock (threads of one process only)."""

from __future__ import annotations

import threading
from typing import Any

from anystore_cli.store.lease import Lease, LeaseBackend

_MEMORY: dict[tuple[str, str], bytes] = {}
_MEMORY_LOCK = threading.Lock()


class MemoryLeases(LeaseBackend):
    """memory:// stores: a dict under a process-wide lock (threads of one process only)."""

    within_process = True

    def _key(self, name: str) -> tuple[str, str]:
        return self.store.uri, name

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """The record held in memory."""
        with _MEMORY_LOCK:
            data = _MEMORY.get(self._key(name))
        return (None, None) if data is None else (Lease.load(data), data)

    def create(self, name: str, lease: Lease) -> Any:
        """Set if missing."""
        data = lease.dump()
        with _MEMORY_LOCK:
            if self._key(name) in _MEMORY:
                return None
            _MEMORY[self._key(name)] = data
        return data

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """Set if unchanged."""
        data = lease.dump()
        with _MEMORY_LOCK:
            if _MEMORY.get(self._key(name)) != version:
                return None
            _MEMORY[self._key(name)] = data
        return data
