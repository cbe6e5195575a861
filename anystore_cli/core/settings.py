"""Library settings: a pydantic-settings `BaseSettings`, as in the original library.

All settings can be set via environment variables in uppercase, prefixed `ANYSTORE_`
(`ANYSTORE_URI`, `ANYSTORE_SERIALIZATION_MODE`, ...); dictionaries use `__` as a separator:
`ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX=foo`. The command line reads the same variables through
the plain `anystore_cli.config.settings.Settings`, which loads no pydantic.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from anystore_cli.util.serialize import Mode


class Settings(BaseSettings):
    """`anystore` settings management using pydantic-settings.

    Note:
        All settings can be set via environment variables in uppercase, prepending
        `ANYSTORE_` (except for those with a given alias: `DEBUG`, `REDIS_DEBUG`, `LOG_JSON`,
        `LOG_LEVEL`, `WORKER_THREADS`, `WORKER_HEARTBEAT`, `CACHE`, as in the original).

        Backend config: Use `__` as a separator for dictionary content, e.g.:
        `ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX="foo"`
    """

    model_config = SettingsConfigDict(
        env_prefix="anystore_",
        env_nested_delimiter="__",
        nested_model_default_partial_update=True,
        populate_by_name=True,
        extra="forbid",
    )

    def __init__(self, **values: Any) -> None:
        from anystore_cli.config.settings import check_environment

        check_environment()  # the command line's rule: a typo of a field is refused, not ignored
        super().__init__(**values)

    uri: str = ".anystore"
    """Default store base uri"""

    yaml_uri: str | None = None
    """Load a (remote) store configuration (yaml) from this uri"""

    json_uri: str | None = None
    """Load a (remote) store configuration (json) from this uri"""

    serialization_mode: Mode = "auto"
    """Default serialization mode, one of ("auto", "pickle", "json", "raw")"""

    raise_on_nonexist: bool = True
    """Silence errors for non-existing keys"""

    default_ttl: int = 0
    """Key ttl for backends that support it (e.g. redis, sql)"""

    backend_config: dict[str, Any] = {}
    """Arbitrary backend config to pass through"""

    readonly: bool = False
    """Open every store read-only (`ANYSTORE_READONLY`)"""

    allow_pickle: bool = True
    """Let "auto" mode unpickle values that start with a pickle header (`ANYSTORE_ALLOW_PICKLE`)"""

    debug: bool = Field(default=False, validation_alias=AliasChoices("debug", "anystore_debug"))
    """Enable debug mode"""

    redis_debug: bool = Field(default=False, validation_alias=AliasChoices("redis_debug", "anystore_redis_debug"))
    """Accepted for compatibility: the original used fakeredis with it; stores here always talk to the server"""

    log_json: bool = Field(default=False, validation_alias=AliasChoices("log_json", "anystore_log_json"))
    """Enable json log format"""

    log_level: str = Field(default="info", validation_alias=AliasChoices("log_level", "anystore_log_level"))
    """Log level (debug, info, warning, error)"""

    worker_threads: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        validation_alias=AliasChoices("worker_threads", "anystore_worker_threads"),
    )
    """Default number of threads to use for workers"""

    worker_heartbeat: int = Field(
        default=15, validation_alias=AliasChoices("worker_heartbeat", "anystore_worker_heartbeat")
    )
    """Default heartbeat for worker logging"""

    use_cache: bool = Field(default=True, validation_alias=AliasChoices("cache", "use_cache", "anystore_cache"))
    """Globally enable or disable caching (used in @anycache decorator)"""
