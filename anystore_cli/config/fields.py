"""The one table of settings: name, kind, default, environment names, help.

Both faces are built from it: the command line's plain `anystore_cli.config.settings.Settings`
(no pydantic: the command line must start fast) and the library's pydantic-settings class
`anystore_cli.core.settings.Settings`. A field added here exists in both, with the same
environment variables and defaults.

Environment names: every field is `ANYSTORE_<NAME>`; `aliases` are further `ANYSTORE_*`
names read by both faces; `compat_env` are the unprefixed names of the original library
(`DEBUG`, `LOG_LEVEL`, ...), read by the library face only, as the original read them: the
command line does not take a variable as general as `DEBUG` for its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "ANYSTORE_"

KINDS = ("text", "optional_text", "mode", "bool", "int", "dict")
"""`text` a string; `optional_text` a string or None (empty is None); `mode` a serialization
mode ("auto", "raw", "pickle", "json"); `bool` true/false/yes/no/1/0; `int` a whole number;
`dict` a JSON object (or `__`-nested variables)"""


@dataclass(frozen=True)
class SettingField:
    """One setting."""

    name: str
    kind: str
    default: Any
    help: str
    aliases: tuple[str, ...] = ()
    compat_env: tuple[str, ...] = ()
    factory: Callable[[], Any] | None = None
    """Computes the default when set (the default is then None)"""

    @property
    def env(self) -> str:
        """The field's own environment variable (`ANYSTORE_URI`)."""
        return PREFIX + self.name.upper()

    @property
    def env_names(self) -> tuple[str, ...]:
        """The `ANYSTORE_*` variables both faces read for this field, first the field's own."""
        return (self.env, *self.aliases)

    def make_default(self) -> Any:
        """The default value (a fresh one for mutable defaults)."""
        if self.factory is not None:
            return self.factory()
        return dict(self.default) if isinstance(self.default, dict) else self.default


def cpu_count() -> int:
    """The number of CPUs (at least 1): the default number of worker threads."""
    return os.cpu_count() or 1


FIELDS: tuple[SettingField, ...] = (
    SettingField("uri", "text", ".anystore", "Default store base uri"),
    SettingField("yaml_uri", "optional_text", None, "Load a (remote) store configuration (yaml) from this uri"),
    SettingField("json_uri", "optional_text", None, "Load a (remote) store configuration (json) from this uri"),
    SettingField(
        "serialization_mode", "mode", "auto", 'Default serialization mode, one of ("auto", "pickle", "json", "raw")'
    ),
    SettingField("raise_on_nonexist", "bool", True, "Raise `DoesNotExist` for missing keys (False: return None)"),
    SettingField("default_ttl", "int", 0, "Key ttl for backends that support it (e.g. redis, sql), 0 for none"),
    SettingField(
        "backend_config", "dict", {}, "Backend options: `ANYSTORE_BACKEND_CONFIG__NAME=VALUE` (`__` nests dicts)"
    ),
    SettingField("readonly", "bool", False, "Open every store read-only"),
    SettingField("allow_pickle", "bool", True, 'Let "auto" mode unpickle values that start with a pickle header'),
    SettingField("debug", "bool", False, "Enable debug mode (tracebacks)", compat_env=("DEBUG",)),
    SettingField(
        "redis_debug",
        "bool",
        False,
        "Accepted for compatibility: the original used fakeredis with it; stores here always talk to the server",
        compat_env=("REDIS_DEBUG",),
    ),
    SettingField("log_json", "bool", False, "Enable json log format", compat_env=("LOG_JSON",)),
    SettingField("log_level", "text", "info", "Log level (debug, info, warning, error)", compat_env=("LOG_LEVEL",)),
    SettingField(
        "use_cache",
        "bool",
        True,
        "Globally enable or disable caching (used in @anycache decorator)",
        aliases=("ANYSTORE_CACHE",),
        compat_env=("CACHE", "USE_CACHE"),
    ),
    SettingField(
        "worker_threads",
        "int",
        None,
        "Default number of threads to use for workers (default: the number of CPUs)",
        compat_env=("WORKER_THREADS",),
        factory=cpu_count,
    ),
    SettingField(
        "worker_heartbeat", "int", 15, "Default heartbeat for worker logging", compat_env=("WORKER_HEARTBEAT",)
    ),
)
"""Every setting, in the order `settings` shows them"""

BY_NAME: dict[str, SettingField] = {field.name: field for field in FIELDS}

NOT_SETTINGS = frozenset({"LOCK_TOKEN", "LOCK_NAME", "COMPLETE", "SERVE_TOKEN", "TESTING", "UNSAFE_URIS"})
"""`ANYSTORE_*` variables that are no settings fields but are not typos either: set by `lock`
for its COMMAND, read by shell completion and `serve`, and settings of the anystore library's
later line that this tool has no use for (a program may run both). `ANYSTORE_TEST_*` is left
to test-suites."""


def known_variables() -> dict[str, str]:
    """Every `ANYSTORE_*` variable that sets a field: variable -> field name."""
    return {variable: field.name for field in FIELDS for variable in field.env_names}
