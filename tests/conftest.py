"""Shared fixtures: real servers (Redis, PostgreSQL, MariaDB, S3 via moto, http.server) and a
factory giving each test its own namespace (key prefix, table or bucket) on every backend.

Servers are read from the environment with the machine's defaults. A missing server skips
the tests that need it, except when `CI` is set: there it fails them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("ANYSTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("ANYSTORE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("ANYSTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = bool(os.environ.get("CI"))

if IN_CI:  # property tests run the same (seeded) examples in CI; locally they explore anew
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile("ci")

ALL_BACKENDS = ["memory", "local", "zip", "sqlite", "postgres", "mysql", "redis", "s3"]
FILE_BACKENDS = ["local", "zip"]
TTL_BACKENDS = {"memory", "sqlite", "postgres", "mysql", "redis"}
CORE_BACKENDS = ["memory", "local", "zip"]


def reachable(url: str, default_port: int) -> bool:
    """Tell whether a TCP server answers at the host and port of `url`."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def need(name: str, ok: bool) -> None:
    """Skip (or, under CI, fail) a test whose server is missing."""
    if ok:
        return
    message = f"{name} is not answering; start it or set its ANYSTORE_TEST_* url"
    if IN_CI:
        pytest.fail(f"CI is set but {message}")
    pytest.skip(message)


def unique(prefix: str = "t") -> str:
    """A short unique name for a table, bucket or key prefix."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    need("Redis", reachable(REDIS_URL, 6379))
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    need("PostgreSQL", reachable(POSTGRES_URL, 5432))
    return POSTGRES_URL


@pytest.fixture(scope="session")
def mysql_url() -> str:
    need("MariaDB/MySQL", reachable(MYSQL_URL, 3306))
    return MYSQL_URL


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 endpoint: moto in server mode on loopback, reached over HTTP."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need("moto[server] (S3 endpoint)", False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_bucket(endpoint: str, name: str) -> None:
    """Create a bucket on the test S3 endpoint."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)


def s3_options(endpoint: str) -> dict[str, Any]:
    """backend_config for a store on the test S3 endpoint."""
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}


def drop_sql_table(url: str, table: str) -> None:
    """Drop a test table (best effort)."""
    with contextlib.suppress(Exception):
        import sqlalchemy

        from anystore_cli.backends.sql import get_engine

        with get_engine(url).begin() as conn:
            conn.execute(sqlalchemy.text(f"DROP TABLE IF EXISTS {table}"))


def make_sql_table(url: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """An empty SQL store is there: its table (and SQLite file) exists; returns `(url, config)`."""
    from anystore_cli.backends.sql import SqlStore

    SqlStore(uri=url, backend_config=config).ensure_table()
    return url, config


class StoreFactory:
    """Builds stores in a fresh namespace per test, and cleans up after."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp_path = tmp_path
        self.cleanups: list[Any] = []

    def uri_and_config(self, backend: str) -> tuple[str, dict[str, Any]]:
        """Return `(uri, backend_config)` of a fresh, empty store on `backend`."""
        name = unique()
        if backend == "memory":
            return f"memory://{name}", {}
        if backend == "local":  # an empty store is there: a folder or an archive without keys
            (self.tmp_path / name).mkdir()
            return str(self.tmp_path / name), {}
        if backend == "zip":
            zipfile.ZipFile(self.tmp_path / f"{name}.zip", "w").close()
            return str(self.tmp_path / f"{name}.zip"), {}
        if backend == "sqlite":
            return make_sql_table(f"sqlite:///{self.tmp_path / name}.db", {})
        if backend in ("postgres", "mysql"):
            url = self.request.getfixturevalue(f"{backend}_url")
            self.cleanups.append(lambda: drop_sql_table(url, name))
            return make_sql_table(url, {"table": name})
        if backend == "redis":
            url = self.request.getfixturevalue("redis_url")
            self.cleanups.append(lambda: _redis_cleanup(url, name))
            return url, {"redis_prefix": name}
        if backend == "s3":
            endpoint = self.request.getfixturevalue("s3_server")
            make_bucket(endpoint, name)
            return f"s3://{name}", s3_options(endpoint)
        raise ValueError(backend)

    def __call__(self, backend: str, **kwargs: Any) -> Any:
        from anystore_cli.core import get_store

        uri, config = self.uri_and_config(backend)
        config.update(kwargs.pop("backend_config", None) or {})
        return get_store(uri=uri, backend_config=config or None, **kwargs)

    def close(self) -> None:
        for cleanup in self.cleanups:
            with contextlib.suppress(Exception):
                cleanup()


def _redis_cleanup(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(request, tmp_path)
    yield factory
    factory.close()


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend of the contract suite in turn."""
    return request.param


@pytest.fixture
def store(backend: str, store_factory: StoreFactory) -> Any:
    """A fresh, empty store on each backend."""
    return store_factory(backend)


# ---- the command line as a user runs it ---------------------------------------------------


def anystore_bin() -> str:
    """The installed `anystore` console script (next to this Python)."""
    candidate = Path(sys.executable).parent / "anystore"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("anystore")
    if found is None:
        pytest.fail("the `anystore` command is not installed (pip install -e .)")
    return found


def run_cli(
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the installed `anystore` with real pipes; stdin is closed unless `input` is given."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update(env or {})
    return subprocess.run(
        [anystore_bin(), *args],
        input=input if input is not None else b"",
        capture_output=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def cli() -> Any:
    """`run_cli` as a fixture."""
    return run_cli
