"""Store schemes as fsspec protocols: `redis://host/0/some/key` is a uri like `s3://bucket/key`.

`io`, `get -o`, `put -i` and the library face's `smart_open` / `smart_read` / `smart_write` take
a key of a Redis, SQL or served store by its uri; so does `fsspec.open` once a program called
`register_protocols()`. Each uri splits into the
store and the key by a rule of its scheme, and a uri that could split two ways is refused
(`InvalidUri`, exit 2) rather than guessed:

- `redis://[:password@]host[:port]/DB/KEY` (and `rediss://`): DB, a number, is required; KEY
  is the Redis name itself (a value the 0.3.0 line wrote at its default prefix is
  `redis://host/0/anystore/KEY`).
- `sqlite:///PATH/FILE.db/KEY` (`sqlite:////abs/FILE.db/KEY` for an absolute path): the database
  is the leading part of the path that is an existing file; when none exists yet (a write), the
  one segment ending `.db`, `.sqlite`, `.sqlite3` or `.db3` ends it, and a uri with two such
  segments is refused. `?table=NAME` picks the table.
- `postgresql://user@host[:port]/DATABASE/KEY`, `mysql+pymysql://.../DATABASE/KEY` (every SQL
  scheme and `+driver` form): the first path segment is the database, the rest the key;
  `?table=NAME` picks the table, other query options go to the database url.
- `anystore+http(s)://host[:port]/KEY`: the server's root store, the path the key.

The filesystems are thin: each call opens the project's own store for the uri's store part
(one per store, cached) and calls its public API; no backend is written twice.

The smart_* functions use these classes directly, never through fsspec's registry: the anystore
library (1.2) registers filesystems of its own under the same names (`redis`, `sqlite`, ...,
by entry points), and a program may use both packages. `register_protocols()` adds them to the
registry, lazily (dotted class paths), leaving any name another package registered alone unless
asked to replace it; this package declares no entry points for the same reason.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from typing import IO, Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fsspec.spec import AbstractFileSystem

from anystore_cli.errors import DoesNotExist, InvalidUri
from anystore_cli.util.uri import get_scheme, mask_uri

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3", ".db3")
SPOOL_SIZE = 8 * 1024 * 1024
"""Bytes a write keeps in memory before it spills to a temporary file"""

_PREFIX = "anystore_cli.store.protocols."
PROTOCOLS: dict[str, str] = {
    "redis": _PREFIX + "RedisKeyFileSystem",
    "rediss": _PREFIX + "RedisKeyFileSystem",
    "sqlite": _PREFIX + "SqliteKeyFileSystem",
    "postgresql": _PREFIX + "SqlKeyFileSystem",
    "postgres": _PREFIX + "SqlKeyFileSystem",
    "mysql": _PREFIX + "SqlKeyFileSystem",
    "mariadb": _PREFIX + "SqlKeyFileSystem",
    "anystore+http": _PREFIX + "ServedKeyFileSystem",
    "anystore+https": _PREFIX + "ServedKeyFileSystem",
}
"""Protocol -> filesystem class; a SQL scheme's `+driver` form (`postgresql+psycopg2`) takes
its base scheme's class, registered when first seen"""


def protocol_target(protocol: str) -> str | None:
    """The dotted class path of the filesystem for `protocol`, None when it is no store scheme."""
    protocol = protocol.lower()
    if protocol in PROTOCOLS:
        return PROTOCOLS[protocol]
    base = protocol.split("+", 1)[0]
    if "+" in protocol and base in PROTOCOLS and not base.startswith(("redis", "anystore")):
        return PROTOCOLS[base]
    return None


def register_protocols(*extra: str, replace: bool = False) -> list[str]:
    """Register the store schemes with fsspec (lazily: dotted class paths), so that
    `fsspec.open("redis://host/0/some/key")` works in this process.

    Example:
        ```python
        from anystore_cli.store.protocols import register_protocols

        register_protocols("postgresql+psycopg2")
        ```

    Args:
        extra: `+driver` forms of the SQL schemes to register too (`postgresql+psycopg2`)
        replace: Also take the names another package registered (the anystore library's own
            `redis`, `sqlite`, ... filesystems); by default those stay as they are

    Returns:
        The protocols registered
    """
    from fsspec.registry import known_implementations, register_implementation, registry

    done = []
    for protocol in (*PROTOCOLS, *extra):
        target = protocol_target(protocol)
        if target is None:
            continue
        taken = known_implementations.get(protocol, {}).get("class")
        if not replace and (protocol in registry or (taken is not None and taken != target)):
            continue
        register_implementation(protocol, target, clobber=True)
        done.append(protocol)
    return done


def store_filesystem(uri: str, **storage_options: Any) -> tuple[Any, str]:
    """This project's filesystem for a store-key `uri` and the path to give it (the uri itself).

    Raises:
        InvalidUri: When `uri`'s scheme is no store scheme
    """
    import importlib

    target = protocol_target(get_scheme(uri))
    if target is None:
        raise InvalidUri(f"`{mask_uri(uri)}` is no store uri")
    module, _, name = target.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return cls(**storage_options), uri


