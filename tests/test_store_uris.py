"""Every store scheme is a uri: `io`, `get -o`, `put -i`, `smart_open` and `fsspec.open` take a
key of a Redis, SQL or served store by its uri, and refuse a uri that could name two things."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _redis_cleanup, anystore_bin, drop_sql_table, run_cli, unique

pytestmark = pytest.mark.service


def _redis_db(redis_url: str, db: int = 9) -> str:
    return f"redis://{redis_url.split('://', 1)[1].split('/', 1)[0]}/{db}"


@pytest.fixture
def redis_ns(redis_url) -> Iterator[tuple[str, str]]:
    """`(database uri, a fresh name)`: keys under the name are removed afterwards."""
    database, name = _redis_db(redis_url), unique("uri")
    yield database, name
    _redis_cleanup(database, name)


def test_io_writes_and_reads_a_redis_key_by_its_uri(redis_ns):
    import redis

    database, name = redis_ns
    data = bytes(range(256)) * 3
    written = run_cli("io", "-i", "-", "-o", f"{database}/{name}/some/key", input=data)
    assert written.returncode == 0, written.stderr
    client = redis.Redis.from_url(database)
    assert client.get(f"{name}/some/key") == data  # the uri's path after the database is the name
    client.close()
    read = run_cli("io", "-i", f"{database}/{name}/some/key", "-o", "-")
    assert (read.returncode, read.stdout) == (0, data)
    missing = run_cli("io", "-i", f"{database}/{name}/nothing", "-o", "-")
    assert missing.returncode == 1 and b"nothing" in missing.stderr


def test_get_o_and_put_i_take_store_uris(redis_ns, tmp_path):
    database, name = redis_ns
    local = str(tmp_path / "store")
    assert run_cli("-s", local, "put", "doc", "from local").returncode == 0
    out = run_cli("-s", local, "get", "doc", "-o", f"{database}/{name}/copied")
    assert out.returncode == 0, out.stderr
    back = run_cli("-s", local, "put", "again", "-i", f"{database}/{name}/copied")
    assert back.returncode == 0, back.stderr
    assert run_cli("-s", local, "get", "again").stdout == b"from local"
    # the same name through the Redis store's own uri with bare keys
    bare = run_cli("-s", database, "-b", "redis_prefix=", "get", f"{name}/copied")
    assert bare.stdout == b"from local"


@pytest.mark.parametrize(
    "uri",
    [
        "redis://127.0.0.1:6379/some/key",  # no database number: prefix or key?
        "redis://127.0.0.1:6379/0",  # no key
        "redis://127.0.0.1:6379/0/",
        "sqlite:///no/such/one.db/two.db/key",  # two places the database file could end
        "sqlite:///no/such/file/key",  # no database file at all
        "postgresql://postgres@127.0.0.1:5432/test",  # a database, no key
        "anystore+http://127.0.0.1:1/",
    ],
)
def test_ambiguous_or_incomplete_uri_is_refused(uri, tmp_path):
    done = run_cli("io", "-i", uri, "-o", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(b"anystore: error: ")
    assert not (tmp_path / "out").exists()


def test_sqlite_uri_names_the_existing_file_then_the_key(tmp_path):
    db = tmp_path / "data.db"
    assert run_cli("-s", f"sqlite:///{db}", "put", "a/b.db/c", "nested").returncode == 0
    # relative to the working folder, and absolute; a key segment ending `.db` is no database
    relative = run_cli("io", "-i", "sqlite:///data.db/a/b.db/c", "-o", "-", cwd=tmp_path)
    assert (relative.returncode, relative.stdout) == (0, b"nested"), relative.stderr
    absolute = run_cli("io", "-i", f"sqlite:///{db}/a/b.db/c", "-o", "-")
    assert (absolute.returncode, absolute.stdout) == (0, b"nested"), absolute.stderr
    written = run_cli("io", "-i", "-", "-o", f"sqlite:///{db}/x/y?table=other", input=b"\x00\xff")
    assert written.returncode == 0, written.stderr
    got = run_cli("-s", f"sqlite:///{db}", "-b", "table=other", "get", "x/y")
    assert got.stdout == b"\x00\xff"
    # a new file: the one segment with a SQLite suffix ends it
    fresh = run_cli("io", "-i", "-", "-o", f"sqlite:///{tmp_path}/new.sqlite/k", input=b"v")
    assert fresh.returncode == 0, fresh.stderr
    assert run_cli("-s", f"sqlite:///{tmp_path}/new.sqlite", "get", "k").stdout == b"v"


@pytest.mark.parametrize("server", ["postgres", "mysql"])
def test_sql_server_uri_is_database_then_key(server, request):
    url = request.getfixturevalue(f"{server}_url")
    table = unique("uri")
    request.addfinalizer(lambda: drop_sql_table(url, table))
    assert run_cli("-s", url, "-b", f"table={table}", "put", "seed", "x").returncode == 0
    written = run_cli("io", "-i", "-", "-o", f"{url}/deep/key?table={table}", input=b"sql bytes\x00")
    assert written.returncode == 0, written.stderr
    got = run_cli("-s", url, "-b", f"table={table}", "get", "deep/key")
    assert (got.returncode, got.stdout) == (0, b"sql bytes\x00")
    read = run_cli("io", "-i", f"{url}/deep/key?table={table}", "-o", "-")
    assert (read.returncode, read.stdout) == (0, b"sql bytes\x00")


def test_served_store_uri_is_the_server_root_then_the_key(tmp_path):
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    root = tmp_path / "root"
    assert run_cli("-s", str(root), "put", "a/b", "served value").returncode == 0
    proc = subprocess.Popen([anystore_bin(), "-q", "-s", str(root), "serve", "--port", "0"], stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        port = int(line.split(" on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
        done = run_cli("io", "-i", f"anystore+http://127.0.0.1:{port}/a/b", "-o", "-")
        assert (done.returncode, done.stdout) == (0, b"served value"), done.stderr
    finally:
        proc.terminate()
        proc.wait(10)


LIBRARY = """
import sys, fsspec
from anystore_cli.core import smart_open, smart_read, smart_write
base = sys.argv[1]
smart_write(base + "/written", b"by smart_write")
assert smart_read(base + "/written") == b"by smart_write"
assert "redis" not in fsspec.registry  # the smart_* functions leave fsspec's registry alone
from anystore_cli.store.protocols import register_protocols
assert "redis" in register_protocols()
with fsspec.open(base + "/opened", "wb") as handle:
    handle.write(b"by fsspec.open")
