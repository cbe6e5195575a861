"""Temporary local stores for processing remote data with tools that need local files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Generator
from typing import Any

from anystore_cli.core.io import copy_stream, smart_open


class VirtualStore:
    """A temporary local folder store; `download` copies data into it."""

    def __init__(self, prefix: str | None = None, keep: bool = False) -> None:
        from anystore_cli.backend.registry import get_store

        self.path = tempfile.mkdtemp(prefix=prefix or "anystore-")
        self.keep = keep
        self.store = get_store(uri=self.path, serialization_mode="raw", raise_on_nonexist=True)

    def download(self, uri: Any, store: Any | None = None) -> str:
        """Copy `uri` (a key of `store`, or any uri when no store is given) into the temporary store.

        Returns:
            The key of the local copy
        """
        key = uuid.uuid4().hex
        if store is not None:
            with store.open(uri, "rb") as source:
                self.store.put_stream(key, source)
        else:
            with smart_open(uri, "rb") as source, self.store.open(key, "wb") as target:
                copy_stream(source, target)
        return key

    def local_path(self, key: str) -> str:
        """The local file path of a key."""
        return os.path.join(self.path, key)

    def cleanup(self) -> None:
        """Remove the temporary folder."""
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> VirtualStore:
        return self

    def __exit__(self, *_: Any) -> None:
        if not self.keep:
            self.cleanup()


def get_virtual(prefix: str | None = None, keep: bool = False) -> VirtualStore:
    """Return a new temporary local store (use as a context manager to remove it after)."""
    return VirtualStore(prefix=prefix, keep=keep)


@contextlib.contextmanager
def open_virtual(uri: Any, store: Any | None = None, **kwargs: Any) -> Generator[str, None, None]:
    """Copy `uri` (or a key of `store`) to a temporary local file and yield its path.

    Example:
        ```python
        with open_virtual("s3://bucket/data.pdf") as path:
            subprocess.run(["pdftotext", path])
        ```
    """
    with get_virtual(**kwargs) as tmp:
        key = tmp.download(uri, store)
        yield tmp.local_path(key)
