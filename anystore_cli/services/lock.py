"""Leases: a named lock in a store that holds across processes and machines.

A lease is one small JSON record per name: who holds it (host, pid), since when, until when
(`expires`, renewed by the holder while it works) and a fencing token that grows with every
acquisition, so a holder that stalled past its ttl and was taken over can be told apart from
the new one by anything it writes to. Each backend makes the steps atomic with its own
primitive:

- local folder: create is a `link()` of a complete file to `NAME/<token>`, which fails if it
  exists; a take-over links `<token+1>`, so one contender wins; a renewal rewrites `<token>`
  and then checks that no higher token appeared.
- SQL: an `INSERT` on the primary key; take-over, renewal and release are an
  `UPDATE ... WHERE name = ? AND token = ?` that changes one row or none.
- Redis: `INCR` of a token counter, then `SET NX PX`; renewal is a Lua compare-and-set, release
  a Lua compare-and-delete; Redis itself drops an expired lease (its PX).
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

import contextlib
import hashlib
import json
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from anystore_cli.errors import AlreadyExists, DoesNotExist, InvalidKey, StoreError
from anystore_cli.util.uri import mask_uri

LOCK_FOLDER = ".~anystore-locks"
"""Where file-like stores keep leases (hidden from listings on local folders, as temporary files are)"""
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


class LockUnsupported(StoreError):
    """The backend has no atomic primitive to hold a lease with (zip, http, ...)."""


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


def _holder(name: str, token: int, ttl: float) -> Lease:
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


def _row_name(name: str) -> str:
    """The primary key of a name in the SQL table (VARCHAR(255)): the name itself when short."""
    if len(name) <= 200:
        return name
    return f"{name[:120]}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()}"


# ---- backend primitives --------------------------------------------------------------------


class LeaseBackend:
    """The atomic steps on one store; subclasses implement `read`, `create` and `replace`.

    A version is what `replace` compares against: the token (local, SQL), the etag (S3), the
    stored bytes (Redis, memory).
    """

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
            lease = _holder(name, 1, ttl)
            new_version = self.create(name, lease)
        elif current.live():
            return None, None, current
        else:
            lease = _holder(name, current.token + 1, ttl)
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
            released = replace(_holder(name, current.token + 1, 0.0), since=current.since, expires=0.0, released=True)
            if self.replace(name, released, version) is not None:
                return current
        raise StoreError(f"Lock `{name}` in store `{self.label}`: could not release it (too much contention)")


class LocalLeases(LeaseBackend):
    """Local folders: `NAME/<token>` files, created with `link()` so exactly one contender
    creates each token; the highest token is the lease."""

    def _folder(self, name: str) -> str:
        return os.path.join(self.store.root, LOCK_FOLDER, storage_name(check_name(name)))

    def _tokens(self, folder: str) -> list[int]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if len(n) == 20 and n.isascii() and n.isdigit())

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """The record of the highest token file."""
        folder = self._folder(name)
        for _ in range(20):
            tokens = self._tokens(folder)
            if not tokens:
                return None, None
            try:
                with open(os.path.join(folder, f"{tokens[-1]:020d}"), "rb") as handle:
                    return Lease.load(handle.read()), tokens[-1]
            except FileNotFoundError:  # cleaned up by a newer holder: read again
                continue
        raise StoreError(f"Lock `{name}` in store `{self.label}`: the lease folder keeps changing")

    def _write_temp(self, folder: str, lease: Lease) -> str:
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        with open(tmp, "wb") as handle:
            handle.write(lease.dump())
        return tmp

    def _newer_exists(self, folder: str, token: int) -> bool:
        tokens = self._tokens(folder)
        return bool(tokens) and tokens[-1] > token

    def _link(self, name: str, lease: Lease) -> Any:
        folder = self._folder(name)
        tmp = self._write_temp(folder, lease)
        try:
            os.link(tmp, os.path.join(folder, f"{lease.token:020d}"))
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        # a contender that read an old state may create a token that a newer holder already
        # cleaned up: it finds the newer one here and backs off
        if self._newer_exists(folder, lease.token):
            return None
        for token in self._tokens(folder):
            if token < lease.token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, f"{token:020d}"))
        return lease.token

    def create(self, name: str, lease: Lease) -> Any:
        """Link token 1 (or whatever token `lease` has) into place."""
        return self._link(name, lease)

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """A new token: link it (one winner). The same token (renew, release): rewrite it, and
        fail if a newer token appeared meanwhile."""
        if lease.token != version:
            return self._link(name, lease)
        folder = self._folder(name)
        if self._newer_exists(folder, version):
            return None
        tmp = self._write_temp(folder, lease)
        os.replace(tmp, os.path.join(folder, f"{lease.token:020d}"))
        if self._newer_exists(folder, version):
            return None
        return version


class SqlLeases(LeaseBackend):
    """SQL: a table `<store table>_locks` (name primary key, token, value); create is an
    INSERT, everything else an UPDATE on name and token."""

    _tables: dict[tuple[str, str], Any] = {}

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.engine = store.engine
        self.table = self._table()

    def _table(self) -> Any:
        import sqlalchemy as sa
        from sqlalchemy.exc import DBAPIError

        name = f"{self.store.table_name}_locks"
        cache_key = (self.store.uri, name)
        table = self._tables.get(cache_key)
        if table is not None:
            return table
        table = sa.Table(
            name,
            sa.MetaData(),
            # exact names everywhere: MariaDB's default collation would make `Job` and `job` one lock
            sa.Column("name", _name_type(self.engine), primary_key=True),
            sa.Column("token", sa.BigInteger, nullable=False),
            sa.Column("value", sa.Text, nullable=False),
        )
        with self.store._errors():
            if not sa.inspect(self.engine).has_table(name):
                try:
                    with self.engine.begin() as conn:
                        table.create(conn, checkfirst=True)
                except DBAPIError:
                    if not sa.inspect(self.engine).has_table(name):  # not a concurrent create
                        raise
        self._tables[cache_key] = table
        return table

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """SELECT the row."""
        import sqlalchemy as sa

        with self.store._errors(), self.engine.connect() as conn:
            query = sa.select(self.table.c.token, self.table.c.value).where(self.table.c.name == _row_name(name))
            row = conn.execute(query).first()
        if row is None:
            return None, None
        return Lease.load(row.value), row.token

    def create(self, name: str, lease: Lease) -> Any:
        """INSERT; a duplicate key means someone else was first."""
        from sqlalchemy.exc import IntegrityError

        try:
            with self.store._errors(), self.engine.begin() as conn:
                row = {"name": _row_name(name), "token": lease.token, "value": lease.dump().decode()}
                conn.execute(self.table.insert().values(**row))
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None
            raise
        return lease.token

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """UPDATE ... WHERE name = :name AND token = :version."""
        table = self.table
        with self.store._errors(), self.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.name == _row_name(name), table.c.token == version)
                .values(token=lease.token, value=lease.dump().decode())
            )
        return lease.token if result.rowcount == 1 else None


def _name_type(engine: Any) -> Any:
    """VARCHAR(255); on MySQL/MariaDB with the store table's binary, no-pad collation."""
    import sqlalchemy as sa

    if engine.dialect.name not in ("mysql", "mariadb"):
        return sa.String(255)
    from sqlalchemy.dialects import mysql

    from anystore_cli.backends.sql import _mysql_collation

    with engine.connect():  # learn the server version first
        pass
    return mysql.VARCHAR(255, charset="utf8mb4", collation=_mysql_collation(engine))


