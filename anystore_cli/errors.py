"""Exception types, and the two tables that turn them into statuses.

Every error the core raises on purpose is one of these types. An error knows the key and the
store (its uri, password masked) it is about, where the raiser knew them: `exc.key`,
`exc.store`. The command line's exit status comes from `EXIT_STATUS` and the server's HTTP
status from `HTTP_STATUS`; the `anystore+http` client reads a status back with `error_for_status`.
No caller decides by an error's message.
"""

from __future__ import annotations

from typing import Any


class ErrorText(str):
    """An error message that remembers the key and store it names.

    The store layer builds its messages with this (`BaseStore._describe`), so every error raised
    with such a message carries `key` and `store` without each raiser passing them again."""

    key: str | None
    store: str | None

    def __new__(cls, text: str, key: str | None = None, store: str | None = None) -> ErrorText:
        """The message `text`, about `key` in `store`."""
        made = super().__new__(cls, text)
        made.key = key
        made.store = store
        return made


class AnystoreError(Exception):
    """Base class of all errors raised by anystore_cli.core.

    Attributes:
        key: the key the error is about, or None (a store-wide error, or not known)
        store: the store's uri with any password masked, or None
    """

    def __init__(self, *args: Any, key: str | None = None, store: str | None = None) -> None:
        super().__init__(*args)
        text = args[0] if args else None
        self.key = key if key is not None else getattr(text, "key", None)
        self.store = store if store is not None else getattr(text, "store", None)

    def __reduce__(self) -> Any:
        # keep key and store across pickling (errors cross process pools)
        return (_rebuild, (type(self), self.args, self.key, self.store))


def _rebuild(cls: type[AnystoreError], args: tuple[Any, ...], key: str | None, store: str | None) -> AnystoreError:
    return cls(*args, key=key, store=store)


class DoesNotExist(AnystoreError):
    """The key does not exist in the store."""


class AlreadyExists(AnystoreError):
    """The key already exists and the caller asked not to overwrite it."""


class ReadOnlyError(AnystoreError):
    """The store (or backend) refuses writes."""


class InvalidKey(AnystoreError, ValueError):
    """The key is empty, escapes the store or holds a forbidden character."""


class InvalidUri(AnystoreError, ValueError):
    """The store URI cannot be understood (bad form or unknown scheme)."""


class InvalidData(AnystoreError, ValueError):
    """Input data is malformed (bad JSON, a bad dump line, a wrong type)."""


class StoreError(AnystoreError):
    """The backend failed: unreachable, refused credentials, permission denied."""


class StoreNotFound(StoreError):
    """The store itself is not there (a missing folder, archive or bucket): listing it is an
    error, never an empty listing; a write may create it."""


class MissingDependency(StoreError, ImportError):
    """The backend needs a package that is not installed."""


class ChecksumMismatch(AnystoreError):
    """A value's digest differs from the one expected."""


class UsageProblem(Exception):
    """The command line is wrong in a way the option parser cannot see (exit status 2)."""


# ---- exit statuses (docs/exit-status.md) ------------------------------------------------------

EXIT_OK = 0
EXIT_NO = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_INTERRUPTED = 130

EXIT_STATUS: dict[type[BaseException], int] = {
    # 1: the answer is no
    DoesNotExist: EXIT_NO,
    AlreadyExists: EXIT_NO,
    ChecksumMismatch: EXIT_NO,
    # 2: usage (bad option, uri, scheme or key) and bad input data; the option parser's own
    # usage errors (click exceptions) also leave with 2 (see `anystore_cli.cli.app`)
    UsageProblem: EXIT_USAGE,
    InvalidKey: EXIT_USAGE,
    InvalidUri: EXIT_USAGE,
    InvalidData: EXIT_USAGE,
    # 3: the store failed
    ReadOnlyError: EXIT_STORE,
    StoreNotFound: EXIT_STORE,
    MissingDependency: EXIT_STORE,
    StoreError: EXIT_STORE,
    AnystoreError: EXIT_STORE,
    OSError: EXIT_STORE,
    # 130: interrupted
    KeyboardInterrupt: EXIT_INTERRUPTED,
}
"""Exception type -> exit status; the most specific type of an exception's MRO wins."""

DEFAULT_EXIT_STATUS = EXIT_STORE
"""For exceptions of no type above (an unexpected failure: reported in one line, status 3)."""


# ---- HTTP statuses (`anystore serve` and its client) ------------------------------------------

HTTP_STATUS: dict[type[BaseException], int] = {
    # the first type listed for a status is the one the client raises for it
    InvalidKey: 400,
    InvalidUri: 400,
    InvalidData: 400,
    UsageProblem: 400,
    ReadOnlyError: 403,
    DoesNotExist: 404,
    AlreadyExists: 412,
    ChecksumMismatch: 412,
    StoreError: 502,
    StoreNotFound: 502,
    AnystoreError: 502,
    OSError: 502,
    MissingDependency: 503,
}
"""Exception type -> HTTP status of the server's answer; the most specific type of an
exception's MRO wins. An unreachable store is 503 whatever its type (the server decides that)."""

DEFAULT_HTTP_STATUS = 502
"""For exceptions of no type above: the store failed."""

HTTP_STATUS_ALSO: dict[int, type[AnystoreError]] = {409: AlreadyExists, 405: ReadOnlyError}
"""Statuses the client reads as one of the types although the table does not give them:
409 Conflict is how other servers say "exists", 405 is a server that takes no writes."""


def _lookup(table: dict[type[BaseException], int], exc: BaseException, default: int) -> int:
    for cls in type(exc).__mro__:
        status = table.get(cls)
        if status is not None:
            return status
    return default


def exit_status(exc: BaseException) -> int:
    """The command line's exit status for an exception, from `EXIT_STATUS`."""
    return _lookup(EXIT_STATUS, exc, DEFAULT_EXIT_STATUS)


def http_status(exc: BaseException) -> int:
    """The server's HTTP status for an exception, from `HTTP_STATUS`."""
    return _lookup(HTTP_STATUS, exc, DEFAULT_HTTP_STATUS)


def error_for_status(status: int) -> type[AnystoreError] | None:
    """The error type a 4xx HTTP status stands for (the first type `HTTP_STATUS` gives it), or
    None for any other status: the caller reports the store failing (a 5xx says only that the
    server's store failed, not why)."""
    if not 400 <= status < 500:
        return None
    for cls, code in HTTP_STATUS.items():
        if code == status and issubclass(cls, AnystoreError):
            return cls
    return HTTP_STATUS_ALSO.get(status)
