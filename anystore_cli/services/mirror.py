"""Make one store hold another's keys (`mirror`).

It lists each side once, with sizes and modification times (`iterate_entries`: one paginated
listing on S3, one query on SQL), never asking about each key.

Which keys `mirror` copies (`decide`):

- a key the target lacks is always copied;
- by default a key is copied again when the sizes differ, or when the source's modification
  time is later than the target's (by more than the target's time precision: 1 s on S3, 2 s
  in zip archives, 50 ms in local folders) - the rule of `aws s3 sync`. A copy is newer than its source, so
  an unchanged key is skipped on the next run. Where a store does not know a key's time (Redis
  keys written by other tools), the size alone decides;
- with `checksum`, when the sizes or the MD5 digests differ: taken from the listing where the
  store has them (the ETag of a single-part S3 upload; PostgreSQL and MySQL compute them on the
  server), else computed by reading the value;
- with `overwrite`, every key; with `ignore_existing`, only the keys the target lacks.

A copy goes through the server where the backends can (S3 to S3 on one endpoint, two tables of
one SQL database, two Redis databases or prefixes of one server), else through this process:
small values in batches (`get_many` from the source, `put_many` to the target: one query a
batch on SQL, one pipeline on Redis), a value over `STREAM_OVER` bytes (or of unknown size)
streamed on its own, never held whole. Digests for `checksum` are read the same way. With
several workers, each takes whole batches, so no two of them wait on one round trip. A copy
that fails for a transient reason (the store failed: a timeout, a dropped connection, a 5xx)
is tried again (a failed batch: each of its keys on its own); a key that still fails is counted and the others go on.
With `delete`, the target's matching keys the source lacks are deleted after the copies, and
only when no copy failed and the source was listed in full: a source that is not there is an
error, and a listing that failed part-way (an unreadable folder) is counted and reported, the
keys listed before it copied, nothing deleted.

A target that is not there yet (a new folder, archive or bucket) is empty: the copies create
it, a bucket first (`create=False` refuses instead). A source and target that overlap (one
inside the other, or the same store) are refused: the copy would read its own writes, and
`delete` would remove the source's own keys.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from anystore_cli.errors import DoesNotExist, InvalidData, StoreNotFound
from anystore_cli.services.batches import chunked, fits_batch, is_plain, read_many, run_each
from anystore_cli.services.check import Digests, key_criteria, open_stores, sizes_differ
from anystore_cli.services.retry import KEY_ERRORS, RETRIES, error_message, with_retries
from anystore_cli.store.model import Model


class MirrorStatus(Model):
    """What a mirror run did."""

    mirrored: int = 0
    """Keys copied (with `dry_run`: keys that would be copied)"""
    skipped: int = 0
    """Keys left alone because the target had them, unchanged"""
    failed: int = 0
    """Keys that could not be copied (or deleted)"""
    deleted: int = 0
    """Target keys deleted because the source lacks them (with `dry_run`: that would be)"""
    server_side: int = 0
    """Of the keys copied, those copied on the server (no bytes through this process)"""
    bytes: int = 0
    """Bytes copied"""
    delete_skipped: bool = False
    """`delete` was asked for but not done, because a copy or the source's listing failed"""
    errors: list = []
    """`(key, message)` of the failed keys"""
    listing_errors: list = []
    """Messages of the source's listings that failed part-way (the keys listed before were
    handled; keys after the failure were not seen)"""
    created: bool = False
    """The target's bucket was created"""

    @property
    def total(self) -> int:
        """Keys seen"""
        return self.mirrored + self.skipped + self.failed


def source_is_newer(source: Any, target: Any, window: float = 0.0) -> bool:
    """Both times are known and the source's is later than the target's by more than `window`."""
    return source.mtime is not None and target.mtime is not None and source.mtime > target.mtime + window


def compare_mode(overwrite: bool = False, checksum: bool = False, ignore_existing: bool = False) -> str:
    """The one way of comparing asked for: "overwrite", "checksum", "ignore-existing" or "size-time".

    Raises:
        InvalidData: If more than one is asked for
    """
    chosen = [
        name
        for name, on in (("overwrite", overwrite), ("checksum", checksum), ("ignore-existing", ignore_existing))
        if on
    ]
    if len(chosen) > 1:
        raise InvalidData(f"Choose one of --overwrite, --checksum and --ignore-existing (got {', '.join(chosen)})")
    return chosen[0] if chosen else "size-time"