_REDIS_RENEW = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['id'] == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_REDIS_RELEASE = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_REDIS_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current then
  return {0, current}
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. token .. ARGV[2], 'PX', ARGV[3])
return {token, ''}
"""
_TOKEN_MARK = 987654321987654321
"""A token that stands in the record until the script puts the real one there"""


class RedisLeases(LeaseBackend):
    """Redis: the lease at `{prefix}\\x00lock\\x00{name}` with a PX expiry, its token from
    `INCR {prefix}\\x00lockseq\\x00{name}` (kept, so tokens grow across expiries). The version
    compared by the scripts is the acquisition's id (a renewal whose reply was lost is no loss)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.client = store._client
        base = store.redis_prefix.encode("utf-8", "surrogateescape")
        self._lease_base = base + b"\x00lock\x00"
        self._seq_base = base + b"\x00lockseq\x00"

    def _keys(self, name: str) -> tuple[bytes, bytes]:
        encoded = name.encode("utf-8", "surrogateescape")
        return self._lease_base + encoded, self._seq_base + encoded

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """GET the lease (an expired one is gone)."""
        with self.store._errors():
            data = self.client.get(self._keys(name)[0])
        if data is None:
            return None, None
        lease = Lease.load(data)
        return lease, lease.id

    def try_acquire(self, name: str, ttl: float) -> tuple[Lease | None, Any, Lease | None]:
        """One script: when the lease is free, INCR the token and SET the lease with PX (a
        contender polling a held lease takes no token: they grow by one per acquisition)."""
        lease_key, seq_key = self._keys(name)
        lease = _holder(name, _TOKEN_MARK, ttl)
        head, _, tail = lease.dump().partition(b'"token":%d' % _TOKEN_MARK)
        with self.store._errors():
            token, current = self.client.eval(
                _REDIS_ACQUIRE, 2, lease_key, seq_key, head + b'"token":', tail, max(1, int(ttl * 1000))
            )
        if int(token):
            return replace(lease, token=int(token)), lease.id, None
        return None, None, Lease.load(current)

    def renew(self, lease: Lease, version: Any) -> tuple[Lease, Any] | None:
        """Compare-and-set with a fresh PX."""
        renewed = replace(lease, expires=time.time() + lease.ttl)
        data = renewed.dump()
        with self.store._errors():
            done = self.client.eval(
                _REDIS_RENEW, 1, self._keys(lease.name)[0], version, data, max(1, int(lease.ttl * 1000))
            )
        return (renewed, version) if done else None

    def release(self, lease: Lease, version: Any) -> bool:
        """Compare-and-delete."""
        with self.store._errors():
            return bool(self.client.eval(_REDIS_RELEASE, 1, self._keys(lease.name)[0], version))

    def force_release(self, name: str) -> Lease | None:
        """Delete the lease (its holder's compare-and-set fails from then on)."""
        for _ in range(20):
            current, version = self.read(name)
            if current is None:
                return None
            with self.store._errors():
                if self.client.eval(_REDIS_RELEASE, 1, self._keys(name)[0], version):
                    return current
        raise StoreError(f"Lock `{name}` in store `{self.label}`: could not release it (too much contention)")


