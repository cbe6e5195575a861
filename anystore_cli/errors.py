"""Exception types of the core library.

Every error the core raises on purpose is one of these types; the command line maps each
type to one exit status (see `anystore_cli.cli.app`).
"""


class AnystoreError(Exception):
    """Base class of all errors raised by anystore_cli.core."""


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
