"""Tell two stores apart (`check`), and the comparisons `mirror` shares with it.

Both stores are listed once, with sizes (and with `checksum` the MD5 digests the listing
gives: the ETag of a single-part S3 upload; PostgreSQL and MySQL compute them on the server),
never asking about each key. Keys in both are compared by size, then by digest: read from the
listing where it had one, else computed by reading the value (small values in batches, large
ones streamed). Modification times are not compared: a copy made later is still the same.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from anystore_cli.services.batches import batched, chunked, read_many, run_each
from anystore_cli.services.retry import KEY_ERRORS, RETRIES, error_message, with_retries
from anystore_cli.store.model import Model


class CheckStatus(Model):
    """What `check` found."""

    equal: int = 0
    """Keys in both stores, the same"""
    differ: int = 0
    """Keys in both stores that differ"""
    only_source: int = 0
    """Keys only the source has"""
    only_target: int = 0
    """Keys only the target has"""
    failed: int = 0
    """Keys that could not be compared"""
    errors: list = []
    """`(key, message)` of the keys that could not be compared"""

    @property
    def same(self) -> bool:
        """The stores hold the same keys and values (as far as compared)"""
        return not (self.differ or self.only_source or self.only_target or self.failed)


def sizes_differ(source: Any, target: Any) -> bool:
    """Both sizes are known and differ."""
    return source.size is not None and target.size is not None and source.size != target.size


class Digests:
    """MD5 digests of values: from the listing where the store gave one, else computed (small
    values read in batches, large ones streamed one by one)."""

    def __init__(self, source: Any, target: Any, retries: int) -> None:
        self.source, self.target, self.retries = source, target, retries

    def _md5s(self, store: Any, entries: list[Any]) -> list[Any]:
        """The digest of each entry's value, or the error that kept it from being read."""
        digests: list[Any] = [entry.md5 for entry in entries]
        wanted = [
            entry.key for entry, md5 in zip(entries, digests, strict=True) if md5 is None and batched(store, entry.size)
        ]
        values = read_many(store, wanted, self.retries)
        for index, entry in enumerate(entries):
            if digests[index] is not None:
                continue
            value = values.get(entry.key)
            if value is not None:
                digests[index] = hashlib.md5(value, usedforsecurity=False).hexdigest()
                continue
            try:
                digests[index] = with_retries(lambda key=entry.key: store.checksum(key, "md5"), self.retries)
            except KEY_ERRORS as exc:
                digests[index] = exc
        return digests

    def differ_many(self, pairs: list[tuple[Any, Any]]) -> list[Any]:
        """For each `(source_entry, target_entry)`: whether the digests differ, or the error."""
        ours = self._md5s(self.source, [pair[0] for pair in pairs])
        theirs = self._md5s(self.target, [pair[1] for pair in pairs])
        return [
            one if isinstance(one, BaseException) else other if isinstance(other, BaseException) else one != other
            for one, other in zip(ours, theirs, strict=True)
        ]


def key_criteria(
    prefix: str | None,
    exclude_prefix: str | None,
    glob: str | None,
    include: Any,
    exclude: Any,
    shard: Any,
    filters: Any,
) -> dict[str, Any]:
    """The key filters of a `mirror` or `check`, as `iterate_keys` takes them (the shard parsed:
    a malformed one fails before any store is asked)."""
    from anystore_cli.util.keys import parse_shard

    return {
        "prefix": prefix,
        "exclude_prefix": exclude_prefix,
        "glob": glob,
        "include": include,
        "exclude": exclude,
        "shard": parse_shard(shard),
        "filters": filters,
    }


def open_stores(source: Any, target: Any) -> tuple[Any, Any]:
    """The backends of two stores, library stores unwrapped and uris opened."""
    from anystore_cli.store.base import as_backend
    from anystore_cli.store.registry import get_store

    source, target = as_backend(source), as_backend(target)
    if not hasattr(source, "iterate_keys"):
        source = get_store(source)
    if not hasattr(target, "iterate_keys"):
        target = get_store(target)
    return source, target


def check(
    source: Any,
    target: Any,
    glob: str | None = None,
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    filters: Iterable[str] | None = None,
    checksum: bool = False,
    workers: int = 1,
    on_result: Callable[[str, Any, Any, str | None], None] | None = None,
    retries: int = RETRIES,
) -> CheckStatus:
    """Compare the matching keys of two stores: which only one has, and which differ.

    Keys in both are compared by size, and with `checksum` also by MD5 digest (see `mirror`).
    Modification times are not compared: a copy made later is still the same.

    Example:
        ```python
        status = check("./site", "s3://bucket/site", checksum=True)
        if not status.same:
            print(status.only_source, status.only_target, status.differ)
        ```

    Args:
        source: Store (or uri) one
        target: Store (or uri) two
        glob, prefix, exclude_prefix, include, exclude, shard, filters: The keys to compare, as
            `mirror` takes them
        checksum: Compare digests of keys whose sizes are equal
        workers: Keys compared at once (digests computed in parallel)
        on_result: Called one at a time with `(status, source_entry, target_entry, error)` for
            every key that is not the same, status one of "only_source", "only_target",
            "differ", "failed" (entries None on the side that lacks the key)
        retries: Attempts per listing and digest

    Returns:
        The counts of equal, differing and one-sided keys
    """
    criteria = key_criteria(prefix, exclude_prefix, glob, include, exclude, shard, filters)
    source, target = open_stores(source, target)
    status = CheckStatus()
    lock = threading.Lock()
    digests = Digests(source, target, retries)
    theirs = {
        entry.key: entry
        for entry in with_retries(lambda: list(target.iterate_entries(**criteria, md5=checksum)), retries)
    }

    def _report(outcome: str, ours: Any, other: Any, error: str | None = None) -> None:
        with lock:
            setattr(status, outcome, getattr(status, outcome) + 1)
            if error is not None:
                status.errors.append(((ours or other).key, error))
            if outcome != "equal" and on_result is not None:
                on_result(outcome, ours, other, error)

    def _compare(pairs: list[tuple[Any, Any]]) -> None:
        """Compare a batch of keys both stores hold: sizes, then digests read in batches."""
        verdicts: list[Any] = [sizes_differ(ours, other) for ours, other in pairs]
        if checksum:
            wanted = [index for index, differ in enumerate(verdicts) if not differ]
            for index, verdict in zip(wanted, digests.differ_many([pairs[i] for i in wanted]), strict=True):
                verdicts[index] = verdict
        for (ours, other), verdict in zip(pairs, verdicts, strict=True):
            if isinstance(verdict, BaseException):
                _report("failed", ours, other, error_message(verdict))
            else:
                _report("differ" if verdict else "equal", ours, other)

    def _pairs() -> Iterator[tuple[Any, Any]]:
        for ours in source.iterate_entries(**criteria, md5=checksum):
            other = theirs.pop(ours.key, None)
            if other is None:
                _report("only_source", ours, None)
            else:
                yield ours, other

    run_each(_compare, chunked(_pairs(), lambda pair: pair[0].size), workers)
    for key in sorted(theirs):
        _report("only_target", None, theirs[key])
    return status
