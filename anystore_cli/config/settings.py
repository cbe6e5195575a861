"""The command line's settings, read from the environment (prefix `ANYSTORE_`, nested
delimiter `__`), built from the table of `anystore_cli.config.fields`.

Deliberately free of pydantic-settings (which costs a quarter of a second to import): the
fields, names and environment variables are those of the library's `Settings`, built from the
same table: `ANYSTORE_URI`, `ANYSTORE_SERIALIZATION_MODE`, `ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX=foo`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from anystore_cli.config.fields import BY_NAME, FIELDS, NOT_SETTINGS, PREFIX, SettingField, known_variables
from anystore_cli.errors import InvalidData

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


MAX_TTL = 100 * 366 * 24 * 3600
"""The longest ttl any command, load line or request takes: a hundred years, in seconds"""


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


PARSERS: dict[str, Callable[[Any], Any]] = {
    "text": str,
    "optional_text": _parse_optional_str,
    "mode": _parse_mode,
    "bool": parse_bool,
    "int": _parse_int,
    "dict": _parse_dict,
}
"""How the command line reads each kind of `config.fields` from text"""


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
        env = _anystore_environment()
    known = known_variables()
    fields = [field.name.upper() for field in FIELDS]
    for variable in sorted(env):
        name = variable[len(PREFIX) :]
        if variable in known or name in NOT_SETTINGS or name.startswith("TEST_"):
            continue
        if name.startswith("BACKEND_CONFIG__"):
            continue
        if name.startswith(("BACKEND_CONFIG", "BACKEND_CONF")):
            raise InvalidData(f"Unknown setting `{variable}`: backend options are ANYSTORE_BACKEND_CONFIG__NAME")
        close = difflib.get_close_matches(name, fields, n=1, cutoff=0.8)
        hint = f"did you mean ANYSTORE_{close[0]}?" if close else "not a setting of anystore"
        raise InvalidData(f"Unknown setting `{variable}` ({hint})")


def _anystore_environment() -> dict[str, str]:
    return {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(PREFIX)}


def backend_config_from_env(env: dict[str, str]) -> dict[str, str]:
    """The `ANYSTORE_BACKEND_CONFIG__NAME` variables as options (`name`: text; the backend's
    declared options type them)."""
    nested = BY_NAME["backend_config"].env + "__"
    return {
        key[len(nested) :].lower(): raw for key, raw in env.items() if key.startswith(nested) and len(key) > len(nested)
    }


class Settings:
    """The effective configuration: defaults, overridden by `ANYSTORE_*` environment variables,
    overridden by keyword arguments. The fields are those of `anystore_cli.config.fields.FIELDS`
    (`uri`, `yaml_uri`, `json_uri`, `serialization_mode`, `raise_on_nonexist`, `default_ttl`,
    `backend_config`, `readonly`, `allow_pickle`, `debug`, `log_level`, ...), as the library's
    `Settings` has them.
    """

    _fields: dict[str, SettingField] = BY_NAME

    def __init__(self, **overrides: Any) -> None:
        unknown = [str(k) for k in overrides if k not in self._fields]
        if unknown:
            raise InvalidData(f"Unknown setting `{unknown[0]}` (known: {', '.join(self._fields)})")
        env = _anystore_environment()
        check_environment(env)
        for field in FIELDS:
            parse = PARSERS[field.kind]
            value: Any = field.default
            for variable in reversed(field.env_names):  # the field's own name wins over an alias
                if variable in env:
                    value = parse(env[variable])
            if overrides.get(field.name) is not None:
                value = parse(overrides[field.name])
            if field.name == "backend_config":
                value = {**(value or {}), **backend_config_from_env(env), **(overrides.get("backend_config") or {})}
            if value is None and field.factory is not None:
                value = field.factory()
            setattr(self, field.name, value)

    def model_dump(self) -> dict[str, Any]:
        """Return all settings as a dict."""
        return {name: getattr(self, name) for name in self._fields}

    def __repr__(self) -> str:
        from anystore_cli.util.secrets import mask_secrets

        return f"Settings({mask_secrets(self.model_dump())!r})"
