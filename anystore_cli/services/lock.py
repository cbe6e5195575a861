"""Locks: a named lease in a store, held across processes and machines while work runs.

The lease record and the atomic steps are the contract in `anystore_cli.store.lease`; each
backend that can make them atomic names its primitive (`capabilities.leases`):

- local folder: a `link()` of a complete file to `NAME/<token>`, which fails if it exists.
- SQL: an `INSERT` on the primary key, then `UPDATE ... WHERE name = ? AND token = ?`.
- Redis: `INCR` of a token counter, then `SET NX PX`; Lua compare-and-set and -delete.
- S3: `PutObject` with `If-None-Match: *` to create, with `If-Match: <etag>` for the rest.
- memory: a dict under a process lock (threads of one process only).

zip archives, http(s) and the other fsspec filesystems cannot do it atomically and refuse
(`LockUnsupported`, a `StoreError`). Where the expiry is a time written in the record (local,
SQL, S3) contenders compare it with their own clock: machines sharing a lock need clocks in
sync to well within the ttl. On Redis the server's clock decides (the key's PX).

The library face is `Lock(store, name, ttl=..., wait=...)`, a context manager that renews the
lease from a thread every ttl/3 while the block runs.
"""

from __future__ import annotations

import importlib
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from anystore_cli.errors import AlreadyExists, StoreError
from anystore_cli.store.lease import (
    LOCK_FOLDER,
    MAX_NAME_BYTES,
    Lease,
    LeaseBackend,
    LockUnsupported,
    cannot_lock,
    check_name,
    storage_name,
)
from anystore_cli.util.uri import mask_uri

__all__ = [
    "DEFAULT_TTL",
    "LOCK_FOLDER",
    "MAX_NAME_BYTES",
    "Lease",
    "LeaseBackend",
    "LeaseLost",
    "Lock",
    "LockHeld",
    "LockUnsupported",
    "check_name",
    "check_ttl",
    "lease_backend",
    "storage_name",
]

DEFAULT_TTL = 60.0
POLL_INTERVAL = 0.2
"""Seconds between attempts while waiting for a held lease (with some jitter)"""


