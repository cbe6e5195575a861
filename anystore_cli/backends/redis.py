"""Redis backend (`redis://[user:password@]host[:port][/db[/prefix]]`, `rediss://` for TLS).

Layout of a store in Redis (prefix from the uri's path after the database number, as the
anystore 1.2 line names it, else `backend_config` `redis_prefix`, default `anystore` as 0.3.0
writes it; an empty `redis_prefix` is bare keys):

- the value of `key` is a plain string at `{prefix}/{key}`, so `redis-cli GET anystore/foo`
  shows it and the original anystore's layout is kept;
- its timestamps live in a short string at `{prefix}\\x00{key}`, `"CREATED UPDATED"` in epoch
  seconds, written in the same command or MULTI as the value (a batch of new keys is one MULTI
  of MSET and MSETNX, one round trip: a bulk load costs two plain SETs a key on the server, the
  floor `redis-cli --pipe` shows), and given the same ttl. A key never holds a NUL
  byte, so no value key of any store can be a timestamp string, and `SCAN MATCH {prefix}/*`
  never sees them; the internal names of a store nested under this one (`{prefix}/sub\\x00{key}`)
  do match, and are skipped by their NUL byte. With no prefix the timestamps are fields of one
  hash, STAMP_HASH, instead: any string name would be a key to a program listing the database;
- with `backend_config` `redis_timestamps` false, the store writes values alone (one MSET a
  batch, as `redis-cli --pipe` would) and removes the timestamps an earlier write left, in the
  same round trip; keys then have a size and no times, as keys other programs wrote;
- a value streamed in by `put_stream` is assembled at `{prefix}\\x00\\x00{random}` and renamed
  into place, so readers see the old value or the new one, never a part.

Every read is one round trip (GET, GETDEL, MGET, or one pipeline); `info` uses STRLEN and never
reads the value. `iterate_keys` SCANs with a MATCH pattern made from the literal start of the
prefix or glob (glob characters escaped) and filters exactly with `core.keys`. Connection and
socket timeouts default to 3 seconds (`backend_config` `socket_connect_timeout` and
`socket_timeout` change them), so an unreachable server fails fast as `StoreError`.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any, ClassVar

import redis

try:  # redis-py uses hiredis too when it is installed (the `redis` extra installs it)
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is a dependency of the redis extra
    _pack_command = None

from anystore_cli.backends.redis_wire import (  # noqa: F401 - escape_match, split_redis_uri, STAMP_HASH are used from here
    DEFAULT_TIMEOUT,
    INFO_LUA,
    STAMP_HASH,
    encode_name,
    escape_match,
    get_client,
    parse_stamps,
    split_redis_uri,
)
from anystore_cli.config.settings import parse_bool
from anystore_cli.errors import AlreadyExists, InvalidData, InvalidUri, StoreError
from anystore_cli.store.base import BaseStore, Capabilities, VirtualIOMixin
from anystore_cli.store.entry import BaseStats
from anystore_cli.store.io import CHUNK_SIZE
from anystore_cli.store.options import Option
from anystore_cli.util.keys import listing_prefix, make_key_filter
from anystore_cli.util.uri import mask_uri

DEFAULT_PREFIX = "anystore"
SCAN_COUNT = 5000
"""Keys Redis examines per SCAN call: fewer round trips, each still about a millisecond"""
UPLOAD_TTL = 24 * 3600
"""Seconds an interrupted `put_stream` upload may linger before Redis drops it (renewed with
each chunk, read at each write)"""


class RedisStore(VirtualIOMixin, BaseStore):
    """A store in a Redis database, with ttl support."""

    options: ClassVar[tuple[Option, ...]] = (
        Option("redis_prefix", "text", "anystore", help="Prefix of the store's keys ('': the whole database)"),
        Option("redis_timestamps", "bool", True, help="Keep created/updated times beside each value"),
        Option("socket_connect_timeout", "float", 3.0, help="Seconds to connect"),
        Option("socket_timeout", "float", 3.0, help="Seconds a command may take"),
    )

    capabilities: ClassVar[Capabilities] = Capabilities(
        ttl=True,
        server_copy=True,
        leases="anystore_cli.backends.leases.redis:RedisLeases",
        listing_walks_all=True,
    )
    backend_errors: ClassVar[tuple[type[BaseException], ...]] = (redis.RedisError, OSError)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        config = self.backend_config or {}
        client_uri, uri_prefix = split_redis_uri(self.uri)
        prefix = config.get("redis_prefix")
        if uri_prefix is not None:
            if prefix is not None and str(prefix) != uri_prefix:
                raise InvalidUri(
                    f"Store `{mask_uri(self.uri)}`: the uri names the key prefix `{uri_prefix}`"
                    f" and `redis_prefix` another, `{prefix}`"
                )
            prefix = uri_prefix
        # an empty prefix (`-b redis_prefix=`) is a store over the whole database: value `key` at
        # `key`, timestamps in the hash STAMP_HASH (a NUL-led name no key can have)
        prefix = DEFAULT_PREFIX if prefix is None else str(prefix)
        if "\x00" in prefix:
            raise InvalidUri(f"Store `{mask_uri(self.uri)}`: `redis_prefix` may not hold a NUL byte")
        self.redis_prefix = prefix
        # whether writes keep `created_at`/`updated_at` (a second short string a key)
        stamped = config.get("redis_timestamps")
        try:
            self.redis_timestamps = True if stamped is None else parse_bool(stamped)
        except InvalidData:
            message = f"Store `{mask_uri(self.uri)}`: `redis_timestamps` is true or false, not `{stamped}`"
            raise InvalidData(message) from None
        self._value_base = encode_name(prefix + "/") if prefix else b""
        # timestamps: a string `{prefix}\x00{key}` beside each value, or with no prefix a field
        # `key` of STAMP_HASH (then a key's "meta name" is the field)
        self._stamp_hash = None if prefix else STAMP_HASH
        self._meta_base = encode_name(prefix + "\x00") if prefix else b""
        self._upload_base = encode_name(prefix + "\x00\x00")
        self._copy_refused = False
        self.skipped_non_values: Counter[str] = Counter()
        """Names of other Redis types (hash, list, ...) the last `iterate_entries` left out, by type:
        its entries are values, which a dump or a copy can read"""
        self._info_script: Any = None
        try:
            self._client = get_client(
                client_uri,
                float(config.get("socket_connect_timeout") or DEFAULT_TIMEOUT),
                float(config.get("socket_timeout") or DEFAULT_TIMEOUT),
            )
        except ValueError as exc:
            raise InvalidUri(f"Invalid redis uri `{mask_uri(self.uri)}`: {mask_uri(exc)}") from exc

    # ---- layout ---------------------------------------------------------------------------

    def _get_key_prefix(self) -> str:
        return self.redis_prefix

    def _vkey(self, key: str) -> bytes:
        return self._value_base + encode_name(key)

    def _mkey(self, key: str) -> bytes:
        return self._meta_base + encode_name(key)

    def _stamps_get(self, metas: list[bytes]) -> tuple[Any, ...]:
        """The command that reads the timestamps at `metas` (nil where there are none)."""
        return ("HMGET", self._stamp_hash, *metas) if self._stamp_hash else ("MGET", *metas)

    def _stamps_del(self, metas: list[bytes]) -> tuple[Any, ...]:
        """The command that removes the timestamps at `metas`."""
        return ("HDEL", self._stamp_hash, *metas) if self._stamp_hash else ("DEL", *metas)

    def _write_batch(
        self, keys: list[bytes], values: list[bytes] | None, ttl: int | None, created: bool = False
    ) -> None:
        """Write values and their timestamps: `keys` are the encoded keys, `values` their values,
        or None for values written by other means (only the timestamps are set). One MGET reads
        the creation times to keep (none with `created`: the values were just created, and older
        timestamps a removed value left behind are overwritten); then one MSET (no ttl: it
        clears any earlier one, as SET does) or one MULTI of SETs with EX writes values and
        timestamps together, all or nothing."""
        base, meta_base = self._value_base, self._meta_base
        names = [base + key for key in keys] if base else keys
        metas = [meta_base + key for key in keys]
        if not self.redis_timestamps:
            self._write_plain(names, values, metas, ttl)
            return
        now = repr(time.time()).encode()
        fresh = now + b" " + now
        if not created and values is not None and not ttl and not self._stamp_hash:
            if self._write_if_new(names, values, metas, fresh):
                return
            values = None  # written: what is left is the timestamps, keeping creation times
        olds = None if created else self._raw_command(self._stamps_get(metas))
        if not olds or not any(olds):  # all new: the common case of a load, one string for all
            stamps = [fresh] * len(names)
        else:
            stamps = [fresh if not old else old.partition(b" ")[0] + b" " + now for old in olds]
        if self._stamp_hash:
            self._write_hashed(names, values, metas, stamps, ttl)
            return
        if not ttl:
            # MSET name value meta stamp ..., interleaved by slice assignment (no loop per key)
            width = 2 if values is None else 4
            args: list[Any] = [None] * (width * len(names))
            if values is None:
                args[0::2], args[1::2] = metas, stamps
            else:
                args[0::4], args[1::4], args[2::4], args[3::4] = names, values, metas, stamps
            self._raw_command(("MSET", *args))
            return
        pipe = self._client.pipeline(transaction=True)
        for name, value, meta, stamp in zip(names, values or [None] * len(names), metas, stamps, strict=True):
            if value is not None:
                pipe.set(name, value, ex=ttl)
            pipe.set(meta, stamp, ex=ttl)
        pipe.execute()

    def _write_if_new(self, names: list[bytes], values: list[bytes], metas: list[bytes], fresh: bytes) -> bool:
        """Write the values, and `fresh` timestamps if none of the keys has any yet, in one
        MULTI and one round trip; return whether the timestamps were written.

        A load into new keys then costs one round trip a batch, not an MGET of creation times
        to keep before the MSET (a third of a bulk write's time here). When some keys have
        timestamps, MSETNX writes none and the caller writes them next round trip, keeping the
        creation times: in between, a reader sees the new values with their previous times."""
        stamps: list[Any] = [fresh] * (2 * len(metas))
        stamps[0::2] = metas
        pairs: list[Any] = [None] * (2 * len(names))
        pairs[0::2], pairs[1::2] = names, values
        replies = self._raw_commands([("MULTI",), ("MSETNX", *stamps), ("MSET", *pairs), ("EXEC",)])
        return bool(replies[-1][0])

    def _write_hashed(
        self, names: list[bytes], values: list[bytes] | None, fields: list[bytes], stamps: list[bytes], ttl: int | None
    ) -> None:
        """Write values and their timestamps in STAMP_HASH in one MULTI. A hash field cannot
        expire (before Redis 7.4), so a value written with a ttl gets no timestamps: they would
        outlive it."""
        commands: list[tuple[Any, ...]] = [("MULTI",)]
        if ttl:
            commands += [("SET", name, value, "EX", ttl) for name, value in zip(names, values or [], strict=False)]
            commands.append(("HDEL", self._stamp_hash, *fields))
        else:
            if values is not None:
                args: list[Any] = [None] * (2 * len(names))
                args[0::2], args[1::2] = names, values
                commands.append(("MSET", *args))
            pairs: list[Any] = [None] * (2 * len(fields))
            pairs[0::2], pairs[1::2] = fields, stamps
            commands.append(("HSET", self._stamp_hash, *pairs))
        commands.append(("EXEC",))
        self._raw_commands(commands)

    def _write_plain(self, names: list[bytes], values: list[bytes] | None, metas: list[bytes], ttl: int | None) -> None:
        """Write values without timestamps, and remove any an earlier write left (they would be
        read as this value's times once the store keeps timestamps again)."""
        if values is None:
            self._raw_command(self._stamps_del(metas))
            return
        if not ttl:
            args: list[Any] = [None] * (2 * len(names))
            args[0::2], args[1::2] = names, values
            self._raw_commands([("MSET", *args), self._stamps_del(metas)])
            return
        pipe = self._client.pipeline(transaction=True)
        for name, value in zip(names, values, strict=True):
            pipe.set(name, value, ex=ttl)
        pipe.execute_command(*self._stamps_del(metas))
        pipe.execute()

    def _raw_command(self, args: tuple[Any, ...]) -> Any:
        """Send one command and return the server's raw reply. With hiredis, the arguments are
        packed in one C call (redis-py would first check each argument in Python: most of a
        bulk write's client time)."""
        return self._raw_commands([args])[-1]

    def _raw_commands(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send commands in one round trip and return their raw replies (an error reply raises
        once every reply is read)."""
        if _pack_command is None:
            pipe = self._client.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)
            return pipe.execute()
        pool = self._client.connection_pool
        connection = pool.get_connection()
        replies: list[Any] = []
        try:
            connection.send_packed_command([_pack_command(args) for args in commands], check_health=False)
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as exc:  # an error reply: the connection is in step
                    replies.append(exc)
        except BaseException:
            connection.disconnect()  # a half-sent command or unread reply: this connection is done
            raise
        finally:
            pool.release(connection)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    # ---- names that hold a hash, a list, ... (written by other programs) -----------------------

    def _not_a_value(self, key: str, kind: str | bytes | None = None) -> InvalidData:
        """The error for `key` holding another Redis type than a string (`kind`, else asked)."""
        if kind is None:
            kind = self._client.type(self._vkey(key))
        if isinstance(kind, bytes):
            kind = kind.decode()
        return InvalidData(f"`{key}` in store `{mask_uri(self.uri)}` is a Redis {kind}, not a value")

    @contextlib.contextmanager
    def _values_only(self, key: str) -> Iterator[None]:
        """Turn Redis's WRONGTYPE reply for `key` into `InvalidData` naming its type."""
        try:
            yield
        except redis.ResponseError as exc:
            if "WRONGTYPE" not in str(exc):  # alone, or in a pipeline's "Command # N ... caused error"
                raise
            raise self._not_a_value(key) from None

    def _stats(self, key: str, stats: BaseStats) -> Any:
        """The public metadata; a name of another type carries it as `value_type`."""
        result = super()._stats(key, stats)
        kind = stats._extra.get("value_type") if stats._extra else None
        if kind is not None:
            result.__dict__["value_type"] = kind
        return result

    # ---- primitives -----------------------------------------------------------------------

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        with self._values_only(key):
            value = self._client.get(self._vkey(key))
        if value is None:
            if raise_on_nonexist:
                raise self._missing(key)
            return None
        if "b" not in kwargs.get("mode", "rb"):
            return value.decode()
        return value

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        if no_clobber:
            if not self._client.set(self._vkey(key), value, ex=ttl or None, nx=True):
                raise AlreadyExists(self._describe(key, "already exists"))
            self._write_batch([encode_name(key)], None, ttl, created=True)
            return
        self._write_batch([encode_name(key)], [value], ttl)

    def _write_stream(self, key: str, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        first = source.read(CHUNK_SIZE)
        # a short read is not the end of a pipe or socket: only an empty read is
        rest = source.read(CHUNK_SIZE) if first else b""
        if not rest:
            self._write(key, first, ttl=ttl, no_clobber=no_clobber)
            return len(first)
        # large value: append chunks to a private key, then rename it into place atomically
        upload = self._upload_base + uuid.uuid4().hex.encode()
        size = 0
        try:
            self._client.set(upload, first, ex=UPLOAD_TTL)
            size = len(first)
            chunk = rest
            while chunk:
                # each chunk renews the upload's lifetime, so only a stream that stalls for a
                # whole lifetime loses it; APPEND's length tells whether it did (APPEND to an
                # expired key starts a new one), and then nothing is stored
                length = self._raw_commands([("APPEND", upload, chunk), ("EXPIRE", upload, UPLOAD_TTL)])[0]
                size += len(chunk)
                if length != size:
                    lost = size - length
                    raise StoreError(
                        self._describe(
                            key, f"the upload expired while it was streamed ({lost} bytes lost); nothing stored"
                        )
                    )
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
        self._write_batch([encode_name(key)], None, ttl, created=no_clobber)
        return size

    def _put_many(self, items: list[tuple[str, bytes]], ttl: int | None = None) -> None:
        """A batch of new keys in one round trip (values and fresh timestamps, `_write_if_new`);
        where some keys have timestamps, a second for the creation times to keep (a MULTI of
        SETs with a ttl). The client packs a few commands a batch and the server does what
        `redis-cli --pipe` would, plus the timestamps."""
        if not items:
            return
        # every key in one encode: a key holds no NUL, so the joined text splits back into them
        encoded = "\x00".join([key for key, _ in items]).encode("utf-8", "surrogateescape").split(b"\x00")
        self._write_batch(encoded, [value for _, value in items], ttl)

    def _get_many(self, keys: list[str]) -> Iterator[tuple[str, bytes | None]]:
        values = self._client.mget([self._vkey(key) for key in keys])
        yield from zip(keys, values, strict=True)

    def _delete(self, key: str) -> bool:
        pipe = self._client.pipeline(transaction=False)
        pipe.delete(self._vkey(key))
        pipe.execute_command(*self._stamps_del([self._mkey(key)]))
        return bool(pipe.execute()[0])

    def _pop(self, key: str) -> bytes:
        pipe = self._client.pipeline(transaction=False)
        pipe.getdel(self._vkey(key))
        pipe.execute_command(*self._stamps_del([self._mkey(key)]))
        with self._values_only(key):
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
        pipe.execute_command(*self._stamps_get([self._mkey(key)]))  # nil, not an error, for another type
        with self._values_only(key):
            exists, size, (meta,) = pipe.execute()
        if not exists:
            raise self._missing(key)
        created, updated = parse_stamps(meta if self.redis_timestamps else None)
        return BaseStats(size=size, created_at=created, updated_at=updated)

    def _info_many(self, keys: list[str]) -> Iterator[tuple[str, BaseStats | None]]:
        """Sizes and timestamps of a batch in one server-side script call (values never read)."""
        for key, reply in zip(keys, self._info_replies(keys), strict=True):
            if reply is None:
                yield key, None
            elif int(reply[0]) < 0:  # a hash, a list, ...: listed with its type, no size
                stats = BaseStats.make(None, None, None)  # type: ignore[arg-type]
                stats._extra = {"value_type": reply[1].decode()}
                yield key, stats
            else:
                yield key, BaseStats.make(int(reply[0]), *parse_stamps(reply[1] if self.redis_timestamps else None))

    def _info_replies(self, keys: list[str]) -> list[Any]:
        """`[size, stamps]` for each key (None if it does not exist), one script call."""
        if not keys:
            return []
        if self._info_script is None:
            self._info_script = self._client.register_script(INFO_LUA)
        names = [self._vkey(key) for key in keys]
        metas = [self._mkey(key) for key in keys]
        if self._stamp_hash:
            return self._info_script(keys=[*names, self._stamp_hash], args=[len(keys), "hash", *metas])
        return self._info_script(keys=[*names, *metas], args=[len(keys), "strings"])

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        """SCAN with a MATCH pattern from the literal start of the prefix or glob; the contract's
        `_list` batches these keys and asks `_info_many` (one script call) for their metadata."""
        match = make_key_filter(prefix, exclude_prefix, glob)
        base = self.redis_prefix + "/" if self.redis_prefix else ""
        pattern = encode_name(escape_match(base + listing_prefix(prefix, glob))) + b"*"
        start = len(self._value_base)
        # no set of the names seen (it would grow by ~100 bytes a key, 100 MiB for a million):
        # as with `redis-cli --scan`, a key may come twice only if the database shrinks while
        # it is listed (Redis's SCAN guarantee)
        for full in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
            if full.startswith(b"\x00"):  # timestamps of a store without prefix
                continue
            if b"\x00" in full[start:]:
                # the timestamps or an upload of a store nested under this one (`prefix/sub`):
                # no key holds a NUL byte, so such names are never this store's keys
                continue
            key = full[start:].decode("utf-8", "surrogateescape")
            if match(key):
                yield key

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
        size = int(pipe.execute()[1])
        self._write_batch([encode_name(key)], None, ttl)
        return size
