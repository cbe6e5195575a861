"""Redis on the wire for the Redis backend: store uris, the client, key names, timestamp strings
and the metadata script. The store class itself is in `backends/redis.py`."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from anystore_cli.errors import InvalidUri
from anystore_cli.util.uri import mask_uri

DEFAULT_TIMEOUT = 3.0

_GLOB_SPECIAL = "\\*?[]"


def escape_match(text: str) -> str:
    """Escape Redis MATCH glob characters (`*`, `?`, `[`, `]`, `\\`) so `text` matches literally."""
    return "".join(f"\\{char}" if char in _GLOB_SPECIAL else char for char in text)


def encode_name(text: str) -> bytes:
    """A key or name as Redis holds it: UTF-8, undecodable bytes kept (surrogate escapes)."""
    return text.encode("utf-8", "surrogateescape")


def parse_timestamp(value: bytes | None) -> datetime | None:
    """A UTC datetime from epoch seconds as text (None stays None)."""
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), tz=timezone.utc)


def parse_stamps(meta: bytes | None | bool) -> tuple[datetime | None, datetime | None]:
    """`(created, updated)` from a timestamp string `b"CREATED UPDATED"` (None or false: none)."""
    if not meta:
        return None, None
    created, _, updated = meta.partition(b" ")
    try:
        return parse_timestamp(created), parse_timestamp(updated or created)
    except ValueError:  # not written by this store
        return None, None


def split_redis_uri(uri: str) -> tuple[str, str | None]:
    """Split a store uri into the server's uri (with its database) and the key prefix it names.

    `redis://host/DB` is the database alone (prefix None: `redis_prefix` or the default
    `anystore`); `redis://host/DB/PREFIX` names the prefix as the anystore 1.2 line writes it
    (keys at `PREFIX/key`). A first segment that is not a number is refused: it could be a
    mistyped database as well as a prefix.

    Args:
        uri: A `redis://` or `rediss://` store uri

    Returns:
        `(client_uri, prefix)`: the uri to connect to and the prefix (None when not named)
    """
    parts = urlsplit(uri)
    path = parts.path.strip("/")
    if not path:
        return uri, None
    database, _, prefix = path.partition("/")
    if not (database.isascii() and database.isdigit()):
        raise InvalidUri(
            f"Invalid redis uri `{mask_uri(uri)}`: the path is a database number, then an optional"
            f" key prefix (`redis://host/0/{path}`), not `{database}`"
        )
    client = urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))
    return client, (prefix.strip("/") or None)


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
        _refuse_unknown_query_options(uri, client)
        _CLIENTS[cache_key] = client
    return client


def _refuse_unknown_query_options(uri: str, client: redis.Redis) -> None:
    """redis-py hands a query option it does not know (`?x=1`) to the connection, which fails
    on first use with a TypeError: refuse it up front as a bad uri.

    Raises:
        InvalidUri: Naming the options the connection does not take
    """
    from urllib.parse import parse_qs

    names = set(parse_qs(urlsplit(uri).query))
    if not names:
        return
    import inspect

    accepted: set[str] = set()
    for klass in client.connection_pool.connection_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            accepted.update(inspect.signature(init).parameters)
    unknown = sorted(names - accepted)
    if unknown:
        shown = ", ".join(f"`{name}`" for name in unknown)
        raise InvalidUri(f"unknown query option {shown}")


INFO_LUA = """
local out = {}
local n = tonumber(ARGV[1])
local hashed = ARGV[2] == 'hash'
for i = 1, n do
  local size = redis.pcall('STRLEN', KEYS[i])
  if type(size) == 'table' then
    out[#out + 1] = {-1, redis.call('TYPE', KEYS[i])['ok']}
  elseif size == 0 and redis.call('EXISTS', KEYS[i]) == 0 then
    out[#out + 1] = false
  elseif hashed then
    out[#out + 1] = {size, redis.call('HGET', KEYS[n + 1], ARGV[i + 2])}
  else
    out[#out + 1] = {size, redis.call('MGET', KEYS[n + i])[1]}
  end
end
return out
"""
"""The metadata of a batch of N keys: KEYS are the N value names, then their N timestamp names
(ARGV `N`, `strings`) or the timestamp hash (ARGV `N`, `hash`, then the N fields); a nil reply
for a missing key, `{-1, TYPE}` for a name that holds another type than a string, else
`{size, stamps}` (stamps false when the key has none)."""
STAMP_HASH = b"\x00anystore-cli:timestamps"
"""Where a store without prefix keeps its timestamps: one hash, field the key. Any string name
would be a key to a program listing the whole database; a hash is skipped by anystore 1.2's
listing (it asks each name's string length), and the NUL byte keeps it out of this tool's."""