class LockHeld(AlreadyExists):
    """The lease is held by someone else (and was not released within the wait)."""

    def __init__(self, message: str, holder: Lease | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(StoreError):
    """The lease was taken over, released by force, or could not be renewed within its ttl."""


def check_ttl(ttl: float, wait: float = 0.0) -> tuple[float, float]:
    """A ttl is a positive, finite number of seconds; a wait is not negative (inf: forever).

    Raises:
        ValueError: For `nan`, `inf` or a ttl not above 0 (`nan` compares false with every
            expiry: two holders would run at once), or a `nan` or negative wait
    """
    ttl, wait = float(ttl), float(wait)
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, not `{ttl}`")
    if math.isnan(wait) or wait < 0:
        raise ValueError(f"wait must be 0 or more seconds, not `{wait}`")
    return ttl, wait


def lease_backend(store: Any, across_processes: bool = False) -> LeaseBackend:
    """The lease primitives for `store`: the class its backend names in `capabilities.leases`.

    Args:
        store: A store from `get_store`
        across_processes: Refuse backends that hold leases within one process only (memory)

    Raises:
        LockUnsupported: The backend cannot hold a lease atomically
    """
    from anystore_cli.store.base import as_backend

    store = as_backend(store)
    label = mask_uri(store.uri)
    if getattr(store, "readonly", False):
        raise LockUnsupported(f"Store `{label}`: a lock needs a writable store (the store is readonly)")
    target = store.capabilities.leases
    if not target:
        raise cannot_lock(store)
    module_name, class_name = target.split(":")
    primitive: type[LeaseBackend] = getattr(importlib.import_module(module_name), class_name)
    if across_processes and primitive.within_process:
        raise LockUnsupported(
            f"Store `{label}`: `{store.scheme}://` lives inside one process, "
            "a lock there guards nothing across processes"
        )
    return primitive(store)


# ---- the library face ----------------------------------------------------------------------


class Lock:
    """A lease on `name` in `store`, held while a `with` block runs.

    Example:
        ```python
        from anystore_cli.services.lock import Lock

        with Lock(store, "nightly-backup", ttl=60, wait=300) as lock:
            run_backup(fencing_token=lock.token)
        ```

    Args:
        store: A store from `get_store` (local folder, SQL, Redis, S3; memory within one process)
        name: The lock's name
        ttl: Seconds the lease lasts without renewal; renewed every ttl/3 while held
        wait: Seconds to wait for a held lease before giving up (0: one attempt)
        on_lost: Called (from the renewal thread) with a message when the lease is lost
        across_processes: Refuse stores that cannot lock across processes (memory)

    Raises:
        LockHeld: (on enter) not acquired within `wait`; `.holder` is the holder's record
        LockUnsupported: the backend cannot hold a lock atomically
    """

    def __init__(
        self,
        store: Any,
        name: str,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        on_lost: Callable[[str], None] | None = None,
        across_processes: bool = False,
    ) -> None:
        self.name = check_name(name)
        self.ttl, self.wait = check_ttl(ttl, wait)
        self.on_lost = on_lost
        self.backend = lease_backend(store, across_processes=across_processes)
        self.lease: Lease | None = None
        self._version: Any = None
        self._state = threading.Lock()
        self._stop = threading.Event()
        self.lost = threading.Event()
        """Set when the lease was lost while held"""
        self.lost_reason = ""
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> int | None:
        """The fencing token of the lease held (None when not held)."""
        return None if self.lease is None else self.lease.token

    def acquire(self) -> Lease:
        """Take the lease, waiting up to `wait` seconds; start renewing it.

        Raises:
            LockHeld: Not acquired in time
        """
        deadline = time.monotonic() + self.wait
        holder: Lease | None = None
        races = 0
        while True:
            lease, version, current = self.backend.try_acquire(self.name, self.ttl)
            if lease is not None:
                self.lease, self._version = lease, version
                self.lost.clear()
                self._start_heartbeat()
                return lease
            if current is None:  # lost a race: look again at once
                races += 1
                if races > 100 and time.monotonic() > deadline:
                    raise StoreError(f"Lock `{self.name}` in store `{self.backend.label}`: too much contention")
                time.sleep(random.uniform(0, 0.01))
                continue
            holder = current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, POLL_INTERVAL * random.uniform(0.5, 1.5)))
        raise LockHeld(
            f"Lock `{self.name}` in store `{self.backend.label}` is held by {holder.describe()} (token {holder.token})",
            holder,
        )

    def renew(self) -> bool:
        """Renew once now; False when the lease is no longer ours."""
        with self._state:
            if self.lease is None:
                return False
            result = self.backend.renew(self.lease, self._version)
            if result is None:
                return False
            self.lease, self._version = result
            return True

    def check(self) -> None:
        """Raise `LeaseLost` if the lease was lost."""
        if self.lost.is_set():
            raise LeaseLost(self.lost_reason)

    def release(self) -> bool:
        """Stop renewing and give the lease up; False if it was not ours any more."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        with self._state:
            lease, self.lease = self.lease, None
            if lease is None or self.lost.is_set():
                return False
            return self.backend.release(lease, self._version)

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name=f"anystore-lock-{self.name}", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            lease = self.lease
            if lease is None:
                return
            try:
                if self.renew():
                    interval = self.ttl / 3
                    continue
                reason = f"Lock `{self.name}` in store `{self.backend.label}`: lease lost (taken over or released)"
            except Exception as exc:  # noqa: BLE001 - a failing store: retry until the lease expires
                if time.time() < lease.expires:
                    interval = max(0.05, min(self.ttl / 10, lease.expires - time.time()))
                    continue
                detail = " ".join(str(exc).split())
                reason = (
                    f"Lock `{self.name}` in store `{self.backend.label}`: lease lost, "
                    f"renewal failed past the ttl ({detail})"
                )
            self.lost_reason = reason
            self.lost.set()
            if self.on_lost is not None:
                self.on_lost(reason)
            return

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