# ---- how a uri names a store and a key ----------------------------------------------------------


def _refuse(uri: str, why: str) -> InvalidUri:
    return InvalidUri(f"Ambiguous or incomplete uri `{mask_uri(uri)}`: {why}")


def _key_of(uri: str, rest: str, example: str) -> str:
    key = rest.strip("/")
    if not key:
        raise _refuse(uri, f"it names no key (give one, as in `{example}`)")
    return key


def split_redis(uri: str) -> tuple[str, dict[str, Any], str]:
    """`(store uri, backend_config, key)` of `redis://host/DB/KEY`: bare keys of database DB."""
    parts = urlsplit(uri)
    database, _, rest = parts.path.lstrip("/").partition("/")
    if not (database.isascii() and database.isdigit()):
        raise _refuse(uri, "the path is a database number, then the key (`redis://host/0/some/key`)")
    key = _key_of(uri, rest, f"{parts.scheme}://host/{database}/some/key")
    store = urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))
    return store, {"redis_prefix": ""}, key


def _table_option(parts: Any) -> tuple[str, dict[str, Any]]:
    """The query without `table`, and `table` as backend config."""
    query = parse_qsl(parts.query, keep_blank_values=True)
    tables = [value for name, value in query if name == "table"]
    config = {"table": tables[-1]} if tables else {}
    return urlencode([(name, value) for name, value in query if name != "table"]), config


def split_sqlite(uri: str) -> tuple[str, dict[str, Any], str]:
    """`(store uri, backend_config, key)` of `sqlite:///FILE.db/KEY` (see the module's rules)."""
    parts = urlsplit(uri)
    query, config = _table_option(parts)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path  # `sqlite:///rel`, `////abs`
    segments = path.split("/")
    database = None
    for end in range(1, len(segments)):
        candidate = "/".join(segments[:end])
        if candidate and os.path.isfile(candidate):
            database = end
            break
    if database is None:
        marked = [i + 1 for i, segment in enumerate(segments[:-1]) if segment.lower().endswith(SQLITE_SUFFIXES)]
        if len(marked) != 1:
            why = "two segments could end the database file" if marked else "no existing database file in the path"
            raise _refuse(uri, f"{why} (`sqlite:///data.db/some/key`)")
        database = marked[0]
    key = _key_of(uri, "/".join(segments[database:]), "sqlite:///data.db/some/key")
    store = f"{parts.scheme}://{parts.netloc}/{'/'.join(segments[:database])}" + (f"?{query}" if query else "")
    return store, config, key


def split_sql(uri: str) -> tuple[str, dict[str, Any], str]:
    """`(store uri, backend_config, key)` of `postgresql://host/DATABASE/KEY` and the others."""
    parts = urlsplit(uri)
    query, config = _table_option(parts)
    database, _, rest = parts.path.lstrip("/").partition("/")
    if not database:
        raise _refuse(uri, f"the path is the database, then the key (`{parts.scheme}://host/DATABASE/some/key`)")
    key = _key_of(uri, rest, f"{parts.scheme}://host/{database}/some/key")
    return f"{parts.scheme}://{parts.netloc}/{database}" + (f"?{query}" if query else ""), config, key


def split_served(uri: str) -> tuple[str, dict[str, Any], str]:
    """`(store uri, backend_config, key)` of `anystore+http://host/KEY`: the server's root store."""
    parts = urlsplit(uri)
    key = _key_of(uri, parts.path, f"{parts.scheme}://host:port/some/key")
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")), {}, key


# ---- the filesystems ----------------------------------------------------------------------------


class _ReadHandle(io.RawIOBase):
    """A store's read handle that leaves the store's context when closed."""

    def __init__(self, context: Any) -> None:
        super().__init__()
        self._context = context
        self._handle = context.__enter__()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._handle.read() if size is None or size < 0 else self._handle.read(size)

    def close(self) -> None:
        if not self.closed:
            context, self._context = self._context, None
            if context is not None:
                context.__exit__(None, None, None)
        super().close()


class StoreWriter(io.RawIOBase):
    """Collects a value (in memory, then a temporary file) and stores it when closed; a block
    that ends with an error stores nothing, so the old value stays."""

    def __init__(self, store: Any, key: str, ttl: int | None = None) -> None:
        super().__init__()
        self._store, self._key, self._ttl = store, key, ttl
        self._buffer: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)  # noqa: SIM115

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._buffer.write(data)

    def close(self) -> None:
        """Store the value written (once)."""
        if not self.closed:
            try:
                self._buffer.seek(0)
                self._store.put_stream(self._key, self._buffer, ttl=self._ttl)
            finally:
                self._buffer.close()
        super().close()

    def discard(self) -> None:
        """Drop what was written; nothing is stored."""
        self._buffer.close()
        super().close()

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


