"""The store's batched reads and writes (`put_many`, `get_many`): keys checked and values
converted here, a batch at a time, then handed to the backend's `_put_many` / `_get_many` (one
transaction, pipeline or request per batch where the backend can)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Iterable
from typing import Any

from anystore_cli.store.contract import BackendContract, check_readonly
from anystore_cli.util.keys import all_canonical
from anystore_cli.util.serialize import from_store, to_store


class BatchMixin(BackendContract):
    """`put_many` and `get_many` (the host class supplies `_key`, the serialization fields and
    `_check_appends`)."""

    _key: Callable[[Any], str]
    _check_appends: Callable[[list[str]], None]
    serialization_mode: Any
    serialization_func: Any
    deserialization_func: Any
    model: Any
    default_ttl: Any
    store_none_values: Any

    @check_readonly
    def put_many(
        self,
        items: Iterable[tuple[Any, Any]] | dict[Any, Any],
        ttl: int | None = None,
        serialization_mode: str | None = None,
        serialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> int:
        """Store many values: the bulk path (one pipeline or transaction per batch where possible).

        Args:
            items: (key, value) pairs or a dict
            ttl: Time to live (in seconds) if the backend supports it
            serialization_mode: Serialize values prior to storing
            serialization_func: Specific function to use (ignores `serialization_mode`)
            model: Pydantic serialization model
            batch_size: Number of values written per batch

        Returns:
            The number of values stored
        """
        pairs = items.items() if isinstance(items, dict) else items
        mode = serialization_mode or self.serialization_mode
        func = serialization_func or self.serialization_func
        model = model or self.model
        ttl = ttl or self.default_ttl or None
        raw = mode == "raw" and func is None and model is None
        if raw and type(pairs) is list and _plain_keys(self):
            # the bulk loader's case, a list of (canonical key, bytes): each batch is checked in
            # a few C-level scans and handed on as it is; a batch that needs converting or
            # normalising takes the per-key path
            count, step = 0, max(batch_size, 1)
            for start in range(0, len(pairs), step):
                chunk = pairs[start : start + step]
                try:
                    keys = [key for key, _ in chunk]
                    values = [value for _, value in chunk]
                except (TypeError, ValueError):  # not pairs: the per-key path says what is wrong
                    keys = values = []
                if keys and set(map(type, values)) == {bytes} and all_canonical(keys):
                    count += self._flush_batch(chunk, ttl)
                else:
                    count += self._put_pairs(chunk, ttl, raw, mode, func, model, batch_size)
            return count
        return self._put_pairs(pairs, ttl, raw, mode, func, model, batch_size)

    def _put_pairs(
        self,
        pairs: Iterable[tuple[Any, Any]],
        ttl: int | None,
        raw: bool,
        mode: str | None,
        func: Callable | None,
        model: Any | None,
        batch_size: int,
    ) -> int:
        """`put_many`'s per-key path: normalise each key and convert each value, in batches."""
        count = 0
        batch: list[tuple[str, bytes]] = []
        for key, value in pairs:
            if value is None and not self.store_none_values:
                continue
            if raw and type(value) is bytes:  # nothing to convert
                batch.append((self._key(key), value))
            else:
                batch.append((self._key(key), to_store(value, mode, serialization_func=func, model=model)))
            if len(batch) >= batch_size:
                count += self._flush_batch(batch, ttl)
                batch = []
        if batch:
            count += self._flush_batch(batch, ttl)
        return count

    def _flush_batch(self, batch: list[tuple[str, bytes]], ttl: int | None) -> int:
        if self.capabilities.append_only:
            self._check_appends([key for key, _ in batch])
        with self._errors(batch[0][0] if len(batch) == 1 else None):
            self._put_many(batch, ttl=ttl)
        return len(batch)

    def _decoder(self, serialization_mode: str | None, deserialization_func: Callable | None, model: Any) -> Any:
        """What turns a stored value into the one `get` returns: the call's options, else the
        store's."""
        return functools.partial(
            from_store,
            serialization_mode=serialization_mode or self.serialization_mode,
            deserialization_func=deserialization_func or self.deserialization_func,
            model=model or self.model,
        )

    def get_many(
        self,
        keys: Iterable[Any],
        serialization_mode: str | None = None,
        deserialization_func: Callable | None = None,
        model: Any | None = None,
        batch_size: int = 1000,
    ) -> Generator[tuple[str, Any], None, None]:
        """Read many keys: the bulk path. Yields `(key, value)`, value None for missing keys."""
        read = self._decoder(serialization_mode, deserialization_func, model)
        batch: list[str] = []

        def _flush() -> Generator[tuple[str, Any], None, None]:
            with self._errors(None):
                results = list(self._get_many(batch))
            for key, value in results:
                yield key, None if value is None else read(value)

        for key in keys:
            batch.append(self._key(key))
            if len(batch) >= batch_size:
                yield from _flush()
                batch = []
        if batch:
            yield from _flush()


def _plain_keys(store: Any) -> bool:
    """Whether the store takes canonical keys as they are (its `_key` is the store's own)."""
    from anystore_cli.store.base import BaseStore

    return type(store)._key is BaseStore._key


__all__ = ["BatchMixin"]
