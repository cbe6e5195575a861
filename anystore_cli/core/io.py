"""The library face's `io` module: anystore_cli.store.io under its anystore name."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from anystore_cli.core.logging import get_logger
from anystore_cli.store.io import (  # noqa: F401
    CHUNK_SIZE,
    DEFAULT_MODE,
    DEFAULT_WRITE_MODE,
    OPEN_OPTIONS,
    S3_BLOCK_SIZE,
    S3_CONNECT_TIMEOUT,
    S3_PROTOCOLS,
    S3_READ_TIMEOUT,
    S3_RETRIES,
    SmartHandler,
    T,
    Uri,
    copy_stream,
    get_filesystem,
    is_file_object,
    remote_defaults,
    smart_open,
    smart_read,
    smart_stream,
    smart_stream_json,
    smart_write,
    smart_write_json,
)
from anystore_cli.util.uri import ensure_uri, mask_uri


def logged_items(
    items: Iterable[T],
    action: str,
    chunk_size: int | None = 10_000,
    uri: Any | None = None,
    item_name: str | None = None,
    **log_kwargs: Any,
) -> Iterator[T]:
    """Yield `items` unchanged, logging progress every `chunk_size` items and a total at the end.

    Example:
        ```python
        for item in logged_items(items, "Read", uri="/tmp/foo.csv"):
            ...
        ```

    Args:
        items: Any iterable
        action: What is done to the items, for the log ("Read", "Write")
        chunk_size: Log every this many items
        uri: The uri the items come from or go to (only logged)
        item_name: Name of an item (default: the class name of the first one)
        **log_kwargs: More fields for the log lines
    """
    log = get_logger(__name__)
    chunk_size = chunk_size or 10_000
    if uri is not None and not is_file_object(uri):
        uri = mask_uri(ensure_uri(uri))
    count = 0
    for count, item in enumerate(items, 1):
        if item_name is None:
            item_name = item.__class__.__name__.title()
        if count % chunk_size == 0:
            log.info(f"{action} `{item_name}` {count} ...", uri=uri, **log_kwargs)
        yield item
    if count:
        log.info(f"{action} {count} `{item_name}s`: Done.", uri=uri, **log_kwargs)