class StoreKeyFileSystem(AbstractFileSystem):
    """A read/write fsspec filesystem whose paths are whole store-key uris (see the module)."""

    protocol: ClassVar[Any] = ()
    root_marker = ""
    cachable = True

    def __init__(self, **storage_options: Any) -> None:
        super().__init__(**storage_options)
        self._options = {
            k: v for k, v in storage_options.items() if not k.startswith(("skip_instance", "use_listings"))
        }
        self._stores: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return str(path).rstrip("/")  # the whole uri: it names the store as well as the key

    @classmethod
    def _get_kwargs_from_urls(cls, path: str) -> dict[str, Any]:
        return {}

    def unstrip_protocol(self, name: str) -> str:
        """The uri of `name` (already a whole uri)."""
        return name

    @classmethod
    def split(cls, uri: str) -> tuple[str, dict[str, Any], str]:
        """`(store uri, backend_config, key)` that `uri` names."""
        raise NotImplementedError

    def store_and_key(self, path: str) -> tuple[Any, str]:
        """The store (opened once per store uri) and the key of `path`."""
        from anystore_cli.store.registry import backend_name, load_backend

        uri, config, key = self.split(self._strip_protocol(path))
        config = {**self._options, **config}
        cache_key = (uri, repr(sorted(config.items())))
        with self._lock:
            store = self._stores.get(cache_key)
            if store is None:
                store = load_backend(backend_name(uri))(uri=uri, backend_config=config or None)
                self._stores[cache_key] = store
        return store, key

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        store, key = self.store_and_key(path)
        if "r" in mode and "+" not in mode:
            try:
                return _ReadHandle(store.open(key, "rb"))
            except DoesNotExist as exc:
                raise FileNotFoundError(path) from exc
        if "a" in mode or "+" in mode:
            raise InvalidUri(f"`{mask_uri(path)}` opens for reading or writing a whole value, not `{mode}`")
        return StoreWriter(store, key, ttl=kwargs.get("ttl"))

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The value at `path` (a byte range of it with `start`/`end`)."""
        store, key = self.store_and_key(path)
        try:
            data = store.get(key, serialization_mode="raw")
        except DoesNotExist as exc:
            raise FileNotFoundError(path) from exc
        return data[start:end] if start is not None or end is not None else data

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Store `value` at `path`; `mode="create"` refuses an existing key."""
        store, key = self.store_and_key(path)
        store.put(key, value, serialization_mode="raw", no_clobber=mode == "create", ttl=kwargs.get("ttl"))

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Size and times of the value at `path`."""
        store, key = self.store_and_key(path)
        try:
            stats = store.info(key)
        except DoesNotExist as exc:
            raise FileNotFoundError(path) from exc
        return {
            "name": self._strip_protocol(path),
            "size": stats.size,
            "type": "file",
            "created": stats.created_at,
            "mtime": stats.updated_at,
        }

    def exists(self, path: str, **kwargs: Any) -> bool:
        """Whether a value is at `path`."""
        store, key = self.store_and_key(path)
        return bool(store.exists(key))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """The keys under `path` (a key prefix), every level, as whole uris."""
        path = self._strip_protocol(path)
        store, key = self.store_and_key(path)
        base = path[: len(path) - len(key)]
        names = [key] if store.exists(key) else sorted(store.iterate_keys(prefix=key + "/"))
        if not detail:
            return [base + name for name in names]
        return [self.info(base + name) for name in names]

    def rm_file(self, path: str) -> None:
        """Delete the value at `path`."""
        store, key = self.store_and_key(path)
        if not store.delete(key):
            raise FileNotFoundError(path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing: keys need no folders."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Nothing: keys need no folders."""


class RedisKeyFileSystem(StoreKeyFileSystem):
    """`redis://host/DB/KEY`, `rediss://...`: a key of a Redis database."""

    protocol = ("redis", "rediss")

    @classmethod
    def split(cls, uri: str) -> tuple[str, dict[str, Any], str]:
        """`(store uri, backend_config, key)` that `uri` names."""
        return split_redis(uri)


class SqliteKeyFileSystem(StoreKeyFileSystem):
    """`sqlite:///FILE.db/KEY`: a key of a SQLite database's table."""

    protocol = ("sqlite",)

    @classmethod
    def split(cls, uri: str) -> tuple[str, dict[str, Any], str]:
        """`(store uri, backend_config, key)` that `uri` names."""
        return split_sqlite(uri)


class SqlKeyFileSystem(StoreKeyFileSystem):
    """`postgresql://host/DATABASE/KEY`, `mysql+pymysql://...`: a key of a SQL database's table."""

    protocol = ("postgresql", "postgres", "mysql", "mariadb")

    @classmethod
    def split(cls, uri: str) -> tuple[str, dict[str, Any], str]:
        """`(store uri, backend_config, key)` that `uri` names."""
        if get_scheme(uri).startswith("sqlite"):
            return split_sqlite(uri)
        return split_sql(uri)


class ServedKeyFileSystem(StoreKeyFileSystem):
    """`anystore+http://host:port/KEY`: a key of a store served by `anystore serve`."""

    protocol = ("anystore+http", "anystore+https")

    @classmethod
    def split(cls, uri: str) -> tuple[str, dict[str, Any], str]:
        """`(store uri, backend_config, key)` that `uri` names."""
        return split_served(uri)
