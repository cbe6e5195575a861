"""In-process memory backend (`memory://`): lives as long as the process.

Each store object has its own keys, as in the original library: two `get_store("memory://")`
calls give two empty stores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, ClassVar

from anystore_cli.errors import AlreadyExists
from anystore_cli.store.base import KEY_BATCH, BaseStore, Capabilities, KeyEntry, TTLMixin, VirtualIOMixin
from anystore_cli.store.contract import batched
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.options import Option
from anystore_cli.util.keys import make_key_filter


class MemoryStore(VirtualIOMixin, TTLMixin, BaseStore):
    """A store in this process's memory, with ttl support."""

    options: ClassVar[tuple[Option, ...]] = ()

    capabilities: ClassVar[Capabilities] = Capabilities(
        ttl=True, leases="anystore_cli.backends.leases.memory:MemoryLeases", writes_wait=False
    )
    portable: ClassVar[bool] = True
    """The store's data lives in the object: pickles and copies carry it"""
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._prefix = ""
        # full key -> (value, created, updated, expires)
        self._data: dict[str, tuple[bytes, float, float, float | None]] = {}
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        """A memory store pickles and deep-copies with its keys (not its lock)."""
        with self._lock:
            state = dict(self.__dict__)
            state["_data"] = dict(self._data)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def _full(self, key: str) -> str:
        return self._prefix + key

    def _live(self, full: str) -> tuple[bytes, float, float, float | None] | None:
        entry = self._data.get(full)
        if entry is not None and self.is_expired(entry[3]):
            self._data.pop(full, None)
            return None
        return entry

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        with self._lock:
            entry = self._live(self._full(key))
        if entry is None:
            if raise_on_nonexist:
                raise self._missing(key)
            return None
        if "b" not in kwargs.get("mode", "rb"):
            return entry[0].decode()
        return entry[0]

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        full = self._full(key)
        now = time.time()
        with self._lock:
            old = self._live(full)
            if old is not None and no_clobber:
                raise AlreadyExists(self._describe(key, "already exists"))
            created = old[1] if old is not None else now
            self._data[full] = (bytes(value), created, now, self.expires_at(ttl))

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        with self._lock:
            for key, value in items:
                self._write(key, value, ttl=ttl)

    def _delete(self, key: str) -> bool:
        with self._lock:
            return self._live(self._full(key)) is not None and self._data.pop(self._full(key), None) is not None

    def _pop(self, key: str) -> bytes:
        with self._lock:
            entry = self._live(self._full(key))
            if entry is None:
                raise self._missing(key)
            del self._data[self._full(key)]
        return entry[0]

    def _exists(self, key: str) -> bool:
        with self._lock:
            return self._live(self._full(key)) is not None

    def _info(self, key: str) -> BaseStats:
        with self._lock:
            entry = self._live(self._full(key))
        if entry is None:
            raise self._missing(key)
        return _entry_stats(entry)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        with self._lock:
            entries = [self._live(self._full(key)) for key in keys]
        for key, entry in zip(keys, entries, strict=True):
            yield key, None if entry is None else _entry_stats(entry)

    def _list(
        self, prefix: str | None, exclude_prefix: str | None, glob: str | None, detail: bool = False, md5: bool = False
    ) -> Iterator[list[Any]]:
        """The live keys of a snapshot of the dict, in batches."""
        match = make_key_filter(prefix, exclude_prefix, glob)
        size = len(self._prefix)
        with self._lock:
            candidates = [(k[size:], e) for k, e in self._data.items() if k.startswith(self._prefix)]
        for batch in batched(candidates, KEY_BATCH):
            live = [(key, e) for key, e in batch if match(key) and not self.is_expired(e[3])]
            if live and detail:
                yield [KeyEntry(key, len(e[0]), e[2], None, e[1]) for key, e in live]
            elif live:
                yield [key for key, _ in live]


def _entry_stats(entry: tuple[bytes, float, float, float | None]) -> BaseStats:
    return BaseStats.make(
        len(entry[0]),
        datetime.fromtimestamp(entry[1], tz=timezone.utc),
        datetime.fromtimestamp(entry[2], tz=timezone.utc),
    )
