"""Copy every matching key from one store to another, streaming each value.

Keys the target already has are skipped unless `overwrite`. When the keys come from listing
the source, the target is listed once with the same criteria (one paginated listing on S3)
instead of asking it about each key. A copy that fails for a transient reason (the store
failed: a timeout, a dropped connection, a 5xx) is tried again; a key that still fails is
counted and the others go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from anystore_cli.backend.model import Model
from anystore_cli.core.exceptions import AnystoreError, MissingDependency, StoreError

RETRIES = 3
"""Attempts per key"""
RETRY_DELAY = 0.2
"""Seconds before the second attempt; doubles after each"""
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StoreError, OSError, ConnectionError, TimeoutError)
"""Failures worth another attempt (a missing key, a read-only target or bad data are not)"""


class MirrorStatus(Model):
    """What a mirror run did."""

    mirrored: int = 0
    """Keys copied (with `dry_run`: keys that would be copied)"""
    skipped: int = 0
    """Keys left alone because the target had them"""
    failed: int = 0
    """Keys that could not be copied"""
    bytes: int = 0
    """Bytes copied"""
    errors: list = []
    """`(key, message)` of the failed keys"""

    @property
    def total(self) -> int:
        """Keys seen"""
        return self.mirrored + self.skipped + self.failed


def is_transient(exc: BaseException) -> bool:
    """Tell whether a failed operation is worth another attempt."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, MissingDependency)


def with_retries(func: Callable[[], Any], retries: int = RETRIES, delay: float = RETRY_DELAY) -> Any:
    """Call `func`, again after a transient failure (up to `retries` attempts in all, backing off).

    Raises:
        The last error, or the first one that is not transient
    """
    for attempt in range(retries):
        try:
            return func()
        except BaseException as exc:
            if attempt == retries - 1 or not is_transient(exc):
                raise
            time.sleep(delay * 2**attempt)
    return None


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
    **kwargs: Any,
) -> MirrorStatus:
    """Copy every matching key from `source` to `target`, streaming each value.

    Keys the target already has are skipped unless `overwrite`. A key whose copy fails for
    a transient reason is retried; a key that still fails is counted and the rest go on.

    Example:
        ```python
        status = mirror("./data", "s3://bucket/data", glob="**/*.json", workers=8)
        print(status.mirrored, status.skipped, status.failed)
        ```

    Args:
        source: Store (or uri) to read from
        target: Store (or uri) to write to
        glob: Only keys matching this glob
        prefix: Only keys with this prefix
        exclude_prefix: Leave out keys with this prefix
        overwrite: Copy keys the target already has
        workers: Number of parallel copies
        dry_run: Only count what would be copied
        keys: Copy these keys instead of listing the source (the target is then asked about
            each key instead of being listed)
        on_progress: Called with `(key, outcome)` for every key, outcome one of
            "mirrored", "skipped", "failed"; calls come one at a time
        retries: Attempts per key

    Returns:
        The counts of mirrored, skipped and failed keys

    Raises:
        StoreError: If the source (or the target, when it is listed) cannot be listed
    """
    from anystore_cli.backend.base import copy_value
    from anystore_cli.backend.registry import get_store

    if not hasattr(source, "iterate_keys"):
        source = get_store(source)
    if not hasattr(target, "iterate_keys"):
        target = get_store(target)
    status = MirrorStatus()
    lock = threading.Lock()

    existing: set[str] | None = None
    if not overwrite and keys is None:
        existing = set(
            with_retries(
                lambda: list(target.iterate_keys(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob)), retries
            )
        )

    def _count(key: str, outcome: str, size: int = 0, error: str | None = None) -> None:
        with lock:
            setattr(status, outcome, getattr(status, outcome) + 1)
            status.bytes += size
            if error is not None:
                status.errors.append((key, error))
            if on_progress is not None:
                on_progress(key, outcome)

    def _exists(key: str) -> bool:
        if existing is not None:
            return key in existing
        return bool(with_retries(lambda: target.exists(key), retries))

    def _handle(key: str) -> None:
        try:
            if not overwrite and _exists(key):
                _count(key, "skipped")
                return
            if dry_run:
                _count(key, "mirrored")
                return
            size = with_retries(lambda: copy_value(source, key, target), retries)
            _count(key, "mirrored", size or 0)
        except (AnystoreError, OSError, ConnectionError, TimeoutError, ValueError) as exc:
            message = str(exc) if isinstance(exc, AnystoreError) else f"{type(exc).__name__}: {exc}"
            _count(key, "failed", error=message)

    todo = keys if keys is not None else source.iterate_keys(prefix=prefix, exclude_prefix=exclude_prefix, glob=glob)
    if workers <= 1:
        for key in todo:
            _handle(key)
    else:
        run_bounded(_handle, todo, workers)
    return status


def run_bounded(func: Callable[[Any], Any], items: Iterable[Any], workers: int) -> None:
    """Run `func` over `items` on `workers` threads, keeping at most 4 x workers queued.

    Items are taken from `items` only as slots free up, so a long listing streams through.

    Raises:
        The first exception `func` raised (no new items are started after it)
    """
    slots = threading.BoundedSemaphore(workers * 4)
    errors: list[BaseException] = []

    def _run(item: Any) -> None:
        try:
            func(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            errors.append(exc)
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anystore-mirror") as pool:
        for item in items:
            if errors:
                break
            slots.acquire()
            pool.submit(_run, item)
    if errors:
        raise errors[0]
