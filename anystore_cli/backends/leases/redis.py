"""Leases in Redis: `INCR` of a token counter, then `SET NX PX`.

Renewal is a Lua compare-and-set, release a Lua compare-and-delete; Redis itself drops an
expired lease (its PX), so the server's clock decides.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from anystore_cli.errors import StoreError
from anystore_cli.store.lease import Lease, LeaseBackend, new_lease

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
        lease = new_lease(name, _TOKEN_MARK, ttl)
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
