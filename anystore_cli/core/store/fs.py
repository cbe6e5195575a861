"""The library's `Store`: Store on any fsspec filesystem (S3, GCS, Azure, SFTP, http read-only, ...)."""

from __future__ import annotations

from typing import Any, ClassVar

from anystore_cli.core.store.base import BaseStore


class Store(BaseStore):
    """Store on any fsspec filesystem (S3, GCS, Azure, SFTP, http read-only, ...)"""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.fs:Store"

    def model_post_init(self, context: Any) -> None:
        """An http(s) store is read-only by itself."""
        super().model_post_init(context)
        if self.is_http:
            self.readonly = True

    def _make_backend(self) -> Any:
        if self.scheme == "file" and type(self) is Store:
            # a local folder: the plain-`os` backend (atomic writes, no fsspec import)
            from anystore_cli.backends.local import LocalStore as LocalBackend

            backend = LocalBackend(**self._backend_fields())
            backend.missing_is_empty = True  # as every backend of the face (see BaseStore)
            return backend
        return super()._make_backend()


class LocalStore(Store):
    """A local folder (plain `os`, atomic writes), a `Store` like any fsspec location."""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.local:LocalStore"
