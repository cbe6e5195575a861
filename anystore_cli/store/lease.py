"""The lease contract: one record per lock name and the atomic steps a backend provides.

A lease is one small JSON record per name: who holds it (host, pid), since when, until when
(`expires`, renewed by the holder while it works) and a fencing token that grows with every
acquisition, so a holder that stalled past its ttl and was taken over can be told apart from
the new one by anything it writes to. A backend that can make the steps atomic names its
`LeaseBackend` subclass in its `capabilities.leases` (`module:Class`, as the
registry names backends); the implementations live in `anystore_cli.backends.leases`.
Where the expiry is a time written in the record (local, SQL, S3) contenders compare it with
their own clock: machines sharing a lock need clocks in sync to well within the ttl.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import quote

from anystore_cli.errors import InvalidKey, StoreError
from anystore_cli.util.uri import mask_uri

LOCK_FOLDER = ".~anystore-locks"
"""Where file-like stores keep leases (hidden from listings on local folders, as temporary files are)"""


class LockUnsupported(StoreError):
    """The backend has no atomic primitive to hold a lease with (zip, http, ...)."""


def cannot_lock(store: Any) -> LockUnsupported:
    """The error for a store whose backend cannot hold a lease, naming it by its uri (a zip
    archive, else its scheme) and saying which stores can."""
    from anystore_cli.store.registry import backend_name

    what = "zip archives" if backend_name(store.uri) == "zip" else f"`{store.scheme}` stores"
    label = mask_uri(store.uri)
    return LockUnsupported(
        f"Store `{label}`: {what} cannot hold a lock atomically (use a local folder, SQL, Redis or S3 store)"
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Lease:
    """One lease record, as stored."""

    name: str
    token: int
    host: str
    pid: int
    since: float
    expires: float
    ttl: float
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    released: bool = False

    def live(self, now: float | None = None) -> bool:
        """Held: not released and not expired."""
        return not self.released and self.expires > (time.time() if now is None else now)

    def dump(self) -> bytes:
        """The stored form: compact JSON."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def load(cls, data: bytes | str) -> Lease:
        """Parse a stored record (unknown fields ignored)."""
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def describe(self) -> str:
        """`host H pid P since T`: who holds it, for error lines."""
        return f"host {self.host} pid {self.pid} since {_iso(self.since)}"

    def record(self, now: float | None = None) -> dict[str, Any]:
        """A JSON-ready description with the state (`held`, `expired`, `released`) and ISO times."""
        now = time.time() if now is None else now
        state = "released" if self.released else ("held" if self.expires > now else "expired")
        data = asdict(self)
        data.update(state=state, since_iso=_iso(self.since), expires_iso=_iso(self.expires) if self.expires else None)
        return data


def new_lease(name: str, token: int, ttl: float) -> Lease:
    """A record for a new holder of `name`: this host and process, from now until now + ttl."""
    now = time.time()
    return Lease(
        name=name, token=token, host=socket.gethostname(), pid=os.getpid(), since=now, expires=now + ttl, ttl=ttl
    )


MAX_NAME_BYTES = 4096
"""The longest lock name, in UTF-8 bytes (a key may be as long; long names are stored hashed)"""


def check_name(name: str) -> str:
    """A lock name follows the rules of a key: not empty, no NUL, no `.` or `..` segment that
    would point the lease elsewhere (`..` is the store's root); at most 4096 bytes.

    Raises:
        InvalidKey: The name is refused
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidKey(f"Invalid lock name `{name!r}`: empty")
    if "\x00" in name:
        raise InvalidKey(f"Invalid lock name `{name!r}`: NUL byte")
    if any(segment in (".", "..") for segment in name.split("/")):
        raise InvalidKey(f"Invalid lock name `{name}`: `.` and `..` segments are refused, as in keys")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise InvalidKey(f"Invalid lock name `{name[:40]}...`: longer than {MAX_NAME_BYTES} bytes")
    return name


def storage_name(name: str, limit: int = 200) -> str:
    """How a name is stored where names have a length limit or are path segments: percent-
    encoded, dots too when it starts with one (never `.` or `..`), and past `limit`
    characters cut and completed by a hash of the whole name."""
    encoded = quote(name, safe="")
    if encoded.startswith("."):
        encoded = encoded.replace(".", "%2E")
    if len(encoded) > limit:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
        encoded = f"{encoded[: limit - 66]}~{digest}"
    return encoded


class LeaseBackend:
    """The atomic steps on one store; subclasses implement `read`, `create` and `replace`.

    A version is what `replace` compares against: the token (local, SQL), the etag (S3), the
    stored bytes (Redis, memory).
    """

    within_process: ClassVar[bool] = False
    """True where a lease guards only the threads of one process (memory)"""

    def __init__(self, store: Any) -> None:
        self.store = store

    @property
    def label(self) -> str:
        """The store, password masked, for messages."""
        return mask_uri(self.store.uri)

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """The current record and its version, or (None, None)."""
        raise NotImplementedError

    def create(self, name: str, lease: Lease) -> Any:
        """Store `lease` if there is no record yet: its version, or None when one exists."""
        raise NotImplementedError

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """Store `lease` if the record is still at `version`: the new version, or None."""
        raise NotImplementedError

    # the steps built on the three above (Redis overrides them)

    def try_acquire(self, name: str, ttl: float) -> tuple[Lease | None, Any, Lease | None]:
        """One attempt: `(lease, version, None)` when taken, `(None, None, holder)` when held
        (holder None: lost a race, try again at once)."""
        current, version = self.read(name)
        if current is None:
            lease = new_lease(name, 1, ttl)
            new_version = self.create(name, lease)
        elif current.live():
            return None, None, current
        else:
            lease = new_lease(name, current.token + 1, ttl)
            new_version = self.replace(name, lease, version)
        if new_version is None:
            return None, None, None
        return lease, new_version, None

    def renew(self, lease: Lease, version: Any) -> tuple[Lease, Any] | None:
        """Push the expiry to now + ttl; None when the lease is no longer ours."""
        renewed = replace(lease, expires=time.time() + lease.ttl)
        new_version = self._replace_own(renewed, version)
        return None if new_version is None else (renewed, new_version)

    def release(self, lease: Lease, version: Any) -> bool:
        """Give the lease up (the token stays, so the next holder's is larger)."""
        released = replace(lease, expires=0.0, released=True)
        return self._replace_own(released, version) is not None

    def _replace_own(self, lease: Lease, version: Any) -> Any:
        """`replace`, and once more with the version read back when the record still is this
        acquisition's (a write whose reply was lost changed the version, not the holder)."""
        new_version = self.replace(lease.name, lease, version)
        if new_version is not None:
            return new_version
        current, current_version = self.read(lease.name)
        if current is None or current.id != lease.id or current.released or current_version == version:
            return None
        return self.replace(lease.name, lease, current_version)

    def status(self, name: str) -> Lease | None:
        """The current record (held, expired or released), or None."""
        return self.read(name)[0]

    def force_release(self, name: str) -> Lease | None:
        """Release whatever holds `name` (for operators): the token grows, so the holder sees
        at its next renewal that it lost the lease. Returns the record that was released."""
        for _ in range(20):
            current, version = self.read(name)
            if current is None or current.released:
                return None
            released = replace(new_lease(name, current.token + 1, 0.0), since=current.since, expires=0.0, released=True)
            if self.replace(name, released, version) is not None:
                return current
        raise StoreError(f"Lock `{name}` in store `{self.label}`: could not release it (too much contention)")
