"""Temporary local stores, for processing remote data with tools that need local files."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Generator
from typing import IO, Any

from anystore_cli.store.io import copy_stream, smart_open


class VirtualStore:
    """A temporary local folder store; `download` copies data into it.

    Example:
        ```python
        with get_virtual() as tmp:
            key = tmp.download("s3://bucket/data.pdf")
            subprocess.run(["pdftotext", tmp.local_path(key)])
        ```
    """

    def __init__(self, prefix: str | None = None, keep: bool | None = False) -> None:
        from anystore_cli.core.store import get_store

        self.path = tempfile.mkdtemp(prefix=prefix or "anystore-")
        self.keep = bool(keep)
        self.store = get_store(uri=self.path, serialization_mode="raw", raise_on_nonexist=True)

    def download(self, uri: Any, store: Any | None = None) -> str:
        """Copy `uri` (a key of `store`, or any uri when no store is given) into the temporary store.

        Returns:
            The key of the local copy: the key in `store`, or the uri's file name
        """
        if store is not None:
            key = str(uri)
            with store.open(key, "rb") as source:
                self.store.put_stream(key, source)
            return key
        key = str(uri).rstrip("/").rsplit("/", 1)[-1] or "data"
        with smart_open(uri, "rb") as source, self.store.open(key, "wb") as target:
            copy_stream(source, target)
        return key

    def local_path(self, key: str) -> str:
        """The local file path of a key."""
        return os.path.join(self.path, key)

    def cleanup(self, path: Any | None = None) -> None:
        """Remove the temporary folder, or only `path` inside it."""
        target = os.path.join(self.path, str(path)) if path is not None else self.path
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        elif os.path.lexists(target):
            os.unlink(target)

    def __enter__(self) -> VirtualStore:
        return self

    def __exit__(self, *_: Any) -> None:
        if not self.keep:
            self.cleanup()


def get_virtual(prefix: str | None = None, keep: bool | None = False) -> VirtualStore:
    """Return a new temporary local store (use as a context manager to remove it after)."""
    return VirtualStore(prefix=prefix, keep=keep)


@contextlib.contextmanager
def open_virtual(
    uri: Any, store: Any | None = None, tmp_prefix: str | None = None, keep: bool | None = False
) -> Generator[IO[bytes], None, None]:
    """Copy `uri` (or a key of `store`) to a temporary local file and yield it opened for reading.

    Example:
        ```python
        with open_virtual("s3://bucket/data.pdf") as fh:
            parse(fh)
        ```
    """
    tmp = VirtualStore(tmp_prefix, keep)
    try:
        key = tmp.download(uri, store)
        with open(tmp.local_path(key), "rb") as handle:
            yield handle
    finally:
        if not keep:
            tmp.cleanup()
