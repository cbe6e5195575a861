"""The library face's `exceptions` module: anystore_cli.errors under its anystore name."""

from anystore_cli.errors import (  # noqa: F401
    AlreadyExists,
    AnystoreError,
    ChecksumMismatch,
    DoesNotExist,
    InvalidData,
    InvalidKey,
    InvalidUri,
    MissingDependency,
    ReadOnlyError,
    StoreError,
    StoreNotFound,
)
