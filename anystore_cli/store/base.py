"""The store logic above the backend primitives (see `store.contract`): keys, serialization,
readonly and append-only rules, filters, batching, and the translation of backend errors into
the core's exception types.

Every listing is an adapter over the backend's one listing primitive, `_list` (batches of keys
or of `KeyEntry` records). The filters beyond prefix, exclude_prefix and glob (`include`,
`exclude`, `shard`, `filters`) are applied here, once for every backend, by
`util.keys.make_key_filter`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from datetime import datetime
from typing import IO, Any

from anystore_cli.errors import DoesNotExist, InvalidData, ReadOnlyError
from anystore_cli.store.batches import BatchMixin
from anystore_cli.store.contract import (  # noqa: F401 - re-exported: where the backends import them
    INFO_BATCH,
    KEY_BATCH,
    BackendContract,
    Capabilities,
    TTLMixin,
    VirtualIOMixin,
    check_readonly,
)
from anystore_cli.store.entry import KeyEntry
from anystore_cli.store.io import DEFAULT_MODE, copy_stream
from anystore_cli.store.listing import ListingMixin
from anystore_cli.store.model import StoreModel
from anystore_cli.util.checksum import DEFAULT_HASH_ALGORITHM
from anystore_cli.util.keys import normalize_key
from anystore_cli.util.serialize import to_store
from anystore_cli.util.uri import clean_dict, mask_uri


def _mask_secrets(value: Any, name: str = "") -> Any:
    """`value` masked as the command line shows settings (see `store.options.mask_secrets`)."""
    from anystore_cli.store.options import mask_secrets

    return mask_secrets(value, name)


class BaseStore(ListingMixin, BatchMixin, BackendContract, StoreModel):
    """The store interface, whatever the backend."""

    def check_ttl(self, ttl: int | None = None, what: str = "`--ttl`") -> None:
        """Refuse an expiry this store cannot honour: the command line's rule. (The library face
        writes without expiry there, as anystore's does.)

        Args:
            ttl: The ttl asked for (0 or None: none, then the store's own `default_ttl` is checked)
            what: What asked for it, for the message

        Raises:
            InvalidData: If a ttl is asked for or configured and the backend cannot expire keys
        """
        if self.capabilities.ttl:
            return
        if not ttl and self.default_ttl:
            ttl, what = self.default_ttl, "`default_ttl`"
        if ttl:
            raise InvalidData(f"{what} on store `{mask_uri(self.uri)}`: it cannot expire keys (refused, not ignored)")

    def __repr__(self) -> str:
        """The store's fields, with the uri's password and secret-looking backend options masked."""
        fields = []
        for name in self.model_fields:
            value = getattr(self, name)
            if name == "uri":
                value = mask_uri(value)
            elif name == "backend_config" and isinstance(value, dict):
                value = _mask_secrets(value)
            fields.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(fields)})"

    # ---- key handling -------------------------------------------------------------------

    def _key(self, key: Any) -> str:
        return normalize_key(key)

    def _get_key_prefix(self) -> str:
        return ""

    def get_key(self, key: Any, http_quoted: bool | None = False) -> str:
        """Return the backend's full key for `key` (the full uri on file-like stores)."""
        prefix = self._get_key_prefix()
        key = self._key(key)
        return f"{prefix}/{key}" if prefix else key

    def ensure_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Merge the store's `backend_config` with `kwargs` (which win), dropping empty values."""
        return {**clean_dict(self.backend_config), **clean_dict(kwargs)}

    # ---- public api -----------------------------------------------------------------------

    def get(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Any:
        """Get a value from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent,
                overrides store settings
            serialization_mode: Deserialize the result ("auto", "raw", "pickle", "json"),
                overrides store settings
            deserialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic model to validate with (ignores the two above)
            **kwargs: Passed to the backend (`mode="r"` reads text)

        Returns:
            The (deserialized) value, or None for a missing key when not raising
        """
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        key = self._key(key)
        # per-call options only: backend_config configures the backend, not each read
        kwargs = clean_dict(kwargs)
        with self._errors(key):
            value = self._read(key, raise_on_nonexist=raise_on_nonexist, **kwargs)
        if value is None:
            return None
        return self._decoder(serialization_mode, deserialization_func, model)(value)

    @check_readonly
    def pop(self, key: Any, *args: Any, **kwargs: Any) -> Any:
        """Retrieve the value for the given key and remove it (atomically where the backend can).

        Args:
            key: Key relative to store base uri
            *args: Any valid arguments for the store's `get` function
            **kwargs: Any valid arguments for the store's `get` function

        Returns:
            The (deserialized) value
        """
        names = ("raise_on_nonexist", "serialization_mode", "deserialization_func", "model")
        options = dict(zip(names, args, strict=False))
        options.update({k: v for k, v in kwargs.items() if k in names})
        raise_on_nonexist = options.get("raise_on_nonexist")
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        try:
            value = self.pop_bytes(key)
        except DoesNotExist:
            if raise_on_nonexist:
                raise
            return None
        return self._decoder(
            options.get("serialization_mode"), options.get("deserialization_func"), options.get("model")
        )(value)

    @check_readonly
    def pop_bytes(self, key: Any) -> bytes:
        """Remove a key and return its stored bytes as they are (no serialization mode, function
        or model applied), atomically where the backend can.

        Raises:
            DoesNotExist: The key is not there
        """
        if self.capabilities.append_only:
            raise ReadOnlyError(self._describe(str(key), "cannot delete from an append-only store"))
        key = self._key(key)
        with self._errors(key):
            return self._pop(key)

    @check_readonly
    def delete(self, key: Any, ignore_errors: bool = False) -> bool:
        """Delete the content at the given key.

        Args:
            key: Key relative to store base uri
            ignore_errors: Ignore exceptions if deletion fails

        Returns:
            True if the key existed
        """
        try:
            key = self._key(key)
            if self.capabilities.append_only:
                raise ReadOnlyError(self._describe(key, "cannot delete from an append-only store"))
            with self._errors(key):
                return bool(self._delete(key))
        except Exception:
            if not ignore_errors:
                raise
            return False

    def stream(
        self,
        key: Any,
        raise_on_nonexist: bool | None = None,
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, None]:
        """Stream a value line by line from the store for the given key.

        Args:
            key: Key relative to store base uri
            raise_on_nonexist: Raise `DoesNotExist` if key doesn't exist or stay silent
            serialization_mode: Deserialize each line ("auto", "raw", "pickle", "json")
            deserialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic model to validate each line with
            **kwargs: Passed to the backend (`mode="r"` yields text lines)

        Yields:
            The (deserialized) values line by line

        Raises:
            DoesNotExist: If key doesn't exist and raise_on_nonexist=True
        """
        if raise_on_nonexist is None:
            raise_on_nonexist = self.raise_on_nonexist
        key = self._key(key)
        read = self._decoder(serialization_mode, deserialization_func, model)
        try:
            with self._errors(key):
                for line in self._stream(key, mode=kwargs.get("mode", DEFAULT_MODE)):
                    yield read(line)
        except DoesNotExist:
            if raise_on_nonexist:
                raise
            return

    @check_readonly
    def put(
        self,
        key: Any,
        value: Any,
        serialization_mode: str | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        ttl: int | None = None,
        no_clobber: bool = False,
        **kwargs: Any,
    ) -> None:
        """Store a value at the given key.

        Args:
            key: Key relative to store base uri
            value: The content
            serialization_mode: Serialize value prior to storing ("auto", "raw", "pickle",
                "json"), overrides store settings
            serialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic serialization model
            ttl: Time to live (in seconds) for that key if the backend supports it
            no_clobber: Raise `AlreadyExists` instead of overwriting an existing key
        """
        if value is None and not self.store_none_values:
            return
        key = self._key(key)
        data = to_store(
            value,
            serialization_mode or self.serialization_mode,
            serialization_func=serialization_func or self.serialization_func,
            model=model or self.model,
        )
        ttl = ttl or self.default_ttl or None
        self._check_append(key, no_clobber)
        with self._errors(key):
            self._write(key, data, ttl=ttl, no_clobber=no_clobber)

    def _check_append(self, key: str, no_clobber: bool) -> None:
        if self.capabilities.append_only and not no_clobber and self._exists(key):
            raise ReadOnlyError(self._describe(key, "already exists in an append-only store"))

    def _check_appends(self, keys: list[str]) -> None:
        """Refuse a batch of an append-only store that would overwrite a key (a backend whose
        `_put_many` checks under its own lock overrides this with nothing)."""
        for key in keys:
            self._check_append(key, False)

    @check_readonly
    def put_stream(self, key: Any, source: IO[bytes], ttl: int | None = None, no_clobber: bool = False) -> int:
        """Store the bytes of a binary stream at `key`, in chunks where the backend can.

        A failed or interrupted write leaves the old value (or no key).

        Args:
            key: Key relative to store base uri
            source: Binary file-like object to read from
            ttl: Time to live (in seconds) if the backend supports it
            no_clobber: Raise `AlreadyExists` instead of overwriting an existing key

        Returns:
            The number of bytes stored
        """
        key = self._key(key)
        self._check_append(key, no_clobber)
        with self._errors(key):
            return self._write_stream(key, source, ttl=ttl or self.default_ttl or None, no_clobber=no_clobber)

    def exists(self, key: Any) -> bool:
        """Check if the given `key` exists"""
        key = self._key(key)
        with self._errors(key):
            return bool(self._exists(key))

    @check_readonly
    def server_copy(self, source: BaseStore, key: Any, size: int | None = None, ttl: int | None = None) -> int | None:
        """Copy `key` from `source` to this store on the server, where the backend can: S3 to S3
        on the same endpoint (CopyObject), tables of one SQL database (INSERT ... SELECT), Redis
        databases of one server (COPY).

        Args:
            source: The store to copy from
            key: The key (the same in both stores)
            size: The value's size if known (saves a request on S3)
            ttl: Time to live (in seconds) if the backend supports it

        Returns:
            The bytes copied, or None when no server-side copy is possible (nothing was done)
        """
        key = self._key(key)
        self._check_append(key, False)
        with self._errors(key):
            return self._server_copy(source, key, size, ttl or self.default_ttl or None)

    def iterate_values(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        **kwargs: Any,
    ) -> Generator[Any, None, None]:
        """Iterate through all the values in the store based on given criteria.

        Example:
            ```python
            yield from store.iterate_values(prefix="dataset1", glob="*.pdf", model=MyModel)
            ```

        Returns:
            The matching values as a generator of any (deserialized) type
        """
        keys = self.iterate_keys(prefix, exclude_prefix, glob)
        for _, value in self.get_many(keys, serialization_mode, deserialization_func, model):
            if value is not None or self.store_none_values:
                yield value

    def checksum(self, key: Any, algorithm: str | None = DEFAULT_HASH_ALGORITHM, **kwargs: Any) -> str:
        """Get the checksum for the value at the given key, streaming the value.

        Args:
            key: Key relative to store base uri
            algorithm: Checksum algorithm from `hashlib` (default: "sha1")

        Returns:
            The hex digest
        """
        from anystore_cli.util.checksum import get_hasher

        get_hasher(algorithm)  # unknown algorithm: InvalidData before any I/O
        key = self._key(key)
        with self._errors(key):
            return self._checksum(key, algorithm or DEFAULT_HASH_ALGORITHM)

    def open(self, key: Any, mode: str | None = DEFAULT_MODE, **kwargs: Any) -> Any:
        """Open the given key similar to built-in `open()`.

        Writes become visible only when the handle is closed without an error.

        Example:
            ```python
            with store.open("foo/bar.txt", "r") as fh:
                text = fh.read()
            ```

        Args:
            key: Key relative to store base uri
            mode: Open mode ("rb", "wb", "r", "w")

        Returns:
            A context manager giving the file-like handle
        """
        mode = mode or DEFAULT_MODE
        writing = "w" in mode or "a" in mode
        if self.readonly and writing:
            raise ReadOnlyError(f"Store `{mask_uri(self.uri)}` is configured readonly")
        key = self._key(key)
        if writing:
            self._check_append(key, False)
        return _GuardedOpen(self, key, mode)

    @check_readonly
    def touch(self, key: Any, **kwargs: Any) -> datetime:
        """Store the current timestamp at the given key.

        Args:
            key: Key relative to store base uri
            **kwargs: Any valid arguments for the store's `put` function

        Returns:
            The timestamp
        """
        now = datetime.now()
        self.put(key, now, **kwargs)
        return now


class _GuardedOpen:
    """Context manager around a backend's `_open` that translates its errors."""

    def __init__(self, store: BaseStore, key: str, mode: str) -> None:
        self.store, self.key, self.mode = store, key, mode
        self._cm: Any = None

    def __enter__(self) -> IO[Any]:
        with self.store._errors(self.key):
            self._cm = self.store._open(self.key, mode=self.mode)
            return self._cm.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        with self.store._errors(self.key):
            return self._cm.__exit__(*exc)


def as_backend(store: Any) -> Any:
    """The backend object behind a library store (`anystore_cli.core`, which wraps one); a
    backend, a uri or anything else passes unchanged."""
    unwrap = getattr(store, "_get_backend", None)
    return unwrap() if unwrap is not None else store


def copy_value(source: BaseStore, key: str, target: BaseStore, ttl: int | None = None, size: int | None = None) -> int:
    """Copy one key's bytes from `source` to `target`: on the server where the backends can,
    else streaming through this process; return the bytes copied."""
    copied = target.server_copy(source, key, size=size, ttl=ttl)
    if copied is not None:
        return copied
    with source.open(key, "rb") as handle:
        return target.put_stream(key, handle, ttl=ttl)


__all__ = [
    "INFO_BATCH",
    "KEY_BATCH",
    "BaseStore",
    "Capabilities",
    "KeyEntry",
    "TTLMixin",
    "VirtualIOMixin",
    "as_backend",
    "check_readonly",
    "copy_stream",
    "copy_value",
]
