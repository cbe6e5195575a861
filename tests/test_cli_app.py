"""Global options, store selection, errors and exit statuses of the installed `anystore`."""

from __future__ import annotations

# ruff: noqa: F811  # fixtures from tests.test_cli_support reappear as arguments
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from anystore_cli import __version__
from tests.conftest import anystore_bin, run_cli
from tests.test_cli_support import (  # noqa: F401 - fixtures
    CliStore,
    assert_one_line_error,
    cli_store,
    local_store,
    make_cli_store,
    stderr_text,
)

COMMANDS = [
    "get",
    "put",
    "keys",
    "stream",
    "checksum",
    "touch",
    "info",
    "pop",
    "rm",
    "exists",
    "dump",
    "load",
    "mirror",
    "serve",
    "io",
    "settings",
]


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert __version__ in proc.stdout.decode()


def test_python_m_runs_the_same_app(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "anystore_cli", "-s", str(tmp_path / "s"), "put", "k", "v"], capture_output=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s" / "k").read_bytes() == b"v"


def test_help_lists_every_command_with_an_example():
    proc = run_cli("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for command in COMMANDS:
        assert f"  {command} " in out, command
    assert "Example: anystore " in out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_shows_a_one_line_example(command):
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, stderr_text(proc)
    examples = [line for line in proc.stdout.decode().splitlines() if line.strip().startswith("Example:")]
    assert len(examples) == 1
    assert f"anystore {command}" in examples[0] or f"anystore {command}" in examples[0].replace("| ", "")


def test_no_arguments_shows_usage_and_exits_2():
    proc = run_cli()
    assert proc.returncode == 2
    assert "Usage:" in stderr_text(proc)


@pytest.mark.parametrize(
    "args",
    [["nope"], ["--nope", "keys"], ["get"], ["keys", "--limit", "-1"], ["-b", "novalue", "keys"], ["get", "k", "--x"]],
)
def test_usage_errors_exit_2_in_one_line(tmp_path, args):
    proc = run_cli("-s", str(tmp_path / "s"), *args)
    assert_one_line_error(proc, 2)
    assert proc.stdout == b""


def test_store_given_only_by_anystore_uri(tmp_path):
    env = {"ANYSTORE_URI": str(tmp_path / "from-env")}
    assert run_cli("put", "k", "v", env=env).returncode == 0
    assert (tmp_path / "from-env" / "k").read_bytes() == b"v"
    assert run_cli("get", "k", env=env).stdout == b"v"


def test_default_store_is_dot_anystore_in_the_working_directory(tmp_path):
    assert run_cli("put", "k", "v", cwd=tmp_path).returncode == 0
    assert (tmp_path / ".anystore" / "k").read_bytes() == b"v"


def test_store_option_beats_anystore_uri(tmp_path):
    env = {"ANYSTORE_URI": str(tmp_path / "env")}
    assert run_cli("-s", str(tmp_path / "opt"), "put", "k", "v", env=env).returncode == 0
    assert (tmp_path / "opt" / "k").exists()
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_store_given_by_config_file(tmp_path, fmt):
    folder = tmp_path / "configured"
    if fmt == "yaml":
        config = tmp_path / "store.yml"
        config.write_text(f"uri: {folder}\nserialization_mode: raw\n")
    else:
        config = tmp_path / "store.json"
        config.write_text(json.dumps({"uri": str(folder), "serialization_mode": "raw"}))
    assert run_cli("--config", str(config), "put", "k", "v").returncode == 0
    assert (folder / "k").read_bytes() == b"v"
    assert run_cli("--config", str(config), "get", "k").stdout == b"v"
    env_name = "ANYSTORE_YAML_URI" if fmt == "yaml" else "ANYSTORE_JSON_URI"
    assert run_cli("get", "k", env={env_name: str(config)}).stdout == b"v"


def test_config_beats_anystore_uri_and_store_option_beats_config(tmp_path):
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {tmp_path / 'configured'}\n")
    env = {"ANYSTORE_URI": str(tmp_path / "env")}
    assert run_cli("--config", str(config), "put", "a", "1", env=env).returncode == 0
    assert (tmp_path / "configured" / "a").exists()
    assert run_cli("--config", str(config), "-s", str(tmp_path / "opt"), "put", "b", "2").returncode == 0
    assert (tmp_path / "opt" / "b").exists()


def test_config_with_readonly_and_backend_config(redis_url, tmp_path):
    from tests.conftest import unique

    prefix = unique()
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {redis_url}\nbackend_config:\n  redis_prefix: {prefix}\n")
    assert run_cli("--config", str(config), "put", "k", "v").returncode == 0
    assert run_cli("-s", redis_url, "-b", f"redis_prefix={prefix}", "get", "k").stdout == b"v"
    assert run_cli("-s", redis_url, "-b", "redis_prefix=other", "exists", "k").returncode == 1
    env = {"ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX": prefix}
    assert run_cli("-s", redis_url, "get", "k", env=env).stdout == b"v"
    config.write_text(f"uri: {redis_url}\nreadonly: true\nbackend_config:\n  redis_prefix: {prefix}\n")
    assert_one_line_error(run_cli("--config", str(config), "put", "k", "new"), 3, "readonly")
    assert run_cli("--config", str(config), "get", "k").stdout == b"v"
    run_cli("-s", redis_url, "-b", f"redis_prefix={prefix}", "rm", "k")


def test_missing_or_bad_config_file_exits_2(tmp_path):
    proc = run_cli("--config", str(tmp_path / "nope.yml"), "keys")
    assert_one_line_error(proc, 2, "nope.yml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert_one_line_error(run_cli("--config", str(bad), "keys"), 2, "bad.json")
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("uri: [unclosed\n")
    assert_one_line_error(run_cli("--config", str(bad_yaml), "keys"), 2, "bad.yml")
    no_uri = tmp_path / "no-uri.yml"
    no_uri.write_text("readonly: true\n")
    assert_one_line_error(run_cli("--config", str(no_uri), "keys"), 2, "uri")


def test_backend_config_value_typed_by_the_backend(tmp_path):
    proc = run_cli("-s", str(tmp_path), "-b", "fsync=true", "settings")
    assert json.loads(proc.stdout)["store"]["backend_config"] == {"fsync": True}
    sql = f"sqlite:///{tmp_path / 's.db'}"
    proc = run_cli("-s", sql, "-b", "table=2024.10", "-b", "timeout=3", "settings")
    assert json.loads(proc.stdout)["store"]["backend_config"] == {"table": "2024.10", "timeout": 3.0}


@pytest.mark.parametrize(
    "args",
    [
        ["put", "ro-key", "new"],
        ["rm", "ro-key"],
        ["pop", "ro-key"],
        ["touch", "ro-key"],
        ["load"],
        ["rm", "--prefix", "ro"],
    ],
)
def test_write_to_readonly_store_exits_3(cli_store: CliStore, args):
    cli_store.put("ro-key", b"old")
    stdin = b'{"key": "ro-key", "value": "new"}\n' if args == ["load"] else None
    names_key = args[-1] == "ro-key" or args[0] == "rm"
    fragments = ["readonly", "ro-key"] if names_key else ["readonly"]
    proc = run_cli("--readonly", *cli_store.global_args, *args, input=stdin, cwd=cli_store.tmp_path)
    assert_one_line_error(proc, 3, *fragments)
    assert cli_store.get("ro-key") == b"old"
    proc = cli_store(*args, input=stdin, env={"ANYSTORE_READONLY": "1"})
    assert_one_line_error(proc, 3, *fragments)
    assert cli_store.get("ro-key") == b"old"


def test_readonly_store_can_still_be_read(cli_store: CliStore):
    cli_store.put("k", b"v")
    assert run_cli("--readonly", *cli_store.global_args, "get", "k").stdout == b"v"


@pytest.mark.parametrize("args", [["get", "k"], ["put", "k", "v"], ["keys"]])
def test_unknown_uri_scheme_exits_2(args):
    proc = run_cli("-s", "nosuchscheme://bucket/prefix", *args)
    assert_one_line_error(proc, 2, "nosuchscheme")


def test_password_in_uri_is_masked_in_errors():
    proc = run_cli("-s", "redis://:s3cr3tpw@127.0.0.1:1/0", "get", "k", timeout=30)
    line = assert_one_line_error(proc, 3, "***")
    assert "s3cr3tpw" not in line
    proc = run_cli("-s", "redis://user:s3cr3tpw@127.0.0.1:1/0", "--debug", "keys", timeout=30)
    assert proc.returncode == 3
    assert "s3cr3tpw" not in stderr_text(proc).splitlines()[-1]


def test_unreachable_store_exits_3(tmp_path):
    proc = run_cli("-s", "redis://127.0.0.1:1/0", "put", "k", "v", timeout=30)
    assert_one_line_error(proc, 3, "127.0.0.1:1")


def test_append_only_zip_refuses_delete_with_3(tmp_path):
    store = str(tmp_path / "archive.zip")
    assert run_cli("-s", store, "put", "k", "v").returncode == 0
    assert run_cli("-s", store, "get", "k").stdout == b"v"
    assert_one_line_error(run_cli("-s", store, "rm", "k"), 3, "k")


def test_debug_shows_traceback(tmp_path):
    proc = run_cli("-s", str(tmp_path), "--debug", "get", "missing")
    assert proc.returncode == 1
    assert "Traceback" in stderr_text(proc)
    assert stderr_text(proc).rstrip().splitlines()[-1].startswith("anystore: error: ")
    proc = run_cli("-s", str(tmp_path), "get", "missing", env={"ANYSTORE_DEBUG": "1"})
    assert "Traceback" in stderr_text(proc)


def test_interrupted_put_exits_130_and_leaves_old_value(local_store: CliStore):
    local_store.put("k", b"old value")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    proc = subprocess.Popen(
        [anystore_bin(), *local_store.global_args, "put", "k"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"partial new value " * 1000)
    proc.stdin.flush()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert local_store.get("k") == b"old value"
    assert [p.name for p in (local_store.tmp_path / local_store.uri.rsplit("/", 1)[-1]).iterdir()] == ["k"]


def test_original_cli_invocations_keep_working(tmp_path):
    store = str(tmp_path / "store")
    source = tmp_path / "in.txt"
    source.write_bytes(b"from file")
    assert run_cli("--store", store, "put", "a/1.json", '{"x": 1}').returncode == 0
    assert run_cli("--store", store, "put", "b/2.txt", "-i", str(source)).returncode == 0
    out = tmp_path / "out.txt"
    assert run_cli("--store", store, "get", "b/2.txt", "-o", str(out)).returncode == 0
    assert out.read_bytes() == b"from file"
    assert run_cli("--store", store, "keys", "--glob", "*/*.json").stdout == b"a/1.json\n"
    assert run_cli("--store", store, "keys", "--prefix", "b").stdout == b"b/2.txt\n"
    assert run_cli("--store", store, "keys", "--exclude-prefix", "b").stdout == b"a/1.json\n"
    mirrored = str(tmp_path / "mirror")
    assert run_cli("mirror", "-i", store, "-o", mirrored).returncode == 0
    assert (tmp_path / "mirror" / "a" / "1.json").read_bytes() == b'{"x": 1}'
    assert run_cli("io", "-i", str(source), "-o", str(tmp_path / "copy.txt")).returncode == 0
    assert (tmp_path / "copy.txt").read_bytes() == b"from file"


def test_second_backend_errors_name_key_and_store(store_factory):
    store = make_cli_store(store_factory, "sqlite")
    proc = store("get", "some/key")
    assert_one_line_error(proc, 1, "some/key", "sqlite")


# --- global options after the command ------------------------------------------------------


def test_store_option_after_the_command_names_the_store(tmp_path):
    store = str(tmp_path / "store")
    assert run_cli("put", "k", "v", "-s", store, cwd=tmp_path).returncode == 0
    assert (tmp_path / "store" / "k").read_bytes() == b"v"
    assert not (tmp_path / ".anystore").exists()
    proc = run_cli("keys", "-s", store, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, b"k\n"), stderr_text(proc)
    proc = run_cli("get", "k", "--store", store, cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, b"v"), stderr_text(proc)
    proc = run_cli("get", "k", f"--store={store}", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, b"v"), stderr_text(proc)


def test_readonly_and_backend_config_after_the_command_apply(tmp_path):
    store = str(tmp_path / "store")
    proc = run_cli("put", "k", "v", "--store", store, "--readonly", cwd=tmp_path)
    assert_one_line_error(proc, 3, "k")
    assert not (tmp_path / "store" / "k").exists()
    proc = run_cli("get", "k", "--store", store, "-b", "bogus_option=1", cwd=tmp_path)
    assert_one_line_error(proc, 2, "bogus_option")


def test_verbose_after_the_command_is_verbose(tmp_path):
    source, target = str(tmp_path / "a"), str(tmp_path / "b")
    assert run_cli("-s", source, "put", "k", "v").returncode == 0
    proc = run_cli("mirror", "-i", source, "-o", target, "-v")
    assert proc.returncode == 0, stderr_text(proc)
    assert "k" in [line.split()[-1] for line in stderr_text(proc).splitlines() if line.strip()]
    assert (tmp_path / "b" / "k").read_bytes() == b"v"


def test_a_value_that_looks_like_a_flag_belongs_to_its_option(tmp_path):
    store = str(tmp_path / "store")
    assert run_cli("-s", store, "put", "--", "-v/x", "1").returncode == 0
    assert run_cli("-s", store, "put", "other", "2").returncode == 0
    proc = run_cli("keys", "--prefix", "-v", "-s", store)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"-v/x\n", b"")


def test_nothing_after_double_dash_moves(tmp_path):
    store = str(tmp_path / "store")
    proc = run_cli("put", "k", "-s", store, "--", "-v")
    assert proc.returncode == 0, stderr_text(proc)
    assert (tmp_path / "store" / "k").read_bytes() == b"-v"
    proc = run_cli(
        "lock", "job", "-s", store, "--", sys.executable, "-c", "import sys; print(sys.argv[1:])", "-v", "-s", "x"
    )
    assert proc.returncode == 0, stderr_text(proc)
    assert proc.stdout.decode().strip() == "['-v', '-s', 'x']"
    assert proc.stderr == b""


def test_lock_command_without_double_dash_keeps_its_flags_and_says_where_they_go(tmp_path):
    store = str(tmp_path / "store")
    proc = run_cli("lock", "job", "-s", store, "echo", "-v")
    assert_one_line_error(proc, 2, "-v", "after `--`")


def test_command_option_before_the_command_says_where_it_goes(tmp_path):
    proc = run_cli("-s", str(tmp_path / "s"), "--prefix", "x", "keys")
    assert_one_line_error(proc, 2, "--prefix", "`anystore keys`", "after the command")


def test_help_says_global_options_go_before_or_after_the_command():
    out = run_cli("--help").stdout.decode()
    assert "before or after the command" in " ".join(out.split())


def test_a_command_option_spelled_like_a_global_one_stays_with_the_command():
    import click
    import typer.main

    from anystore_cli.cli.app import app, hoist_global_options

    group = typer.main.get_command(app)
    command = click.Command("get", params=[click.Option(["-v", "--version-id"]), click.Option(["-q"], is_flag=True)])
    group._built["get"] = command
    try:
        moved = hoist_global_options(["get", "k", "-v", "7", "-q", "-s", "S", "--verbose"], group)
    finally:
        del group._built["get"]
    assert moved == ["-s", "S", "--verbose", "get", "k", "-v", "7", "-q"]


def test_a_command_option_spelled_like_a_global_one_is_named_in_its_help():
    import click
    import typer.main

    from anystore_cli.cli.app import _note_clashes, app, option_table

    command = click.Command("get", help="Read.", params=[click.Option(["-v", "--version-id"])])
    _note_clashes(command, option_table(typer.main.get_command(app)))
    assert "After `get`, -v is this command's own option" in command.help
    plain = click.Command("put", help="Write.", params=[click.Option(["--ttl"])])
    _note_clashes(plain, option_table(typer.main.get_command(app)))
    assert plain.help == "Write."


@pytest.mark.parametrize("command", ["keys", "rm", "dump", "mirror", "check"])
def test_glob_help_says_star_stays_in_one_segment(command):
    out = " ".join(run_cli(command, "--help").stdout.decode().split())
    assert "`*` and `?` stay within one /-separated segment, `**` crosses them" in out
    assert "`**/*.json`" in out


@pytest.mark.parametrize("argv", [["keys", "-s"], ["get", "k", "--store"]], ids=["short", "long"])
def test_global_option_after_the_command_without_its_value_is_a_usage_error(tmp_path, argv):
    proc = run_cli(*argv, cwd=tmp_path)
    assert_one_line_error(proc, 2, f"'{argv[-1]}' requires an argument")
    assert not (tmp_path / ".anystore").exists()


def _error_types() -> list[type[BaseException]]:
    import anystore_cli.errors as errors

    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("table", ["EXIT_STATUS", "HTTP_STATUS"])
def test_each_status_table_names_every_error_type(table: str) -> None:
    import anystore_cli.errors as errors

    types = [t for t in _error_types() if t is not errors.ErrorText]
    assert len(types) >= 12
    missing = [t.__name__ for t in types if t not in getattr(errors, table)]
    assert not missing, f"{table} lacks {missing}"


def test_errors_carry_key_and_store_and_keep_them_across_pickling(tmp_path) -> None:
    import pickle

    from anystore_cli.core import get_store
    from anystore_cli.errors import DoesNotExist, error_for_status, exit_status, http_status

    store = get_store(str(tmp_path / "s"))
    with pytest.raises(DoesNotExist) as caught:
        store.get("a/missing")
    exc = caught.value
    assert exc.key == "a/missing"
    assert exc.store and exc.store.endswith("/s")
    assert str(exc).startswith("Key `a/missing` in store ")
    again = pickle.loads(pickle.dumps(exc))
    assert (again.key, again.store, str(again)) == (exc.key, exc.store, str(exc))
    assert (exit_status(exc), http_status(exc), error_for_status(http_status(exc))) == (1, 404, DoesNotExist)
