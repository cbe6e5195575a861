"""One entry record: what a listing knows about a key (`KeyEntry`), and the key metadata of the
single-key calls (`BaseStats` from a backend, `Stats` for callers), with the conversions
between them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NamedTuple

from anystore_cli.errors import InvalidData
from anystore_cli.store.model import Model


class KeyEntry(NamedTuple):
    """A key with what a listing knows about its value (None: the store does not say)."""

    key: str
    size: int | None = None
    """Bytes"""
    mtime: float | None = None
    """Last change (updated), epoch seconds"""
    md5: str | None = None
    """Hex MD5 of the value, where the store keeps one (an S3 ETag of one part) or computes it
    on the server (PostgreSQL, MySQL) when asked for"""
    created: float | None = None
    """Creation, epoch seconds"""
    kind: str | None = None
    """None for a value; else what the name holds instead (a Redis `hash`, `list`, ...)"""


def to_datetime(value: Any) -> datetime | None:
    """Coerce a timestamp (datetime, ISO string, epoch seconds) to a datetime."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    raise InvalidData(f"Not a timestamp: `{value!r}`")


_fromtimestamp = datetime.fromtimestamp
_UTC = timezone.utc


class BaseStats(Model):
    """Shared base metadata object"""

    created_at: datetime | None = None
    """Created at timestamp"""
    updated_at: datetime | None = None
    """Last updated timestamp"""
    size: int
    """Size (content length) in bytes"""

    _coerce = {"created_at": to_datetime, "updated_at": to_datetime, "size": int}

    @classmethod
    def make(cls, size: int, created_at: datetime | None, updated_at: datetime | None) -> Any:
        """A `BaseStats` from values of the right types, without coercing them again: for the
        backends' listings, which build one a key."""
        new = cls.__new__(cls)
        new.__dict__.update(created_at=created_at, updated_at=updated_at, size=size, _extra={})
        return new


class Stats(BaseStats):
    """Meta information for a store key"""

    name: str
    """Key name: last part of the key (aka file name without path)"""
    store: str
    """Store base uri"""
    key: str
    """Full path of key"""

    @classmethod
    def build(cls, key: str, store: str, stats: BaseStats) -> Stats:
        """The metadata of `key` in `store` from a backend's `BaseStats` (already coerced: no
        validation again, which matters when a listing builds one for every key)."""
        return cls._of(key, store, stats.size, stats.created_at, stats.updated_at)

    @classmethod
    def from_entry(cls, entry: KeyEntry, store: str) -> Stats:
        """The metadata of a listed entry in `store` (times in UTC), built as `build` builds it."""
        key, size, updated, _, created, _ = entry
        return cls._of(
            key,
            store,
            size,
            None if created is None else _fromtimestamp(created, _UTC),
            None if updated is None else _fromtimestamp(updated, _UTC),
        )

    @classmethod
    def _of(cls, key: str, store: str, size: int | None, created: datetime | None, updated: datetime | None) -> Stats:
        """Fields already of the right types, set without validating them again."""
        new = cls.__new__(cls)
        new.__dict__.update(
            created_at=created, updated_at=updated, size=size, name=key.rsplit("/", 1)[-1], store=store, key=key
        )
        new._extra = {}
        return new

    @property
    def uri(self) -> str:
        """The key's uri: absolute for file-like stores, the key itself for others."""
        from anystore_cli.store.model import StoreModel
        from anystore_cli.util.uri import join_uri

        if StoreModel(uri=self.store).is_fslike:
            return join_uri(self.store, self.key)
        return self.key


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def entry_from_stats(key: str, stats: BaseStats) -> KeyEntry:
    """The listing record of `key` from a backend's `BaseStats` (a Redis name of another type
    keeps it as `kind`)."""
    kind = stats._extra.get("value_type") if stats._extra else None
    created, updated = stats.created_at, stats.updated_at
    return KeyEntry(key, stats.size, _epoch(updated or created), None, _epoch(created), kind)


def stats_from_entry(entry: KeyEntry) -> BaseStats:
    """A backend's `BaseStats` from a listing record (the times in UTC)."""
    created = entry.created
    stats = BaseStats.make(
        entry.size,  # type: ignore[arg-type]
        None if created is None else datetime.fromtimestamp(created, tz=timezone.utc),
        None if entry.mtime is None else datetime.fromtimestamp(entry.mtime, tz=timezone.utc),
    )
    if entry.kind is not None:
        stats._extra = {"value_type": entry.kind}
    return stats


__all__ = ["BaseStats", "KeyEntry", "Stats", "entry_from_stats", "stats_from_entry", "to_datetime"]
