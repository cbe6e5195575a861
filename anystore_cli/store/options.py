"""Backend options: each backend declares the `backend_config` entries it reads, with their
type, default, secret flag and help (`options` on the backend class), and every source of
options (`-b`, `--input-config`/`--output-config`/`--from-config`/`--to-config`, a config file's
`backend_config`, `ANYSTORE_BACKEND_CONFIG__*`, the library's `get_store(backend_config=)`)
goes through `typed_config`: unknown names and bad values are refused, text stays text.

Values come as text from the command line and the environment and typed from YAML/JSON or
Python: `table=2024.10` is the table `2024.10`, a number option parses `2024.10`, a boolean
takes true/false/yes/no/1/0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from anystore_cli.config.settings import parse_value as parse_json_or_text
from anystore_cli.errors import InvalidData
from anystore_cli.util import secrets
from anystore_cli.util.secrets import SECRET_WORDS as SECRET_WORDS  # noqa: PLC0414 - imported from here

TYPES = ("text", "int", "float", "bool", "json")
"""`json`: a JSON value (an object of client options, say); text given is parsed as JSON
when it parses, else kept as text"""


@dataclass(frozen=True)
class Option:
    """One declared backend option."""

    name: str
    type: str = "text"
    default: Any = None
    secret: bool = False
    help: str = ""


def _declared_secrets() -> dict[str, bool]:
    """Every option declared by a backend already imported: name -> secret flag."""
    import sys

    flags: dict[str, bool] = {}
    for module_name in ("local", "fs", "redis", "sql", "http_client", "memory", "zip"):
        module = sys.modules.get(f"anystore_cli.backends.{module_name}")
        for value in vars(module).values() if module is not None else ():
            declared = value.__dict__.get("options") if isinstance(value, type) else None
            for option in declared if isinstance(declared, tuple) else ():
                if isinstance(option, Option):
                    flags[option.name] = flags.get(option.name, False) or option.secret
    return flags


def is_secret_name(name: Any) -> bool:
    """Tell whether an option's value is a secret: by its declaration, else by its name
    (`password`, `pw`, `auth`, ... anywhere in it)."""
    lowered = str(name).lower()
    declared = _declared_secrets()
    if lowered in declared:
        return declared[lowered]
    return secrets.looks_secret(lowered)


def mask_secrets(value: Any, name: str = "") -> Any:
    """`value` with its secrets masked (see `anystore_cli.util.secrets.mask_secrets`), secret
    names told by the backends' declarations first: what the command line shows and what a
    store's `repr()` prints in both faces."""
    return secrets.mask_secrets(value, name, is_secret_name)


def register_secrets(value: Any, name: str = "") -> None:
    """Remember the secrets in a setting so every message masks them (see
    `anystore_cli.util.secrets.register_secrets`), secret names told as `mask_secrets` does."""
    secrets.register_secrets(value, name, is_secret_name)


