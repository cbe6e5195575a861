"""Mirror one store to another (the library's `mirror`), on the backend layer's copy engine."""

from __future__ import annotations

from typing import Any

from anystore_cli.backend.mirror import MirrorStatus as MirrorStatus  # noqa: PLC0414 - part of the API


def _backend_of(store: Any) -> Any:
    """The byte-level backend of a library store; uris and backends pass unchanged."""
    from anystore_cli.core.store.base import BaseStore

    if isinstance(store, BaseStore):
        return store._get_backend()
    return store


def mirror(source: Any, target: Any, *args: Any, **kwargs: Any) -> MirrorStatus:
    """Copy every matching key from `source` to `target`, streaming each value.

    Example:
        ```python
        status = mirror(get_store("./data"), get_store("s3://bucket/data"), glob="**/*.json")
        print(status.mirrored, status.skipped, status.failed)
        ```

    Args:
        source: Store (or uri) to read from
        target: Store (or uri) to write to
        *args: Filters and options, as `anystore_cli.backend.mirror.mirror` takes them (glob,
            prefix, exclude_prefix, overwrite, workers, dry_run, ...)
        **kwargs: The same, by name

    Returns:
        The counts of mirrored, skipped and failed keys
    """
    from anystore_cli.backend.mirror import mirror as run_mirror

    return run_mirror(_backend_of(source), _backend_of(target), *args, **kwargs)