class S3Leases(LeaseBackend):
    """S3: one object `.~anystore-locks/NAME` written with conditional PutObject requests."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.fs = store._fs

    def _location(self, name: str) -> tuple[str, str]:
        return self.store._bucket_key(f"{LOCK_FOLDER}/{storage_name(check_name(name))}")

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            with self.store._errors():
                return self.fs.call_s3(method, **kwargs)
        except StoreError as exc:
            if _precondition_failed(exc):
                return None
            raise

    def read(self, name: str) -> tuple[Lease | None, Any]:
        """GetObject: the record and its ETag."""
        from fsspec.asyn import sync

        bucket, key = self._location(name)
        fs = self.fs

        async def _get() -> tuple[bytes, str]:
            response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                return await stream.read(), response["ETag"]

        try:
            with self.store._errors():
                body, etag = sync(fs.loop, _get)
        except (DoesNotExist, FileNotFoundError):
            return None, None
        return Lease.load(body), etag

    def create(self, name: str, lease: Lease) -> Any:
        """PutObject with If-None-Match: *."""
        bucket, key = self._location(name)
        response = self._call("put_object", Bucket=bucket, Key=key, Body=lease.dump(), IfNoneMatch="*")
        return None if response is None else response["ETag"]

    def replace(self, name: str, lease: Lease, version: Any) -> Any:
        """PutObject with If-Match: the etag read."""
        bucket, key = self._location(name)
        response = self._call("put_object", Bucket=bucket, Key=key, Body=lease.dump(), IfMatch=version)
        return None if response is None else response["ETag"]


def _precondition_failed(exc: BaseException) -> bool:
    """An S3 error that means the condition did not hold (412, or 409 for a concurrent write)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen)
        if "PreconditionFailed" in text or "ConditionalRequestConflict" in text or "412" in text:
            return True
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return True
        seen = seen.__cause__ or seen.__context__
    return False


_MEMORY: dict[tuple[str, str], bytes] = {}
_MEMORY_LOCK = threading.Lock()


class MemoryLeases(LeaseBackend):
    """memory:// stores: a dict under a process-wide lock (threads of one process only)."""

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


def lease_backend(store: Any, across_processes: bool = False) -> LeaseBackend:
    """The lease primitives for `store`, chosen by its backend class.

    Args:
        store: A store from `get_store`
        across_processes: Refuse backends that hold leases within one process only (memory)

    Raises:
        LockUnsupported: The backend cannot hold a lease atomically
    """
    from anystore_cli.store.base import as_backend

    store = as_backend(store)
    kind = type(store).__name__
    label = mask_uri(store.uri)
    if getattr(store, "readonly", False):
        raise LockUnsupported(f"Store `{label}`: a lock needs a writable store (the store is readonly)")
    if kind == "LocalStore":
        return LocalLeases(store)
    if kind == "SqlStore":
        return SqlLeases(store)
    if kind == "RedisStore":
        return RedisLeases(store)
    if kind == "MemoryStore":
        if across_processes:
            raise LockUnsupported(
                f"Store `{label}`: memory:// lives inside one process, a lock there guards nothing across processes"
            )
        return MemoryLeases(store)
    if kind == "Store" and getattr(store, "scheme", None) in ("s3", "s3a"):
        return S3Leases(store)
    what = "zip archives" if kind == "ZipStore" else f"`{getattr(store, 'scheme', kind)}` stores"
    raise LockUnsupported(
        f"Store `{label}`: {what} cannot hold a lock atomically (use a local folder, SQL, Redis or S3 store)"
    )


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
