"""What stores of files share, a local folder (`backends.local`) or any fsspec filesystem
(`backends.fs`): a key's full name is a path below the store's uri, and `backend_config`
configures the store (or its filesystem), never each call."""

from __future__ import annotations

from typing import Any

from anystore_cli.store.base import BaseStore
from anystore_cli.util.uri import clean_dict


class FileLikeStore(BaseStore):
    """The common base of the local and the fsspec store."""

    def ensure_kwargs(self, **kwargs: Any) -> dict[str, Any]:
        """Per-call options only: on stores of files `backend_config` configures the store or
        its filesystem, and is not passed to each call."""
        return clean_dict(kwargs)

    def _get_key_prefix(self) -> str:
        return self.uri


__all__ = ["FileLikeStore"]
