"""http(s) stores: read-only, against a local `http.server` serving a folder."""

from __future__ import annotations

import functools
import hashlib
import io
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from anystore_cli.core import DoesNotExist, ReadOnlyError, get_store

FILES = {
    "a.txt": b"hello\n",
    "dir/b.json": b'{"b": 1}',
    "dir/sub/c.bin": bytes(range(256)) * 64,
    "lines.txt": b'{"n":1}\n{"n":2}\nplain\n',
    "sp ace/x y.txt": b"spaced",
    "\u00fcn\u00ef/c\u00f6d\u00e9": b"unicode",
    "100%": b"percent",
    "a#b?c": b"url syntax",
}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_url(tmp_path: Path) -> Iterator[str]:
    """A local http.server on loopback serving a folder of FILES (with directory indexes)."""
    root = tmp_path / "served"
    for key, value in FILES.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def store(http_url: str) -> Any:
    return get_store(http_url, serialization_mode="raw")


def test_http_store_is_readonly_by_itself(store):
    assert store.readonly is True


def test_get_every_key_including_quoted_characters(store):
    for key, value in FILES.items():
        assert store.get(key) == value, key


def test_missing_key(store):
    with pytest.raises(DoesNotExist):
        store.get("nothing.txt")
    assert store.get("nothing.txt", raise_on_nonexist=False) is None
    with pytest.raises(DoesNotExist):
        store.info("nothing.txt")
    with pytest.raises(DoesNotExist), store.open("nothing.txt", "rb") as fh:
        fh.read()


def test_exists(store):
    assert store.exists("a.txt")
    assert store.exists("sp ace/x y.txt")
    assert store.exists("100%")
    assert not store.exists("nothing.txt")
    assert not store.exists("dir")  # a directory index page is not a key
    assert not store.exists("dir/sub")


def test_stream_lines(store):
    assert list(store.stream("lines.txt")) == [b'{"n":1}\n', b'{"n":2}\n', b"plain\n"]
    assert list(store.stream("lines.txt", serialization_mode="auto")) == [{"n": 1}, {"n": 2}, "plain\n"]


def test_open_streams_and_checksum(store):
    with store.open("dir/sub/c.bin", "rb") as fh:
        assert fh.read() == FILES["dir/sub/c.bin"]
    data = FILES["dir/sub/c.bin"]
    assert store.checksum("dir/sub/c.bin", "sha256") == hashlib.sha256(data).hexdigest()
    assert store.checksum("sp ace/x y.txt") == hashlib.sha1(b"spaced").hexdigest()


def test_info_from_headers(store):
    info = store.info("dir/sub/c.bin")
    assert info.size == len(FILES["dir/sub/c.bin"])
    assert info.key == "dir/sub/c.bin"
    assert info.name == "c.bin"
    assert isinstance(info.updated_at, datetime)


def test_keys_from_directory_indexes(store):
    assert sorted(store.iterate_keys()) == sorted(FILES)
    assert sorted(store.iterate_keys(prefix="dir/")) == ["dir/b.json", "dir/sub/c.bin"]
    assert sorted(store.iterate_keys(glob="**/*.txt")) == ["a.txt", "lines.txt", "sp ace/x y.txt"]
    assert sorted(store.iterate_keys(glob="sp ace/*")) == ["sp ace/x y.txt"]
    assert sorted(store.iterate_keys(exclude_prefix="dir")) == sorted(k for k in FILES if not k.startswith("dir"))


def test_child_store_under_a_path(http_url):
    child = get_store(f"{http_url}/dir", serialization_mode="raw")
    assert sorted(child.iterate_keys()) == ["b.json", "sub/c.bin"]
    assert child.get("sub/c.bin") == FILES["dir/sub/c.bin"]


def test_writes_raise_readonly_error(http_url):
    for store in (get_store(http_url), get_store(http_url, readonly=False)):
        for call in (
            lambda s=store: s.put("a.txt", "x"),
            lambda s=store: s.put("new", "x"),
            lambda s=store: s.delete("a.txt"),
            lambda s=store: s.pop("a.txt"),
            lambda s=store: s.touch("t"),
            lambda s=store: s.open("a.txt", "wb"),
            lambda s=store: s.put_many({"a": 1}),
            lambda s=store: s.put_stream("k", io.BytesIO(b"x")),
        ):
            with pytest.raises(ReadOnlyError):
                call()
    assert get_store(http_url, serialization_mode="raw").get("a.txt") == FILES["a.txt"]


def test_get_many_reads_in_parallel_and_in_order(store):
    keys = [*FILES, "missing"]
    got = list(store.get_many(keys))
    assert [k for k, _ in got] == keys
    assert dict(got) == {**FILES, "missing": None}


# ---- fsspec filesystems with directories and no buckets (sftp, ftp, smb, ...) ---------------
# fsspec's in-memory filesystem stands in for them: no server needed, same code path.


@pytest.fixture
def dir_store() -> Any:
    from anystore_cli.backends.fs import Store
    from tests.conftest import unique

    return Store(uri=f"memory://{unique()}/root", serialization_mode="raw")


def test_directory_filesystem_roundtrip_and_listing(dir_store):
    dir_store.put("a/b/c", b"1")
    dir_store.put("x", b"y")
    assert sorted(dir_store.iterate_keys()) == ["a/b/c", "x"]
    assert sorted(dir_store.iterate_keys(glob="a/*/c")) == ["a/b/c"]
    assert dir_store.get("a/b/c") == b"1"
    assert not dir_store.exists("a/b")
    info = dir_store.info("a/b/c")
    assert info.size == 1 and isinstance(info.updated_at, datetime)
    assert dir_store.put_stream("big", io.BytesIO(b"z" * 3_000_000)) == 3_000_000
    assert dir_store.pop("big") == b"z" * 3_000_000
    assert dir_store.delete("x") is True and dir_store.delete("x") is False


def test_directory_filesystem_failed_write_keeps_old_value_and_no_temporary(dir_store):
    dir_store.put("k", b"old")
    with pytest.raises(RuntimeError), dir_store.open("k", "wb") as fh:
        fh.write(b"partial")
        raise RuntimeError("boom")
    assert dir_store.get("k") == b"old"
    assert list(dir_store.iterate_keys()) == ["k"]


def test_server_that_stops_answering_fails_within_the_timeout():
    import socket
    import time

    from anystore_cli.core import StoreError

    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        store = get_store(
            f"http://127.0.0.1:{silent.getsockname()[1]}", backend_config={"connect_timeout": 1, "read_timeout": 1}
        )
        started = time.monotonic()
        with pytest.raises(StoreError):
            store.get("k")
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
