"""The library's `ZipStore`: A zip archive as an append-only store: keys are added, never changed or deleted."""

from __future__ import annotations

from typing import ClassVar

from anystore_cli.core.store.base import BaseStore


class ZipStore(BaseStore):
    """A zip archive as an append-only store: keys are added, never changed or deleted"""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.zip:ZipStore"
