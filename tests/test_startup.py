"""Import cost is a feature: each command path imports only what it uses.

Checked by listing the modules a real `python -m anystore_cli ...` process imported
(`-X importtime`), not by timing anything.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def imported_modules(*args: str, cwd: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level package names a CLI invocation imported."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "anystore_cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        input="",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


SERVER_CLIENTS = {
    "fsspec",
    "s3fs",
    "aiobotocore",
    "botocore",
    "aiohttp",
    "httpx",
    "redis",
    "hiredis",
    "sqlalchemy",
    "psycopg",
    "psycopg2",
    "pymysql",
}
"""Packages of the backends that talk to a server: a local command needs none of them"""


@pytest.mark.parametrize(
    "args",
    [("get", "k"), ("put", "k2", "v"), ("exists", "k"), ("keys",), ("--version",)],
    ids=["get", "put", "exists", "keys", "version"],
)
def test_local_commands_import_no_backend_packages(tmp_path, args):
    subprocess.run([sys.executable, "-m", "anystore_cli", "put", "k", "v"], cwd=tmp_path, check=True)
    names = imported_modules(*args, cwd=str(tmp_path))
    assert not names & (SERVER_CLIENTS | {"pydantic", "pydantic_settings", "orjson"})


def test_redis_get_does_not_pay_for_fsspec_or_sqlalchemy(tmp_path, redis_url):
    prefix = f"startup-{os.getpid()}"
    env = {"ANYSTORE_URI": redis_url, "ANYSTORE_BACKEND_CONFIG__REDIS_PREFIX": prefix}
    subprocess.run(
        [sys.executable, "-m", "anystore_cli", "put", "k", "v"], cwd=tmp_path, check=True, env={**os.environ, **env}
    )
    try:
        names = imported_modules("get", "k", cwd=str(tmp_path), env=env)
        assert "redis" in names
        assert not names & (SERVER_CLIENTS - {"redis", "hiredis"})
    finally:
        subprocess.run(
            [sys.executable, "-m", "anystore_cli", "rm", "k"], cwd=tmp_path, env={**os.environ, **env}, check=False
        )


@pytest.mark.parametrize(
    "args",
    [
        ("get", "k"),
        ("exists", "k"),
        ("info", "k"),
        ("put", "k", "w"),
        ("put", "new", "w"),
        ("rm", "k"),
        ("keys",),
        ("keys", "-l", "--prefix", "k"),
        ("dump",),
    ],
    ids=["get", "exists", "info", "put", "put-new", "rm", "keys", "keys-l", "dump"],
)
def test_sqlite_file_commands_do_not_pay_for_sqlalchemy(tmp_path, args):
    """Reads, writes and listings of a SQLite file whose table exists go through the standard
    library's `sqlite3`."""
    env = {"ANYSTORE_URI": f"sqlite:///{tmp_path}/startup.db"}
    subprocess.run(
        [sys.executable, "-m", "anystore_cli", "put", "k", "v"], cwd=tmp_path, check=True, env={**os.environ, **env}
    )
    names = imported_modules(*args, cwd=str(tmp_path), env=env)
    assert "sqlite3" in names
    assert not names & {"sqlalchemy", "fsspec", "redis", "pydantic", "botocore"}
    if args[0] in ("get", "exists", "info"):  # reads: no purge draw, no hashing of index names
        assert not names & {"random", "hashlib"}


def test_s3_get_does_not_pay_for_redis_or_sqlalchemy(tmp_path, s3_server):
    from tests.conftest import make_bucket, unique

    bucket = unique("startup")
    make_bucket(s3_server, bucket)
    options = ["--store", f"s3://{bucket}/p", "-b", f"endpoint_url={s3_server}", "-b", "key=testing"]
    options += ["-b", "secret=testing"]
    put = [sys.executable, "-m", "anystore_cli", *options, "put", "k", "v"]
    subprocess.run(put, cwd=tmp_path, check=True, capture_output=True)
    names = imported_modules(*options, "get", "k", cwd=str(tmp_path))
    assert "s3fs" in names
    assert not names & {"redis", "hiredis", "sqlalchemy", "psycopg", "psycopg2", "pymysql"}


def test_command_signatures_are_evaluated_once_at_import():
    """typer reads each command's signature on every run. Under `from __future__ import
    annotations` every annotation is a string that typer compiles and evaluates again on each
    start (about 5 % of a local `get`), so the modules whose functions typer reads keep real
    annotations."""
    from pathlib import Path

    import anystore_cli.cli.app as app_module

    folder = Path(app_module.__file__).parent
    readers = [folder / "app.py", *sorted((folder / "commands").glob("*.py"))]
    readers = [path for path in readers if path.name not in ("__init__.py", "common.py")]
    assert len(readers) >= 9
    for path in readers:
        assert "from __future__ import annotations" not in path.read_text(), path.name
