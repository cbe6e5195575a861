"""Secrets: the one list of words that make a name secret, and the one masking of settings.

A backend's declared options say whether they are secret (`Option.secret`, see
`anystore_cli.store.options`); these words decide for every other name: fsspec's pass-through
options, nested client options, the `name=value` pairs of connection strings and query strings
(`anystore_cli.util.uri.mask_uri` builds its pattern from the same words).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SECRET_WORDS = (
    "password",
    "passwd",
    "pass",
    "pwd",
    "pw",
    "secret",
    "token",
    "key",
    "credential",
    "auth",
    "signature",
    "sig",
    "sas",
    "connection_string",
    "conn_str",
    "private",
)
"""A name holding one of these words anywhere (`aws_secret_access_key`, `sslpassword`,
`client_kwargs.Authorization`) names a secret."""

MASK = "***"


def looks_secret(name: Any) -> bool:
    """Tell whether `name` holds one of the `SECRET_WORDS` (case-insensitive)."""
    lowered = str(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def text_name_pattern() -> str:
    """A regular expression for a secret name in free text: any name holding a word of
    `SECRET_WORDS`, except that `key` alone (as in `key: foo/bar`, the store's keys in
    messages) counts only inside a longer name (`AccountKey`, `api_key`)."""
    words = "|".join(word for word in SECRET_WORDS if word != "key")
    return rf"[\w-]*(?:{words}|(?<=[\w-])key)[\w-]*"


def mask_secrets(value: Any, name: str = "", is_secret: Callable[[Any], bool] = looks_secret) -> Any:
    """`value` with secrets masked, recursively: the values of secret names (by `is_secret`),
    and credentials inside any other text (uri passwords, `AccountKey=...`, `Bearer ...`).

    Args:
        value: A setting, a dict of options, a list
        name: The name `value` is given under
        is_secret: Tells a secret name (the store layer passes one that asks the backends'
            declared options first)
    """
    from anystore_cli.util.uri import mask_uri

    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k), is_secret) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v, name, is_secret) for v in value]
    if value not in (None, "") and not isinstance(value, bool) and is_secret(name):
        return MASK
    if isinstance(value, str):
        return mask_uri(value)
    return value


def register_secrets(value: Any, name: str = "", is_secret: Callable[[Any], bool] = looks_secret) -> None:
    """Remember the secrets in a setting (see `anystore_cli.util.uri.register_secret`): the
    values of secret names and the passwords in uris, recursively; every message masks them
    from then on, wherever they show."""
    from anystore_cli.util.uri import register_secret, register_uri_secrets

    if isinstance(value, dict):
        for key, item in value.items():
            register_secrets(item, str(key), is_secret)
    elif isinstance(value, (list, tuple)):
        for item in value:
            register_secrets(item, name, is_secret)
    elif isinstance(value, str):
        if is_secret(name) and len(value) >= 4:
            register_secret(value)
        register_uri_secrets(value)
