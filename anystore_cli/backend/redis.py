"""Redis backend (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS).

Layout of a store in Redis (prefix from `backend_config` `redis_prefix`, default `anystore`):

- the value of `key` is a plain string at `{prefix}/{key}`, so `redis-cli GET anystore/foo`
  shows it and the original anystore's layout is kept;
- its timestamps live in a small hash at `{prefix}\\x00{key}` (fields `c` created, `u` updated,
  epoch seconds), written in the same pipeline and given the same ttl. A key never holds a NUL
  byte, so no value key of any store can be a timestamp hash, and `SCAN MATCH {prefix}/*`
  never sees them; the internal names of a store nested under this one (`{prefix}/sub\\x00{key}`)
  do match, and are skipped by their NUL byte;
- a value streamed in by `put_stream` is assembled at `{prefix}\\x00\\x00{random}` and renamed
  into place, so readers see the old value or the new one, never a part.

Every read is one round trip (GET, GETDEL, MGET, or one pipeline); `info` uses STRLEN and never
reads the value. `iterate_keys` SCANs with a MATCH pattern made from the literal start of the
prefix or glob (glob characters escaped) and filters exactly with `core.keys`. Connection and
socket timeouts default to 3 seconds (`backend_config` `socket_connect_timeout` and
`socket_timeout` change them), so an unreachable server fails fast as `StoreError`.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import IO, Any, ClassVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from anystore_cli.backend.base import BaseStore, KeyEntry, VirtualIOMixin
from anystore_cli.backend.model import BaseStats
from anystore_cli.core.exceptions import AlreadyExists, InvalidUri
from anystore_cli.core.io import CHUNK_SIZE
from anystore_cli.core.keys import listing_prefix, make_key_filter
from anystore_cli.core.uri import mask_uri

DEFAULT_PREFIX = "anystore"
DEFAULT_TIMEOUT = 3.0
SCAN_COUNT = 5000
"""Keys Redis examines per SCAN call: fewer round trips, each still about a millisecond"""
ENTRY_BATCH = 1000
"""Keys whose size and time one pipeline asks for (`iterate_entries`)"""
UPLOAD_TTL = 24 * 3600
"""Seconds an interrupted `put_stream` upload may linger before Redis drops it"""
_GLOB_SPECIAL = "\\*?[]"


def escape_match(text: str) -> str:
    """Escape Redis MATCH glob characters (`*`, `?`, `[`, `]`, `\\`) so `text` matches literally."""
    return "".join(f"\\{char}" if char in _GLOB_SPECIAL else char for char in text)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _timestamp(value: bytes | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


_CLIENTS: dict[tuple[str, float, float], redis.Redis] = {}


def get_client(uri: str, connect_timeout: float = DEFAULT_TIMEOUT, timeout: float = DEFAULT_TIMEOUT) -> redis.Redis:
    """Return a (per process cached) Redis client for `uri` that fails fast when unreachable.

    Args:
        uri: A `redis://` or `rediss://` url
        connect_timeout: Seconds to wait for the TCP (and TLS) connection
        timeout: Seconds to wait for any one reply

    Returns:
        A client with its own connection pool; commands retry no further
    """
    cache_key = (uri, connect_timeout, timeout)
    client = _CLIENTS.get(cache_key)
    if client is None:
        client = redis.Redis.from_url(
            uri,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        _CLIENTS[cache_key] = client
    return client


_BULK_WRITE_LUA = """
local now = ARGV[1]
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS, 2 do
  local value = ARGV[2 + (i + 1) / 2]
  if ttl > 0 then
    redis.call('SET', KEYS[i], value, 'EX', ttl)
  else
    redis.call('SET', KEYS[i], value)
  end
  redis.call('HSETNX', KEYS[i + 1], 'c', now)
  redis.call('HSET', KEYS[i + 1], 'u', now)
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[i + 1], ttl)
  else
    redis.call('PERSIST', KEYS[i + 1])
  end
