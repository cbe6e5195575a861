"""The library face's `serialize` module: anystore_cli.util.serialize under its anystore name."""

from anystore_cli.util.serialize import (  # noqa: F401
    MODES,
    Mode,
    NotJsonSerializable,
    check_mode,
    from_store,
    to_store,
)
