"""The backend behind a custom store: a store class that implements the primitives itself."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from typing import Any

from anystore_cli.store.base import BaseStore as BackendStore
from anystore_cli.store.entry import BaseStats


class CustomBackend(BackendStore):
    """Routes the byte-level layer's primitives to the methods of a library store object.

    Key validation, serialization, read-only checks and error translation stay in the byte
    layer, so a custom store behaves like the built-in ones.
    """

    def __init__(self, face: Any, **fields: Any) -> None:
        super().__init__(**fields)
        self._face = face

    def _get_key_prefix(self) -> str:
        return self._face._get_key_prefix()

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        value = self._face._read(key, raise_on_nonexist, **kwargs)
        if value is None and raise_on_nonexist:
            raise self._missing(key)
        if isinstance(value, str) and "b" in kwargs.get("mode", "rb"):
            return value.encode()
        return value

    def _write(self, key: str, value: bytes, ttl: int | None = None, no_clobber: bool = False, **kwargs: Any) -> None:
        self._no_clobber_check(key, no_clobber)
        self._face._write(key, value, ttl=ttl, **kwargs)

    def _delete(self, key: str) -> bool:
        existed = self._face._exists(key)
        self._face._delete(key)
        return bool(existed)

    def _exists(self, key: str) -> bool:
        return bool(self._face._exists(key))

    def _info(self, key: str) -> BaseStats:
        stats = self._face._info(key)
        return BaseStats(**stats.model_dump(include={"created_at", "updated_at", "size"}))

    def _iterate_keys(
        self, prefix: str | None = None, exclude_prefix: str | None = None, glob: str | None = None
    ) -> Iterator[str]:
        yield from self._face._iterate_keys(prefix, exclude_prefix, glob)

    @contextlib.contextmanager
    def _open(self, key: str, mode: str = "rb", **kwargs: Any) -> Generator[Any, None, None]:
        with self._face._open(key, mode=mode, **kwargs) as handle:
            yield handle

    def _stream(self, key: str, mode: str = "rb", **kwargs: Any) -> Iterator[Any]:
        yield from self._face._stream(key, mode=mode, **kwargs)
