"""In-process memory backend (`memory://`): lives as long as the process.

All memory stores share one namespace, so a store at `memory://foo` sees the keys under
`foo/` of the store at `memory://`, as folders do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, ClassVar

from anystore_cli.backend.base import BaseStore, TTLMixin, VirtualIOMixin
from anystore_cli.backend.model import BaseStats
from anystore_cli.core.exceptions import AlreadyExists
from anystore_cli.core.keys import make_key_filter

# full key -> (value, created, updated, expires)
_DATA: dict[str, tuple[bytes, float, float, float | None]] = {}
_LOCK = threading.RLock()


class MemoryStore(VirtualIOMixin, TTLMixin, BaseStore):
    """A store in this process's memory, with ttl support."""

    supports_ttl: ClassVar[bool] = True
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        path = self.uri[len("memory://") :].strip("/")
        self._prefix = f"{path}/" if path else ""

    def _full(self, key: str) -> str:
        return self._prefix + key

    def _live(self, full: str) -> tuple[bytes, float, float, float | None] | None:
        entry = _DATA.get(full)
        if entry is not None and self.is_expired(entry[3]):
            _DATA.pop(full, None)
            return None
        return entry

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        with _LOCK:
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
        with _LOCK:
            old = self._live(full)
            if old is not None and no_clobber:
                raise AlreadyExists(self._describe(key, "already exists"))
            created = old[1] if old is not None else now
            _DATA[full] = (bytes(value), created, now, self.expires_at(ttl))

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        with _LOCK:
            for key, value in items:
                self._write(key, value, ttl=ttl)

    def _delete(self, key: str) -> bool:
        with _LOCK:
            return self._live(self._full(key)) is not None and _DATA.pop(self._full(key), None) is not None

    def _pop(self, key: str) -> bytes:
        with _LOCK:
            entry = self._live(self._full(key))
            if entry is None:
                raise self._missing(key)
            del _DATA[self._full(key)]
        return entry[0]

    def _exists(self, key: str) -> bool:
        with _LOCK:
            return self._live(self._full(key)) is not None

    def _info(self, key: str) -> BaseStats:
        with _LOCK:
            entry = self._live(self._full(key))
        if entry is None:
            raise self._missing(key)
        return _entry_stats(entry)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        with _LOCK:
            entries = [self._live(self._full(key)) for key in keys]
        for key, entry in zip(keys, entries, strict=True):
            yield key, None if entry is None else _entry_stats(entry)

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        match = make_key_filter(prefix, exclude_prefix, glob)
        size = len(self._prefix)
        with _LOCK:
            candidates = [k[size:] for k in _DATA if k.startswith(self._prefix)]
        for key in candidates:
            if match(key) and self._exists(key):
                yield key


def _entry_stats(entry: tuple[bytes, float, float, float | None]) -> BaseStats:
    return BaseStats.make(
        len(entry[0]),
        datetime.fromtimestamp(entry[1], tz=timezone.utc),
        datetime.fromtimestamp(entry[2], tz=timezone.utc),
    )
