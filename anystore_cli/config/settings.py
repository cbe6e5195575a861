"""Settings read from the environment (prefix `ANYSTORE_`, nested delimiter `__`).

Deliberately free of pydantic-settings (which costs a quarter of a second to import): the
fields, names and environment variables are those of the original library's settings, e.g.
`ANYSTORE_URI`, `ANYSTORE_SERIALIZATION_MODE`, `ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX=foo`.
"""

from __future__ import annotations

import os
from typing import Any

from anystore_cli.errors import InvalidData

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def parse_bool(value: Any) -> bool:
    """Parse a boolean the way environment variables spell it."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidData(f"Not a boolean: `{value}`")


def parse_value(text: str) -> Any:
    """Parse `text` as JSON when it parses, else keep it as text (for backend_config values)."""
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _parse_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidData(f"Not an integer: `{value}`") from exc


def _parse_optional_str(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _parse_mode(value: Any) -> str | None:
    from anystore_cli.util.serialize import check_mode

    return None if value in (None, "") else check_mode(str(value))


def _parse_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    parsed = parse_value(str(value))
    if not isinstance(parsed, dict):
        raise InvalidData(f"Not a JSON object: `{value}`")
    return parsed


NOT_SETTINGS = frozenset({"LOCK_TOKEN", "LOCK_NAME", "COMPLETE", "SERVE_TOKEN", "CACHE", "TESTING", "UNSAFE_URIS"})
"""`ANYSTORE_*` variables that are no settings fields of this tool but are not typos either:
set by `lock` for its COMMAND, read by shell completion and `serve`, the library's alias of
`use_cache`, and settings of the anystore library's later line that this tool has no use for
(a program may run both). `ANYSTORE_TEST_*` is left to test-suites."""


def check_environment(env: dict[str, str] | None = None) -> None:
    """Refuse an `ANYSTORE_*` variable that is no setting (`ANYSTORE_READONYL`), the same rule
    as for a config file's fields and `-b` options: a mistyped variable silently ignored sends
    writes elsewhere. Unknown `ANYSTORE_BACKEND_CONFIG__NAME` options are refused by the
    store's backend, which knows its options.

    Raises:
        InvalidData: Naming the variable, and the field it resembles if one does
    """
    import difflib

    if env is None:
        env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("ANYSTORE_")}
    fields = [name.upper() for name in Settings._fields]
    for variable in sorted(env):
        name = variable[len("ANYSTORE_") :]
        if name in fields or name in NOT_SETTINGS or name.startswith("TEST_"):
            continue
        if name.startswith("BACKEND_CONFIG__"):
            continue
        if name.startswith(("BACKEND_CONFIG", "BACKEND_CONF")):
            raise InvalidData(f"Unknown setting `{variable}`: backend options are ANYSTORE_BACKEND_CONFIG__NAME")
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.8)
        hint = f"did you mean ANYSTORE_{close[0]}?" if close else "not a setting of anystore"
        raise InvalidData(f"Unknown setting `{variable}` ({hint})")


class Settings:
    """The effective configuration: defaults, overridden by `ANYSTORE_*` environment variables,
    overridden by keyword arguments.

    Attributes:
        uri: Default store base uri (`.anystore`)
        yaml_uri: Load the store definition from this YAML uri
        json_uri: Load the store definition from this JSON uri
        serialization_mode: Default serialization mode ("auto")
        raise_on_nonexist: Raise `DoesNotExist` for missing keys (True)
        default_ttl: Default key ttl in seconds, 0 for none
        backend_config: Backend options (`ANYSTORE_BACKEND_CONFIG__KEY=VALUE`)
        readonly: Refuse writes
        allow_pickle: Let "auto" mode unpickle values (True, as the original library)
        debug: Show tracebacks
    """

    _fields: dict[str, tuple[Any, Any]] = {
        "uri": (".anystore", str),
        "yaml_uri": (None, _parse_optional_str),
        "json_uri": (None, _parse_optional_str),
        "serialization_mode": ("auto", _parse_mode),
        "raise_on_nonexist": (True, parse_bool),
        "default_ttl": (0, _parse_int),
        "backend_config": (None, _parse_dict),
        "readonly": (False, parse_bool),
        "allow_pickle": (True, parse_bool),
        "debug": (False, parse_bool),
        "redis_debug": (False, parse_bool),
        "log_json": (False, parse_bool),
        "log_level": ("info", str),
        "use_cache": (True, parse_bool),
        "worker_threads": (None, _parse_int),
        "worker_heartbeat": (15, _parse_int),
    }

    def __init__(self, **overrides: Any) -> None:
        unknown = [str(k) for k in overrides if k not in self._fields]
        if unknown:
            raise InvalidData(f"Unknown setting `{unknown[0]}` (known: {', '.join(self._fields)})")
        env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("ANYSTORE_")}
        check_environment(env)
        for name, (default, parse) in self._fields.items():
            value: Any = default
            env_name = f"ANYSTORE_{name.upper()}"
            if env_name in env:
                value = parse(env[env_name])
            if overrides.get(name) is not None:
                value = parse(overrides[name])
            if name == "backend_config":
                value = dict(value or {})
                nested = f"{env_name}__"
                for key, raw in env.items():
                    if key.startswith(nested) and len(key) > len(nested):
                        value[key[len(nested) :].lower()] = raw  # text: the backend's options type it
                if overrides.get("backend_config"):
                    value.update(overrides["backend_config"])
            if name == "worker_threads" and value is None:
                value = os.cpu_count() or 1
            setattr(self, name, value)

    def model_dump(self) -> dict[str, Any]:
        """Return all settings as a dict."""
        return {name: getattr(self, name) for name in self._fields}

    def __repr__(self) -> str:
        return f"Settings({self.model_dump()!r})"
