"""Store definitions: the one safe loader of YAML/JSON store configs, and the one merge.

Both faces read a `--config` file / `ANYSTORE_YAML_URI` / `ANYSTORE_JSON_URI` through here
(the command line's plain `StoreModel`, the library's pydantic one), so they refuse the same
files with the same messages: YAML aliases, files over `MAX_CONFIG_BYTES`, unknown fields,
values of the wrong type. Reading the file is the caller's (store/ knows every uri).
"""

from __future__ import annotations

from typing import Any

from anystore_cli.errors import InvalidData

MAX_CONFIG_BYTES = 1024 * 1024
"""A store config file larger than this is refused (a definition takes a few hundred bytes)"""

STORE_FORMATS = ("yaml", "json")


def no_alias_loader() -> Any:
    """yaml's safe loader without anchors and aliases: a few hundred bytes of nested aliases
    (a "billion laughs") would otherwise expand to gigabytes, and a config needs none."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "aliases (`*name`) are not allowed in a store config", event.start_mark
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def load_yaml(data: str | bytes) -> Any:
    """Parse YAML with the safe, alias-free loader (an empty document is `{}`).

    Raises:
        yaml.YAMLError: Bad YAML, or an alias
    """
    import yaml

    return yaml.load(data, Loader=no_alias_loader()) or {}


def parse_definition(data: str | bytes, fmt: str, where: Any) -> Any:
    """The data of a store config file's text, as YAML or JSON.

    Args:
        data: The file's content
        fmt: "yaml" or "json"
        where: The file's uri (or a name), for messages

    Raises:
        InvalidData: A file over `MAX_CONFIG_BYTES`, bad YAML or JSON, YAML aliases
    """
    if len(data) > MAX_CONFIG_BYTES:
        raise InvalidData(f"Store config `{_mask(where)}` is larger than {MAX_CONFIG_BYTES} bytes")
    import orjson
    import yaml

    try:
        return orjson.loads(data) if fmt == "json" else load_yaml(data)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        text = " ".join(str(exc).split())
        raise InvalidData(f"Invalid {fmt.upper()} in store config `{_mask(where)}`: {text}") from None


def store_definition(data: Any, kwargs: dict[str, Any], fields: Any, where: Any) -> dict[str, Any]:
    """The fields of a store read from a config file (a mapping with a `uri`), with `kwargs`
    merged over them (see `merge_config`).

    Raises:
        InvalidData: Not a mapping with a `uri`, an unknown field or a value of a wrong type
    """
    if not isinstance(data, dict) or "uri" not in data:
        raise InvalidData(f"Store config `{_mask(where)}` must be a mapping with a `uri`")
    return merge_config(data, kwargs, fields, where)


def merge_config(data: dict[str, Any], kwargs: dict[str, Any], fields: Any, where: Any) -> dict[str, Any]:
    """A store definition read from a file, with `kwargs` (not None) over it; `backend_config`
    entries merge (the file's, then the caller's). Both faces build stores through this.

    Raises:
        InvalidData: The file holds a field no store has (`readonyl`, `backend_confg`)
    """
    unknown = [str(k) for k in data if k not in fields]
    if unknown:
        names = ", ".join(f"`{name}`" for name in unknown)
        raise InvalidData(f"Store config `{_mask(where)}`: unknown field {names} (known: {', '.join(fields)})")
    config = {name: _config_value(name, value, where) for name, value in data.items()}
    for key, value in kwargs.items():
        if key == "backend_config" and value:
            config["backend_config"] = {**(config.get("backend_config") or {}), **value}
        elif value is not None and key != "backend_config":
            config[key] = value
    return config


def _config_value(name: str, value: Any, where: Any) -> Any:
    """Check the type of one field read from a store config file: a wrong type is bad input,
    never taken for something else (`readonly: notbool` is no read-only store)."""
    from anystore_cli.config.settings import parse_bool

    if value is None:
        return value
    try:
        if name in ("readonly", "raise_on_nonexist", "store_none_values"):
            return parse_bool(value) if isinstance(value, bool | str) else parse_bool(_refuse(value))
        if name == "default_ttl":
            if isinstance(value, bool) or not isinstance(value, int | str):
                _refuse(value)
            return int(value)
        if name in ("uri", "serialization_mode") and not isinstance(value, str):
            _refuse(value)
        if name == "backend_config" and not isinstance(value, dict):
            _refuse(value)
    except (InvalidData, ValueError):
        raise InvalidData(f"Store config `{_mask(where)}`: field `{name}` has a bad value `{value}`") from None
    return value


def _mask(where: Any) -> str:
    from anystore_cli.util.uri import mask_uri

    return mask_uri(where)


def _refuse(value: Any) -> Any:
    raise InvalidData(f"bad value `{value}`")
