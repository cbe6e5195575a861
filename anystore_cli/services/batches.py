"""Work in batches: values read and written together, streamed alone when large, on a bounded pool.

A worker takes whole batches (at most `BATCH_KEYS` keys and about `BATCH_BYTES`), so no two
workers wait on one round trip; a value over `STREAM_OVER` bytes, or of unknown size, is
streamed on its own and never held whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from anystore_cli.services.retry import KEY_ERRORS, with_retries

BATCH_KEYS = 1000
"""Keys read and written together (one `get_many` and one `put_many`)"""
BATCH_BYTES = 8 * 1024 * 1024
"""Bytes of values a batch holds at most (a worker holds one batch)"""
STREAM_OVER = 1024 * 1024
"""A value larger than this, or of unknown size, is streamed on its own instead of batched"""


def is_plain(store: Any) -> bool:
    """The store moves values as they are stored: no serialization function or model of its
    own that `get_many` / `put_many` would apply (then values go one by one, as bytes)."""
    return (
        getattr(store, "serialization_func", None) is None
        and getattr(store, "deserialization_func", None) is None
        and getattr(store, "model", None) is None
    )


def fits_batch(size: int | None) -> bool:
    """A value of `size` bytes goes in a batch (a known size, not over `STREAM_OVER`)."""
    return size is not None and size <= STREAM_OVER


def batched(store: Any, size: int | None) -> bool:
    """A value of `size` bytes is read in a batch from `store`."""
    return fits_batch(size) and is_plain(store)


def read_many(store: Any, keys: list[str], retries: int) -> dict[str, bytes]:
    """The values of `keys` in one batched read (missing keys left out); {} when the batch
    failed (each key is then read on its own, which tells its own error)."""
    if not keys:
        return {}
    try:
        found = with_retries(lambda: list(store.get_many(keys, serialization_mode="raw")), retries)
    except KEY_ERRORS:
        return {}
    return {key: value for key, value in found if isinstance(value, bytes)}


def chunked(items: Iterable[Any], size_of: Callable[[Any], int | None] = lambda item: None) -> Iterator[list[Any]]:
    """`items` in lists of at most `BATCH_KEYS` items and about `BATCH_BYTES` of known sizes; an
    item over `STREAM_OVER` bytes or of unknown size alone (it is streamed: on a worker of its own,
    as many at once as there are workers)."""
    batch: list[Any] = []
    held = 0
    for item in items:
        size = size_of(item)
        if not fits_batch(size):
            yield [item]
            continue
        batch.append(item)
        held += size
        if len(batch) >= BATCH_KEYS or held >= BATCH_BYTES:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def run_each(func: Callable[[Any], Any], items: Iterable[Any], workers: int) -> None:
    """Run `func` over `items`: in this thread for one worker, else on a bounded pool."""
    if workers <= 1:
        for item in items:
            func(item)
    else:
        run_bounded(func, items, workers)


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

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anystore-mirror")
    try:
        for item in items:
            if errors:
                break
            slots.acquire()
            pool.submit(_run, item)
        pool.shutdown(wait=True)
    except BaseException:
        # interrupted (Ctrl-C) or the listing failed: the queued items are never started, and
        # the caller hears of it at once (the items under way finish on their threads)
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    if errors:
        raise errors[0]
