"""The byte-level backends: one plain class per backend, free of pydantic.

The command line talks to these directly (`anystore_cli.backend.registry.get_store`); the
library face in `anystore_cli.core` wraps the same objects in the original API's pydantic
models. Importing this package costs nothing: each module loads only when used.
"""