def store_location(store: Any) -> tuple[str, str]:
    """Where a store lives, as `(place, path)`: two stores of one place overlap when one's path
    is the other's or inside it ("" holds every path).

    Local folders and archives are compared by resolved path (symlinks followed), object
    stores by endpoint, bucket and prefix, Redis by server, database and key prefix, SQL by
    database and table.
    """
    import os
    from urllib.parse import urlsplit

    uri = str(store.uri)
    config = getattr(store, "backend_config", None) or {}
    if uri.startswith("file://"):
        return "file", os.path.realpath(uri[len("file://") :])
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    place = f"{scheme}://{host}:{parts.port or ''}"
    if scheme.startswith("memory"):
        return f"memory:{id(store)}", ""
    table = getattr(store, "table_name", None) or config.get("table") or ""
    if scheme.startswith("sqlite"):
        path = uri.split(":///", 1)[1].split("?", 1)[0] if ":///" in uri else ""
        return f"sqlite:{os.path.realpath(path) if path and path != ':memory:' else id(store)}#{table}", ""
    sql = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
    if scheme.split("+", 1)[0] in sql:  # SQLAlchemy urls: one store a table
        return f"{place}{parts.path}#{table}", ""
    if scheme in ("redis", "rediss"):
        prefix = getattr(store, "redis_prefix", None)
        database = parts.path.strip("/").split("/", 1)[0] or "0"  # the rest of the path is the prefix
        return f"redis://{host}:{parts.port or 6379}/{database}", str(prefix or "")
    if scheme in ("s3", "s3a"):
        endpoint = str(config.get("endpoint_url") or "").rstrip("/")
        place = f"s3:{endpoint}:{host}"
    return place, parts.path.strip("/")


def check_overlap(source: Any, target: Any) -> None:
    """Refuse a mirror between stores that overlap (the same store, or one inside the other).

    Raises:
        InvalidData: If they overlap
    """
    from anystore_cli.util.uri import mask_uri

    (place, path), (other_place, other_path) = store_location(source), store_location(target)
    if place != other_place:
        return
    if path == other_path:
        how = "are the same store"
    elif not path or other_path.startswith(path + "/"):
        how = "overlap: the target is inside the source"
    elif not other_path or path.startswith(other_path + "/"):
        how = "overlap: the source is inside the target"
    else:
        return
    raise InvalidData(
        f"Stores `{mask_uri(source.uri)}` and `{mask_uri(target.uri)}` {how}; "
        "a mirror would copy its own writes (and with --delete remove the source's own keys)"
    )