with fsspec.open(base + "/opened", "rb") as handle:
    assert handle.read() == b"by fsspec.open"
try:
    with smart_open(base + "/written", "wb") as handle:
        handle.write(b"half")
        raise RuntimeError("interrupted")
except RuntimeError:
    pass
assert smart_read(base + "/written") == b"by smart_write"  # the failed write left the old value
print("ok")
"""


def test_library_face_and_fsspec_open_take_store_uris(redis_ns):
    """In a fresh process: the smart_* functions out of the box, `fsspec.open` after
    `register_protocols()`."""
    database, name = redis_ns
    done = subprocess.run(
        [sys.executable, "-c", LIBRARY, f"{database}/{name}"], capture_output=True, timeout=60, cwd=Path("/")
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"ok\n"
    assert run_cli("io", "-i", f"{database}/{name}/opened", "-o", "-").stdout == b"by fsspec.open"


REGISTERED_ELSEWHERE = """
import fsspec
from fsspec.registry import register_implementation
from anystore_cli.store.protocols import register_protocols
register_implementation("redis", "somebody.else.RedisFileSystem")
done = register_protocols()
assert "redis" not in done and "sqlite" in done, done
from fsspec.registry import known_implementations
assert known_implementations["redis"]["class"] == "somebody.else.RedisFileSystem"
assert "redis" in register_protocols(replace=True)
print("ok")
"""


def test_register_protocols_leaves_another_packages_names_alone():
    """The anystore library registers `redis`, `sqlite`, ... itself: its programs keep them."""
    done = subprocess.run([sys.executable, "-c", REGISTERED_ELSEWHERE], capture_output=True, timeout=60, cwd="/")
    assert (done.returncode, done.stdout) == (0, b"ok\n"), done.stderr.decode()
