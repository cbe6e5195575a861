"""Library settings: a pydantic-settings `BaseSettings`, as in the original library.

The fields are built from the one table of `anystore_cli.config.fields`, as the command line's
plain settings are: the same names, defaults and `ANYSTORE_*` variables (`ANYSTORE_URI`,
`ANYSTORE_SERIALIZATION_MODE`, ...); dictionaries use `__` as a separator:
`ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX=foo`. As the original, the library also reads the
unprefixed `DEBUG`, `REDIS_DEBUG`, `LOG_JSON`, `LOG_LEVEL`, `WORKER_THREADS`,
`WORKER_HEARTBEAT` and `CACHE`.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field, ValidationInfo, create_model, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from anystore_cli.config.fields import BY_NAME, FIELDS, SettingField
from anystore_cli.config.settings import PARSERS
from anystore_cli.util.serialize import Mode

_ANNOTATIONS: dict[str, Any] = {
    "text": str,
    "optional_text": str | None,
    "mode": Mode,
    "bool": bool,
    "int": int,
    "dict": dict[str, Any],
}
"""The pydantic type of each kind of `config.fields` (the command line parses the same kinds)"""


class _SettingsBase(BaseSettings):
    """The behaviour of the settings class; its fields come from `config.fields`."""

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

    @field_validator("*", mode="before")
    @classmethod
    def _parse_as_the_command_line(cls, value: Any, info: ValidationInfo) -> Any:
        """Text (from the environment) is read by the command line's parsers: an empty
        `ANYSTORE_YAML_URI` is no config file, an empty boolean is false, in both faces."""
        field = BY_NAME.get(info.field_name or "")
        if isinstance(value, str) and field is not None and field.kind in ("optional_text", "bool", "int"):
            return PARSERS[field.kind](value)
        return value

    def __repr_args__(self) -> Any:
        from anystore_cli.util.secrets import mask_secrets

        for name, value in super().__repr_args__():
            yield name, mask_secrets(value, str(name))


def _field(field: SettingField) -> tuple[Any, Any]:
    """The pydantic field of one row of the table."""
    options: dict[str, Any] = {"description": field.help}
    if field.aliases or field.compat_env:
        # an alias replaces the prefix, so every variable is named in full; the `ANYSTORE_*`
        # ones first, which win over the unprefixed as on the command line
        names = (*field.env_names, *field.compat_env)
        options["validation_alias"] = AliasChoices(*(name.lower() for name in names))
    if field.factory is not None:
        return _ANNOTATIONS[field.kind], Field(default_factory=field.factory, **options)
    return _ANNOTATIONS[field.kind], Field(default=field.make_default(), **options)


Settings = create_model(  # type: ignore[call-overload]
    "Settings",
    __base__=_SettingsBase,
    __module__=__name__,
    __doc__="""`anystore` settings management using pydantic-settings.

    Note:
        All settings can be set via environment variables in uppercase, prepending
        `ANYSTORE_` (the original's unprefixed `DEBUG`, `REDIS_DEBUG`, `LOG_JSON`, `LOG_LEVEL`,
        `WORKER_THREADS`, `WORKER_HEARTBEAT`, `CACHE` are read too).

        Backend config: Use `__` as a separator for dictionary content, e.g.:
        `ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX="foo"`
    """,
    **{field.name: _field(field) for field in FIELDS},
)
