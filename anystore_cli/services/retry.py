"""Attempts again after a transient failure, and the failures of one key that are counted."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from anystore_cli.errors import AnystoreError, MissingDependency, StoreError, StoreNotFound

RETRIES = 3
"""Attempts per key"""
RETRY_DELAY = 0.2
"""Seconds before the second attempt; doubles after each"""
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (StoreError, OSError, ConnectionError, TimeoutError)
"""Failures worth another attempt (a missing key, a read-only target or bad data are not)"""
KEY_ERRORS: tuple[type[BaseException], ...] = (AnystoreError, OSError, ConnectionError, TimeoutError, ValueError)
"""Failures of one key that are counted while the others go on"""


def is_transient(exc: BaseException) -> bool:
    """Tell whether a failed operation is worth another attempt."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, (MissingDependency, StoreNotFound))


def with_retries(func: Callable[[], Any], retries: int = RETRIES, delay: float | None = None) -> Any:
    """Call `func`, again after a transient failure (up to `retries` attempts in all, backing off).

    Raises:
        The last error, or the first one that is not transient
    """
    delay = RETRY_DELAY if delay is None else delay
    for attempt in range(retries):
        try:
            return func()
        except BaseException as exc:
            if attempt == retries - 1 or not is_transient(exc):
                raise
            time.sleep(delay * 2**attempt)
    return None


def error_message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, AnystoreError) else f"{type(exc).__name__}: {exc}"
