"""The two faces agree by construction: the same environment, config file and options give the
same effective store, the same masking and the same errors through the command line
(`anystore settings`) and the library (`anystore_cli.core.get_store`, `Settings`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

SECRET = "hunter2"

LIBRARY = """
import json, sys
from anystore_cli.core import get_store
kwargs = json.loads(sys.argv[1])
try:
    store = get_store(**kwargs)
except Exception as exc:
    print(json.dumps({"error": str(exc), "type": type(exc).__name__}))
    sys.exit(0)
print(json.dumps({
    "uri": store.uri,
    "backend_config": store.backend_config or {},
    "readonly": bool(store.readonly),
    "default_ttl": store.default_ttl or None,
    "repr": repr(store),
}))
"""


def _library(code: str, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `code` with the library face in a fresh interpreter under `env` alone (the ANYSTORE_*
    variables of the test run removed, as `run_cli` does)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _both(
    tmp_path: Path,
    env: dict[str, str],
    options: dict[str, str] | None = None,
    uri: str | None = None,
    command: str = "settings",
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any]]:
    """The command line's `settings` (or `keys`, which opens the store) and the library's
    `get_store` on the same input: `env` (a YAML/JSON config as ANYSTORE_YAML_URI /
    ANYSTORE_JSON_URI, which the command line takes as `--config`), backend options (`-b` /
    `backend_config=`) and a uri (`-s` / `uri`)."""
    cli_env, args = dict(env), []
    for variable in ("ANYSTORE_YAML_URI", "ANYSTORE_JSON_URI"):
        if variable in cli_env:
            args += ["--config", cli_env.pop(variable)]
    if uri is not None:
        args += ["-s", uri]
    for name, value in (options or {}).items():
        args += ["-b", f"{name}={value}"]
    cli = run_cli(*args, command, env=cli_env)
    kwargs: dict[str, Any] = {}
    if uri is not None:
        kwargs["uri"] = uri
    if options:
        kwargs["backend_config"] = {k: _typed(v) for k, v in options.items()}
    done = _library(LIBRARY, env, tmp_path, json.dumps(kwargs))
    assert done.returncode == 0, done.stderr
    return cli, json.loads(done.stdout)


def _typed(value: str) -> Any:
    """A `-b` value as a Python caller passes it: JSON objects as dicts, the rest as text."""
    return json.loads(value) if value.startswith("{") else value


def _assert_same_store(cli: subprocess.CompletedProcess[bytes], library: dict[str, Any]) -> dict[str, Any]:
    from anystore_cli.store.options import mask_secrets
    from anystore_cli.util.uri import mask_uri

    assert "error" not in library, library
    assert cli.returncode == 0, cli.stderr.decode()
    store = json.loads(cli.stdout)["store"]
    assert store["uri"] == mask_uri(library["uri"])
    assert store["backend_config"] == mask_secrets(library["backend_config"])
    assert store["readonly"] == library["readonly"]
    assert store["default_ttl"] == library["default_ttl"]
    assert SECRET not in library["repr"] and SECRET.encode() not in cli.stdout + cli.stderr
    return store


def _assert_same_error(cli: subprocess.CompletedProcess[bytes], library: dict[str, Any], *named: str) -> None:
    assert "error" in library, library
    assert cli.returncode == 2, (cli.returncode, cli.stderr)
    message = cli.stderr.decode().removeprefix("anystore: error: ").strip()
    assert message == library["error"]
    assert all(name in message for name in named), message
    assert SECRET not in message


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 's.db'}"


def test_environment_alone(tmp_path: Path) -> None:
    env = {"ANYSTORE_URI": _sqlite(tmp_path), "ANYSTORE_BACKEND_CONFIG__TABLE": "2024.10", "ANYSTORE_READONLY": "1"}
    store = _assert_same_store(*_both(tmp_path, env))
    assert store["backend_config"] == {"table": "2024.10"} and store["readonly"] is True


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_config_file_and_environment_merge(fmt: str, tmp_path: Path) -> None:
    definition = {"uri": _sqlite(tmp_path), "default_ttl": 5, "backend_config": {"table": "fromfile"}}
    path = tmp_path / f"store.{fmt}"
    path.write_text(json.dumps(definition))  # JSON is YAML too
    env = {f"ANYSTORE_{fmt.upper()}_URI": str(path), "ANYSTORE_BACKEND_CONFIG__TIMEOUT": "7"}
    store = _assert_same_store(*_both(tmp_path, env))
    assert store["backend_config"] == {"table": "fromfile", "timeout": 7.0} and store["default_ttl"] == 5


def test_options_merge_over_the_environment(tmp_path: Path) -> None:
    env = {"ANYSTORE_BACKEND_CONFIG__TIMEOUT": "7", "ANYSTORE_BACKEND_CONFIG__TABLE": "fromenv"}
    store = _assert_same_store(*_both(tmp_path, env, {"table": "given"}, uri=_sqlite(tmp_path)))
    assert store["backend_config"] == {"timeout": 7.0, "table": "given"}


@pytest.mark.parametrize(
    ("uri", "options"),
    [
        ("s3://bucket/prefix", {"client_kwargs": json.dumps({"headers": {"Authorization": f"Bearer {SECRET}x"}})}),
        (
            "s3://bucket/prefix",
            {"secret": f"{SECRET}s", "endpoint_url": f"http://u:{SECRET}@127.0.0.1:9/?sig={SECRET}"},
        ),
        ("anystore+http://127.0.0.1:1", {"token": f"tok-{SECRET}"}),
        (f"redis://:{SECRET}pw@127.0.0.1:1/0", {}),
        (f"postgresql://u:{SECRET}@127.0.0.1:1/test", {}),
    ],
)
def test_secrets_are_masked_alike(uri: str, options: dict[str, str], tmp_path: Path) -> None:
    _assert_same_store(*_both(tmp_path, {}, options, uri=uri))


def _config(tmp_path: Path, text: str, name: str = "store.yml") -> dict[str, str]:
    path = tmp_path / name
    path.write_text(text)
    return {f"ANYSTORE_{'JSON' if name.endswith('.json') else 'YAML'}_URI": str(path)}


@pytest.mark.parametrize(
    "scenario",
    [
        "typo-variable",
        "typo-env-option",
        "bad-env-value",
        "typo-config-field",
        "bad-config-type",
        "yaml-alias",
        "config-too-large",
        "bad-json",
        "config-not-a-mapping",
        "no-bucket",
        "unknown-scheme",
    ],
)
def test_errors_are_the_same(scenario: str, tmp_path: Path) -> None:
    sqlite = _sqlite(tmp_path)
    env, uri, named = {"ANYSTORE_URI": sqlite}, None, ()
    if scenario == "typo-variable":
        env["ANYSTORE_READONYL"], named = "1", ("ANYSTORE_READONYL", "ANYSTORE_READONLY")
    elif scenario == "typo-env-option":
        env["ANYSTORE_BACKEND_CONFIG__TABEL"], named = "x", ("tabel",)
    elif scenario == "bad-env-value":
        env["ANYSTORE_BACKEND_CONFIG__TIMEOUT"], named = "soon", ("timeout",)
    elif scenario == "typo-config-field":
        env, named = _config(tmp_path, f"uri: {sqlite}\nreadonyl: true\n"), ("readonyl",)
    elif scenario == "bad-config-type":
        env, named = _config(tmp_path, f"uri: {sqlite}\nreadonly: notbool\n"), ("readonly",)
    elif scenario == "yaml-alias":
        env, named = _config(tmp_path, f"uri: &u {sqlite}\nbackend_config: {{table: *u}}\n"), ("aliases",)
    elif scenario == "config-too-large":
        env, named = _config(tmp_path, f"uri: {sqlite}\n" + "# padding\n" * 120_000), ("larger than",)
    elif scenario == "bad-json":
        env, named = _config(tmp_path, '{"uri": ', "store.json"), ("Invalid JSON",)
    elif scenario == "config-not-a-mapping":
        env, named = _config(tmp_path, "- a\n- b\n"), ("mapping",)
    elif scenario == "no-bucket":
        uri, named = "s3://", ("bucket",)
    elif scenario == "unknown-scheme":
        uri, named = "nosuchscheme://x", ("nosuchscheme",)
    for command in ("settings", "keys") if uri is None else ("keys",):  # `settings` opens no store
        cli, library = _both(tmp_path, env, uri=uri, command=command)
        _assert_same_error(cli, library, *named)


def test_option_typos_are_refused_alike(tmp_path: Path) -> None:
    """`-b tabel=x` and `backend_config={"tabel": "x"}`: both refused, naming the option and
    the options the store knows (each names the option as its user gave it)."""
    cli, library = _both(tmp_path, {}, {"tabel": "x"}, uri=_sqlite(tmp_path))
    assert cli.returncode == 2 and library["type"] == "InvalidData"
    message = cli.stderr.decode()
    for text in ("`tabel`", "not an option of the sql store", "known: "):
        assert text in message and text in library["error"]
    assert message.split("(known: ")[1].strip() == library["error"].split("(known: ")[1]


SETTINGS = """
import json
from anystore_cli.config.settings import Settings as Plain
from anystore_cli.core.settings import Settings
print(json.dumps([Plain().model_dump(), Settings().model_dump(), repr(Plain()), repr(Settings())]))
"""


def test_settings_are_built_from_one_table(tmp_path: Path) -> None:
    from anystore_cli.config.fields import FIELDS
    from anystore_cli.config.settings import Settings as Plain
    from anystore_cli.core.settings import Settings

    assert list(Settings.model_fields) == [field.name for field in FIELDS] == list(Plain._fields)
    env = {
        "ANYSTORE_SERIALIZATION_MODE": "json",
        "ANYSTORE_DEFAULT_TTL": "5",
        "ANYSTORE_RAISE_ON_NONEXIST": "false",
        "ANYSTORE_CACHE": "0",
        "ANYSTORE_LOG_LEVEL": "debug",
        "ANYSTORE_WORKER_THREADS": "3",
        "ANYSTORE_BACKEND_CONFIG__PASSWORD": SECRET,
        "ANYSTORE_YAML_URI": "",  # empty: no config file, in both faces
        "ANYSTORE_READONLY": "",
    }
    done = _library(SETTINGS, env, tmp_path)
    assert done.returncode == 0, done.stderr
    plain, library, plain_repr, library_repr = json.loads(done.stdout)
    assert plain == library
    assert library["use_cache"] is False and library["log_level"] == "debug" and library["worker_threads"] == 3
    assert library["yaml_uri"] is None and library["readonly"] is False
    assert SECRET not in plain_repr and SECRET not in library_repr
    env.pop("ANYSTORE_BACKEND_CONFIG__PASSWORD")  # no option of a local store
    shown = json.loads(run_cli("-s", str(tmp_path / "s"), "settings", env=env).stdout)["settings"]
    assert shown == {k: v for k, v in library.items() if k in shown}
    assert {"use_cache", "log_level", "worker_threads", "raise_on_nonexist"} <= set(shown)


DEFINITION = """
import json
from anystore_cli.core.model import StoreModel
from anystore_cli.store.model import StoreModel as Plain
uris = ["memory://", "memory:///x/", "memory:x", "s3://b/", "file:///", "/tmp/x/", "redis://h/", "sqlite:///a.db"]
print(json.dumps([[Plain(uri=u).model_dump() for u in uris], [StoreModel(uri=u).model_dump() for u in uris]]))
"""


def test_store_definitions_are_the_same(tmp_path: Path) -> None:
    """The plain and the pydantic `StoreModel`: the same fields, the same defaults from the same
    environment, the same normal form of a uri (`file:///` stays the root)."""
    from anystore_cli.core.model import StoreModel
    from anystore_cli.store.model import StoreModel as Plain

    assert list(StoreModel.model_fields) == list(Plain.model_fields)
    env = {"ANYSTORE_SERIALIZATION_MODE": "json", "ANYSTORE_DEFAULT_TTL": "9", "ANYSTORE_RAISE_ON_NONEXIST": "0"}
    done = _library(DEFINITION, env, tmp_path)
    assert done.returncode == 0, done.stderr
    plain, library = json.loads(done.stdout)
    assert plain == library
    assert [d["uri"] for d in plain][:5] == ["memory://", "memory://x", "memory://x", "s3://b", "file:///"]
    assert {(d["serialization_mode"], d["default_ttl"], d["raise_on_nonexist"]) for d in plain} == {("json", 9, False)}