def mirror(
    source: Any,
    target: Any,
    glob: str | None = None,
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    overwrite: bool = False,
    workers: int = 1,
    dry_run: bool = False,
    keys: Iterable[str] | None = None,
    on_progress: Callable[[str, str], None] | None = None,
    retries: int = RETRIES,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    shard: str | tuple[int, int] | None = None,
    filters: Iterable[str] | None = None,
    checksum: bool = False,
    ignore_existing: bool = False,
    delete: bool = False,
    create: bool = True,
    on_plan: Callable[[str, int | None], None] | None = None,
    **kwargs: Any,
) -> MirrorStatus:
    """Make `target` hold `source`'s matching keys: copy the keys it lacks or holds changed.

    See the module's docstring for the rules. A key whose copy fails for a transient reason is
    retried; a key that still fails is counted and the rest go on.

    Example:
        ```python
        status = mirror("./data", "s3://bucket/data", glob="**/*.json", workers=8, delete=True)
        print(status.mirrored, status.skipped, status.deleted, status.failed)
        ```

    Args:
        source: Store (or uri) to read from
        target: Store (or uri) to write to
        glob: Only keys matching this glob
        prefix: Only keys with this prefix
        exclude_prefix: Leave out keys with this prefix
        overwrite: Copy every key, changed or not
        workers: Number of parallel copies
        dry_run: Only count (and report through `on_progress`) what would be copied and deleted
        keys: Copy these keys instead of listing the source (each is then looked up on both
            sides; `delete` is not possible)
        on_progress: Called with `(key, outcome)` for every key, outcome one of "mirrored",
            "skipped", "failed", "deleted"; calls come one at a time
        retries: Attempts per key
        include: Globs of keys to keep, as rclone's `--include` (see `core.keys`)
        exclude: Globs of keys to leave out, as rclone's `--exclude`
        shard: Only the keys of shard `"I/N"`: N runs with shards 0..N-1 copy each key once
        filters: Ordered rules `"+ GLOB"` / `"- GLOB"`, tried before `include` and `exclude`
        checksum: Compare MD5 digests instead of modification times
        ignore_existing: Copy only the keys the target lacks
        delete: Delete the target's matching keys that the source lacks (after the copies,
            and not at all when a copy or the source's listing failed)
        create: Create the target's bucket when it does not exist (False: refuse)
        on_plan: Called with `(key, size)` for every key found to need a copy, before it is
            copied (size None when the listing did not give it); calls come one at a time

    Returns:
        The counts of mirrored, skipped, deleted and failed keys, and the listing errors

    Raises:
        InvalidData: If more than one of overwrite/checksum/ignore_existing is given, or
            `delete` with `keys`, or a bad shard or filter, or the stores overlap
        StoreNotFound: If the source is not there, or the target is not and `create` is off
        StoreError: If the source (or the target, when it is listed) cannot be listed
    """
    from anystore_cli.util.keys import make_key_filter

    mode = compare_mode(overwrite, checksum, ignore_existing)
    if delete and keys is not None:
        raise InvalidData("`delete` needs the source's listing: it cannot be used with a list of keys")
    criteria = key_criteria(prefix, exclude_prefix, glob, include, exclude, shard, filters)
    source, target = open_stores(source, target)
    check_overlap(source, target)
    status = MirrorStatus()
    lock = threading.Lock()
    # stores under-report times (truncated, or a coarse clock): only the target's can make an
    # unchanged key look changed
    window = target.capabilities.mtime_precision
    digests = Digests(source, target, retries)

    # by size and time or digest, both sides are listed with their metadata; else names do
    detailed = mode in ("size-time", "checksum")
    existing: dict[str, Any] | None = None
    # a target whose listing walks its whole database (Redis) is asked about each batch's keys
    # instead: the cost follows the keys copied, not the size of the database
    lookup = (
        keys is None
        and not delete
        and mode in ("size-time", "ignore-existing")
        and target.capabilities.listing_walks_all
    )
    try:
        if lookup:
            pass
        elif keys is None and (mode != "overwrite" or delete):
            if detailed:
                listed = with_retries(lambda: list(target.iterate_entries(**criteria, md5=mode == "checksum")), retries)
                existing = {entry.key: entry for entry in listed}
            else:
                existing = dict.fromkeys(with_retries(lambda: list(target.iterate_keys(**criteria)), retries))
        elif not create or hasattr(target, "create_bucket"):  # not listed: one look that it is there
            with_retries(lambda: next(iter(target.iterate_key_batches()), None), retries)
    except StoreNotFound:
        if not create:
            raise
        # a bucket is made first; the first write makes a folder or an archive
        make = getattr(target, "create_bucket", None)
        if make is not None and not dry_run:
            status.created = bool(make())
        existing = {} if keys is None and (mode != "overwrite" or delete) else None

    def _count(key: str, outcome: str, size: int = 0, error: str | None = None, server: bool = False) -> None:
        with lock:
            setattr(status, outcome, getattr(status, outcome) + 1)
            status.bytes += size
            status.server_side += server
            if error is not None:
                status.errors.append((key, error))
            if on_progress is not None:
                on_progress(key, outcome)

    def _target_entry(key: str, known: dict[str, Any] | None = None) -> Any:
        if known is not None:
            return known.get(key)
        if existing is not None:
            return existing.get(key, None) if detailed else (key if key in existing else None)
        return with_retries(lambda: target.entry(key), retries)

    def _decide(key: str, entry: Any, known: dict[str, Any] | None = None) -> tuple[str, Any]:
        """Whether to "copy" or "skip" `key`, or "digest" (compare digests), and its source
        entry (looked up when not listed); `known`: the target's entries of the batch."""
        if mode == "overwrite":
            return "copy", entry
        theirs = _target_entry(key, known)
        if theirs is None:
            return "copy", entry
        if mode == "ignore-existing":
            return "skip", entry
        if entry is None:
            entry = with_retries(lambda: source.entry(key), retries)
            if entry is None:
                raise DoesNotExist(f"Key `{key}` in store `{source.uri}`: does not exist")
        if sizes_differ(entry, theirs):
            return "copy", entry
        if mode == "checksum":
            return "digest", (entry, theirs)
        return ("copy" if source_is_newer(entry, theirs, window) else "skip"), entry

    def _copy(key: str, size: int | None) -> tuple[int, bool]:
        copied = target.server_copy(source, key, size=size)
        if copied is not None:
            return copied, True
        with source.open(key, "rb") as handle:
            return target.put_stream(key, handle), False

    # whether the backends copy on the server (learnt from the first copy): then every key goes
    # that way; else small values move in batches
    on_server: list[bool] = []
    batched = is_plain(source) and is_plain(target)
    helpers = ThreadPoolExecutor(workers, thread_name_prefix="anystore-copy") if workers > 1 else None

    def _copy_one(key: str, size: int | None) -> Any:
        try:
            copied, server = with_retries(lambda: _copy(key, size), retries)
        except KEY_ERRORS as exc:
            return exc
        if not on_server:
            on_server.append(server)
        return copied or 0, server

    def _copy_many(todo: list[tuple[str, int | None]]) -> dict[str, Any]:
        """Copy `(key, size)`s; `key -> (bytes, on the server)` or the error of the key."""
        done: dict[str, Any] = {}
        small: list[str] = []
        each: list[tuple[str, int | None]] = []
        sizes = dict(todo)
        for key, size in todo:
            if not on_server:  # not known yet: this key's copy tells
                done[key] = _copy_one(key, size)
            elif batched and not on_server[0] and fits_batch(size):
                small.append(key)
            else:
                each.append((key, size))
        if helpers is not None and len(each) > 1:  # copies on the server: as many at once as workers
            done.update(zip([key for key, _ in each], helpers.map(lambda job: _copy_one(*job), each), strict=True))
        else:
            done.update((key, _copy_one(key, size)) for key, size in each)
        values = read_many(source, small, retries)
        pairs = [(key, values[key]) for key in small if key in values]
        if pairs:
            try:
                with_retries(lambda: target.put_many(pairs, serialization_mode="raw"), retries)
            except KEY_ERRORS:
                values = {}  # the batch failed: each key on its own tells its own error
        for key in small:
            value = values.get(key)
            done[key] = (len(value), False) if value is not None else _copy_one(key, sizes[key])
        return done

    def _handle(items: list[Any]) -> None:
        """Decide and copy a batch of listed keys (or entries), counting each in listing order."""
        decided: list[tuple[str, str, Any]] = []
        known: dict[str, Any] | None = None
        if lookup:
            names = [item if isinstance(item, str) else item.key for item in items]
            try:
                known = with_retries(lambda: target.entry_many(names), retries)
            except KEY_ERRORS as exc:  # the batch's keys fail together, the others go on
                for name in names:
                    _count(name, "failed", error=error_message(exc))
                return
        for item in items:
            key, entry = (item, None) if isinstance(item, str) else (item.key, item)
            try:
                decided.append((key, *_decide(key, entry, known)))
            except KEY_ERRORS as exc:
                decided.append((key, "failed", exc))
        digest = [found for _, how, found in decided if how == "digest"]
        if digest:
            verdicts = iter(digests.differ_many(digest))
            for index, (key, how, found) in enumerate(decided):
                if how == "digest":
                    verdict = next(verdicts)
                    if isinstance(verdict, BaseException):
                        decided[index] = (key, "failed", verdict)
                    else:
                        decided[index] = (key, "copy" if verdict else "skip", found[0])
        todo: list[tuple[str, int | None]] = []
        for key, how, entry in decided:
            if how == "copy":
                size = entry.size if entry is not None else None
                if on_plan is not None:
                    with lock:
                        on_plan(key, size)
                todo.append((key, size))
        copied = {} if dry_run else _copy_many(todo)
        for key, how, found in decided:
            if how == "skip":
                _count(key, "skipped")
            elif how == "failed":
                _count(key, "failed", error=error_message(found))
            elif dry_run:
                _count(key, "mirrored")
            elif isinstance(copied[key], BaseException):
                _count(key, "failed", error=error_message(copied[key]))
            else:
                size, server = copied[key]
                _count(key, "mirrored", size, server=server)

    seen: set[str] = set()

    def _listing() -> Iterator[Any]:
        # the source is listed with sizes whatever the mode: they choose a batch or a stream
        for entry in source.iterate_entries(**criteria, md5=mode == "checksum"):
            seen.add(entry.key)
            yield entry

    def _listed() -> Iterator[Any]:
        try:
            yield from _listing()
        except KEY_ERRORS as exc:
            if not seen:  # not there, or failed before a key: nothing to go on with
                raise
            # the keys listed so far are copied; nothing is deleted after an incomplete listing
            with lock:
                status.listing_errors.append(error_message(exc))

    if keys is not None:
        match = make_key_filter(**criteria)
        todo: Iterable[Any] = (key for key in keys if match(key))
    else:
        todo = _listed()
    try:
        run_each(_handle, chunked(todo, lambda item: None if isinstance(item, str) else item.size), workers)
    finally:
        if helpers is not None:
            helpers.shutdown(wait=False, cancel_futures=True)

    if delete and existing is not None:
        if status.failed or status.listing_errors:
            status.delete_skipped = True
        else:

            def _remove(key: str) -> None:
                if dry_run:
                    _count(key, "deleted")
                    return
                try:
                    with_retries(lambda: target.delete(key), retries)
                    _count(key, "deleted")
                except KEY_ERRORS as exc:
                    _count(key, "failed", error=error_message(exc))

            run_each(_remove, sorted(key for key in existing if key not in seen), workers)
    return status
