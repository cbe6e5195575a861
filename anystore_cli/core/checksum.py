"""The library face's `checksum` module: anystore_cli.util.checksum under its anystore name."""

from anystore_cli.util.checksum import (  # noqa: F401
    CHUNK_SIZE,
    DEFAULT_HASH_ALGORITHM,
    get_hasher,
    make_checksum,
    make_data_checksum,
    make_signature_key,
)