end
return #KEYS / 2
"""
"""Write a batch: KEYS are value/meta key pairs, ARGV is now, ttl (0 for none), then the values."""


_INFO_LUA = """
local out = {}
for i = 1, #KEYS, 2 do
  local size = redis.call('STRLEN', KEYS[i])
  if size == 0 and redis.call('EXISTS', KEYS[i]) == 0 then
    out[#out + 1] = false
  else
    local stamps = redis.call('HMGET', KEYS[i + 1], 'c', 'u')
    out[#out + 1] = {size, stamps[1], stamps[2]}
  end
end
return out
"""
"""The metadata of a batch: KEYS are value/meta key pairs; a nil reply for a missing key, else
`{size, created, updated}`."""


class RedisStore(VirtualIOMixin, BaseStore):
    """A store in a Redis database, with ttl support."""

    supports_ttl: ClassVar[bool] = True
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (redis.RedisError, OSError)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        config = self.backend_config or {}
        # an empty prefix (`-b redis_prefix=`) is a store over the whole database: value `key` at
        # `key`, timestamps at `\x00key` (a NUL-led name no key can have)
        prefix = config.get("redis_prefix")
        prefix = DEFAULT_PREFIX if prefix is None else str(prefix)
        if "\x00" in prefix:
            raise InvalidUri(f"Store `{mask_uri(self.uri)}`: `redis_prefix` may not hold a NUL byte")
        self.redis_prefix = prefix
        database = urlsplit(self.uri).path.strip("/")
        if database and not database.isdigit():
            raise InvalidUri(f"Invalid redis uri `{mask_uri(self.uri)}`: the path is a database number: `{database}`")
        self._value_base = _encode(prefix + "/") if prefix else b""
        self._meta_base = _encode(prefix + "\x00")
        self._bulk_script: Any = None
        self._copy_refused = False
        self._info_script: Any = None
        try:
            self._client = get_client(
                self.uri,
                float(config.get("socket_connect_timeout") or DEFAULT_TIMEOUT),
                float(config.get("socket_timeout") or DEFAULT_TIMEOUT),
            )
        except ValueError as exc:
            raise InvalidUri(f"Invalid redis uri `{mask_uri(self.uri)}`: {mask_uri(exc)}") from exc

    # ---- layout ---------------------------------------------------------------------------

    def _get_key_prefix(self) -> str:
        return self.redis_prefix

    def _vkey(self, key: str) -> bytes:
        return self._value_base + _encode(key)

    def _mkey(self, key: str) -> bytes:
        return self._meta_base + _encode(key)

    def _stamp(self, pipe: Any, key: str, ttl: int | None, now: float) -> None:
        """Queue the timestamp updates of a write onto `pipe`."""
        meta = self._mkey(key)
        pipe.hsetnx(meta, "c", now)
        pipe.hset(meta, "u", now)
        if ttl:
            pipe.expire(meta, ttl)
        else:
            pipe.persist(meta)

    # ---- primitives -----------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        value = self._client.get(self._vkey(key))
        if value is None:
            if raise_on_nonexist:
                raise self._missing(key)
            return None
        if "b" not in kwargs.get("mode", "rb"):
            return value.decode()
        return value

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        now = time.time()
        if no_clobber:
            if not self._client.set(self._vkey(key), value, ex=ttl or None, nx=True):
                raise AlreadyExists(self._describe(key, "already exists"))
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self._mkey(key))
            self._stamp(pipe, key, ttl, now)
            pipe.execute()
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._vkey(key), value, ex=ttl or None)
        self._stamp(pipe, key, ttl, now)
        pipe.execute()

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        first = source.read(CHUNK_SIZE)
        # a short read is not the end of a pipe or socket: only an empty read is
        rest = source.read(CHUNK_SIZE) if first else b""
        if not rest:
            self._write(key, first, ttl=ttl, no_clobber=no_clobber)
            return len(first)
        # large value: append chunks to a private key, then rename it into place atomically
        upload = self._meta_base + b"\x00" + uuid.uuid4().hex.encode()
        size = 0
        try:
            self._client.set(upload, first, ex=UPLOAD_TTL)
            size = len(first)
            chunk = rest
            while chunk:
                self._client.append(upload, chunk)
                size += len(chunk)
                chunk = source.read(CHUNK_SIZE)
            pipe = self._client.pipeline(transaction=True)
            if ttl:
                pipe.expire(upload, ttl)
            else:
                pipe.persist(upload)
            if no_clobber:
                pipe.renamenx(upload, self._vkey(key))
            else:
                pipe.rename(upload, self._vkey(key))
            renamed = pipe.execute()[-1]
        finally:
            self._client.delete(upload)
        if not renamed:
            raise AlreadyExists(self._describe(key, "already exists"))
        pipe = self._client.pipeline(transaction=False)
        if no_clobber:
            pipe.delete(self._mkey(key))
        self._stamp(pipe, key, ttl, time.time())
        pipe.execute()
        return size

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        """One server-side script call per batch: values and timestamps in a single round trip,
        and no per-command client overhead (four commands a key through a pipeline cost about
        six times as much)."""
        if self._bulk_script is None:
            self._bulk_script = self._client.register_script(_BULK_WRITE_LUA)
        keys: list[bytes] = []
        args: list[Any] = [repr(time.time()), int(ttl or 0)]
        for key, value in items:
            keys.append(self._vkey(key))
            keys.append(self._mkey(key))
            args.append(value)
        self._bulk_script(keys=keys, args=args)

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        values = self._client.mget([self._vkey(key) for key in keys])
        yield from zip(keys, values, strict=True)

    def _delete(self, key: str) -> bool:
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(self._vkey(key))
        pipe.delete(self._mkey(key))
        return bool(pipe.execute()[0])

    def _pop(self, key: str) -> bytes:
        pipe = self._client.pipeline(transaction=False)
        pipe.getdel(self._vkey(key))
        pipe.delete(self._mkey(key))
        value = pipe.execute()[0]
        if value is None:
            raise self._missing(key)
        return value

    def _exists(self, key: str) -> bool:
        return bool(self._client.exists(self._vkey(key)))

    def _info(self, key: str) -> BaseStats:
        pipe = self._client.pipeline(transaction=False)
        pipe.exists(self._vkey(key))
        pipe.strlen(self._vkey(key))
        pipe.hmget(self._mkey(key), ["c", "u"])
        exists, size, (created, updated) = pipe.execute()
        if not exists:
            raise self._missing(key)
        return BaseStats(size=size, created_at=_timestamp(created), updated_at=_timestamp(updated))

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """Sizes and timestamps of a batch in one server-side script call (values never read)."""
        if self._info_script is None:
            self._info_script = self._client.register_script(_INFO_LUA)
        names: list[bytes] = []
        for key in keys:
            names.append(self._vkey(key))
            names.append(self._mkey(key))
        replies = self._info_script(keys=names) if names else []
        for key, reply in zip(keys, replies, strict=True):
            if reply is None:
                yield key, None
            else:
                size, created, updated = reply
                yield key, BaseStats.make(int(size), _timestamp(created), _timestamp(updated))

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        match = make_key_filter(prefix, exclude_prefix, glob)
        base = self.redis_prefix + "/" if self.redis_prefix else ""
        pattern = _encode(escape_match(base + listing_prefix(prefix, glob))) + b"*"
        start = len(self._value_base)
        seen: set[bytes] = set()  # SCAN may return a key twice while Redis rehashes
        for full in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
            if full in seen or full.startswith(b"\x00"):  # timestamps of a store without prefix
                continue
            seen.add(full)
            if b"\x00" in full[start:]:
                # the timestamps or an upload of a store nested under this one (`prefix/sub`):
                # no key holds a NUL byte, so such names are never this store's keys
                continue
            key = full[start:].decode("utf-8", "surrogateescape")
            if match(key):
                yield key

    def _iterate_entries(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None, md5: bool = False
    ) -> Iterator[KeyEntry]:
        """SCAN, then STRLEN and the update time of each key, one pipeline per batch."""
        keys = self._iterate_keys(prefix, exclude_prefix, glob)
        while batch := list(itertools.islice(keys, ENTRY_BATCH)):
            pipe = self._client.pipeline(transaction=False)
            for key in batch:
                pipe.strlen(self._vkey(key))
                pipe.hget(self._mkey(key), "u")
            answers = pipe.execute()
            for index, key in enumerate(batch):
                updated = answers[2 * index + 1]
                yield KeyEntry(key, answers[2 * index], float(updated) if updated is not None else None)

    def _server(self) -> tuple[Any, ...]:
        """Where the client connects (host, port or socket path, user), without the database."""
        options = self._client.connection_pool.connection_kwargs
        return (options.get("host"), options.get("port"), options.get("path"), options.get("username"))

    def _server_copy(self, source: BaseStore, key: str, size: int | None, ttl: int | None) -> int | None:
        """COPY within one Redis server (Redis >= 6.2), across databases too; None before 6.2."""
        if not isinstance(source, RedisStore) or self._copy_refused or source._server() != self._server():
            return None
        database = self._client.connection_pool.connection_kwargs.get("db") or 0
        same_db = (source._client.connection_pool.connection_kwargs.get("db") or 0) == database
        if same_db and source._vkey(key) == self._vkey(key):
            return None  # a key onto itself: nothing to copy
        target = self._vkey(key)
        try:
            copied = source._client.copy(source._vkey(key), target, destination_db=database, replace=True)
        except redis.ResponseError:
            self._copy_refused = True  # no COPY on this server
            return None
        if not copied:
            raise self._missing(key)
        pipe = self._client.pipeline(transaction=False)
        if ttl:
            pipe.expire(target, ttl)
        else:
            pipe.persist(target)  # COPY keeps the source's expiry; a copy gets the target's
        pipe.strlen(target)
        self._stamp(pipe, key, ttl, time.time())
        return int(pipe.execute()[1])
