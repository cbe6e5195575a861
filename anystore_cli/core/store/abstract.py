"""The primitives a custom backend implements (the original library's `AbstractBackend`).

A store class that subclasses `BaseStore` directly and implements these methods is a working
store: the public methods (`get`, `put`, `iterate_keys`, ...) call them through the same
byte-level layer the built-in backends use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import IO, Any


class AbstractBackend:
    """Base backend class with methods that all backends need to implement"""

    def _write(self, key: str, value: bytes | str, **kwargs: Any) -> None:
        """Write value with key to actual backend"""
        raise NotImplementedError

    def _read(self, key: str, raise_on_nonexist: bool | None = True, **kwargs: Any) -> Any:
        """Read key from actual backend"""
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        """Delete key from actual backend"""
        raise NotImplementedError

    def _stream(self, key: str, **kwargs: Any) -> Generator[Any, None, None]:
        """Stream key line by line from actual backend"""
        if kwargs.get("mode") not in ("rb", "r"):
            kwargs["mode"] = "rb"
        with self._open(key, **kwargs) as handle:
            while line := handle.readline():
                yield line

    def _exists(self, key: str) -> bool:
        """Check if the given key exists"""
        raise NotImplementedError

    def _info(self, key: str) -> Any:
        """Get metadata about key and its value (a `BaseStats`)"""
        raise NotImplementedError

    def _get_key_prefix(self) -> str:
        """Get backend specific key prefix"""
        return ""

    def _iterate_keys(
        self,
        prefix: str | None = None,
        exclude_prefix: str | None = None,
        glob: str | None = None,
    ) -> Generator[str, None, None]:
        """Backend specific key iterator"""
        raise NotImplementedError

    @contextlib.contextmanager
    def _open(self, key: str, **kwargs: Any) -> Generator[IO[Any], None, None]:
        """Get a io handler"""
        raise NotImplementedError
        yield  # pragma: no cover
