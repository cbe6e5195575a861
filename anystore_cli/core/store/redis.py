"""The library's `RedisStore`: A store in Redis (or a Redis-compatible server), with ttl."""

from __future__ import annotations

from typing import ClassVar

from anystore_cli.core.store.base import BaseStore


class RedisStore(BaseStore):
    """A store in Redis (or a Redis-compatible server), with ttl"""

    backend_target: ClassVar[str | None] = "anystore_cli.backends.redis:RedisStore"