def parse_option(option: Option, value: Any, where: str) -> Any:
    """`value` as the type `option` declares.

    Raises:
        InvalidData: A value of another type, naming `where`, the option and the value
    """

    def bad(expected: str) -> InvalidData:
        return InvalidData(f"{where}: option `{option.name}` takes {expected}, not `{value}`")

    if value is None:
        return None
    kind = option.type
    if kind == "text":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise bad("text (quote it in YAML/JSON)")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        from anystore_cli.config.settings import parse_bool

        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if not isinstance(value, str) or not value.strip():
            raise bad("true or false")
        try:
            return parse_bool(value)
        except InvalidData:
            raise bad("true or false") from None
    if kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad("a number")
        try:
            number = (int if kind == "int" else float)(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise bad("a whole number" if kind == "int" else "a number") from None
        if kind == "float" and not math.isfinite(number):
            raise bad("a finite number")
        return number
    return parse_json_or_text(value) if isinstance(value, str) else value


def _fsspec_option(name: str, default: Any) -> Option:
    """A filesystem class's own keyword parameter, typed by its default."""
    kind = "json"
    if isinstance(default, bool):
        kind = "bool"
    elif isinstance(default, int):
        kind = "int"
    elif isinstance(default, float):
        kind = "float"
    elif isinstance(default, str) or (default is None and not name.endswith(("kwargs", "options"))):
        kind = "text"  # a key, an endpoint, a region: text as typed (`secret=0123` stays `0123`)
    return Option(name, kind)


def declared_options(uri: str) -> tuple[dict[str, Option] | None, str]:
    """The options the backend of `uri` declares (None: it declares none and takes any),
    and the backend's name for messages."""
    from anystore_cli.store.registry import _sql_schemes, backend_name, load_backend
    from anystore_cli.util.uri import ensure_uri, get_scheme

    uri = ensure_uri(uri)
    name = backend_name(uri)
    label = "sql" if name in _sql_schemes() else "local" if name == "file" else name
    cls = load_backend(name)
    if name == "fsspec" and not uri.startswith("file://"):
        own = {o.name: o for o in getattr(cls, "options", ())}
        extra = _fsspec_parameters(get_scheme(uri))
        if extra is None:
            return None, label
        return {**extra, **own}, label
    if name == "fsspec":
        cls, label = load_backend("file"), "local"
    declared = cls.__dict__.get("options")
    if declared is None:
        return None, label
    return {o.name: o for o in declared}, label


def _fsspec_parameters(protocol: str) -> dict[str, Option] | None:
    """The keyword parameters of the protocol's filesystem class (None: it cannot be told)."""
    import inspect

    try:
        from fsspec.registry import get_filesystem_class

        cls = get_filesystem_class(protocol)
    except Exception:  # noqa: BLE001 - unknown protocol or missing package: the store says so
        return None
    options: dict[str, Option] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        for p in parameters:
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self" and p.name not in options:
                options[p.name] = _fsspec_option(p.name, None if p.default is p.empty else p.default)
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return options


def typed_config(uri: str, config: dict[str, Any] | None, where: str = "backend_config") -> dict[str, Any]:
    """`config` checked against the options the backend of `uri` declares, each value as its
    declared type.

    Args:
        uri: The store's uri
        config: The options given
        where: How the user gave them, for messages (`-b`, `ANYSTORE_BACKEND_CONFIG__*`, ...)

    Raises:
        InvalidData: An option the backend does not know (named, with the ones it knows), or
            a value of the wrong type
    """
    if not config:
        return dict(config or {})
    from anystore_cli.util.uri import mask_uri

    declared, label = declared_options(uri)
    if declared is None:  # a backend that takes any option
        return {k: parse_json_or_text(v) if isinstance(v, str) else v for k, v in config.items()}
    unknown = [str(k) for k in config if k not in declared]
    if unknown:
        names = ", ".join(f"`{name}`" for name in unknown)
        offer = ", ".join(sorted(declared)) or "none"
        message = f"{where} {names}: not an option of the {label} store `{mask_uri(uri)}` (known: {offer})"
        raise InvalidData(message + _from_environment(unknown))
    place = f"{where} of the {label} store `{mask_uri(uri)}`"
    return {k: parse_option(declared[k], v, place) for k, v in config.items()}


def _from_environment(names: list[str]) -> str:
    """`; set by ANYSTORE_BACKEND_CONFIG__NAME` for the names the environment sets (a typo
    there is harder to find than one on the command line)."""
    import os

    variables = [f"ANYSTORE_BACKEND_CONFIG__{name.upper()}" for name in names]
    found = [v for v in variables if v in os.environ]
    return f"; set by {', '.join(found)}" if found else ""


def unknown_options(uri: str, config: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """The entries of `config` the backend of `uri` does not declare, the declared names
    (sorted) and the backend's name; `([], [], name)` when the backend takes any option."""
    declared, label = declared_options(uri)
    if declared is None:
        return [], [], label
    return [k for k in config if k not in declared], sorted(declared), label
