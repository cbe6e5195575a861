"""Files under stress: concurrent zip writers, special files as `-o` targets and inside a store,
a folder swapped for a symlink while `put` runs, and listings of names that cannot be read.

Every test drives real `anystore` processes (or library calls in real processes) and checks what
a user would: every reported key is there, nothing lands outside the store, nothing hangs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from tests.faults import record

# ---- zip: concurrent writers -------------------------------------------------------------------


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return archive.namelist()


def test_zip_mirror_with_threads_keeps_every_key(cli, tmp_path):
    source = tmp_path / "src"
    for number in range(100):
        (source / f"d{number % 7}").mkdir(parents=True, exist_ok=True)
        (source / f"d{number % 7}" / f"k{number}").write_bytes(f"value {number}".encode())
    archive = tmp_path / "out.zip"
    done = cli("mirror", "-i", str(source), "-o", str(archive), "-j", "8")
    assert done.returncode == 0, done.stderr
    assert b"100 copied" in done.stderr
    names = _zip_names(archive)
    assert len(names) == len(set(names)) == 100
    for number in (0, 57, 99):
        done = cli("-s", str(archive), "get", f"d{number % 7}/k{number}")
        assert done.stdout == f"value {number}".encode()
    record("zip-mirror-j8", tried=100, stored=len(names), lost=100 - len(names))


def test_zip_load_with_threads_keeps_every_key(cli, tmp_path):
    lines = "".join(json.dumps({"key": f"k/{n}", "value": f"v{n}"}) + "\n" for n in range(3000))
    archive = tmp_path / "load.zip"
    done = cli("-s", str(archive), "load", "-j", "4", input=lines.encode())
    assert done.returncode == 0, done.stderr
    names = _zip_names(archive)
    assert sorted(names) == sorted(f"k/{n}" for n in range(3000))
    record("zip-load-j4", tried=3000, stored=len(names), lost=3000 - len(names))


_ZIP_WRITER = textwrap.dedent(
    """
    import sys
    from anystore_cli.core import get_store

    store = get_store(sys.argv[1], serialization_mode="raw")
    for number in range(25):
        store.put(f"p{sys.argv[2]}/{number}", f"{sys.argv[2]}-{number}".encode())
    """
)


def test_zip_eight_processes_keep_every_key(cli, tmp_path):
    archive = tmp_path / "shared.zip"
    writers = [
        subprocess.Popen([sys.executable, "-c", _ZIP_WRITER, str(archive), str(number)], stderr=subprocess.PIPE)
        for number in range(8)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    names = _zip_names(archive)
    assert sorted(names) == sorted(f"p{w}/{n}" for w in range(8) for n in range(25))
    listed = cli("-s", str(archive), "keys").stdout.decode().split()
    assert len(listed) == 200
    assert cli("-s", str(archive), "get", "p3/24").stdout == b"3-24"
    record("zip-8-processes", tried=200, stored=len(names), lost=200 - len(names))


def test_zip_write_keeps_the_archive_mode_and_group(cli, tmp_path):
    archive = tmp_path / "kept.zip"
    assert cli("-s", str(archive), "put", "a", "1").returncode == 0
    os.chmod(archive, 0o640)
    group = os.stat(archive).st_gid
    if os.geteuid() == 0:  # root may give the archive any group
        group = 4242
        os.chown(archive, -1, group)
    assert cli("-s", str(archive), "put", "b", "2").returncode == 0
    info = os.stat(archive)
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_gid == group
    assert sorted(_zip_names(archive)) == ["a", "b"]


def test_zip_through_a_symlink_stays_a_symlink(cli, tmp_path):
    real = tmp_path / "real.zip"
    link = tmp_path / "link.zip"
    link.symlink_to(real)
    assert cli("-s", str(link), "put", "a", "1").returncode == 0
    assert cli("-s", str(link), "put", "b", "2").returncode == 0
    assert link.is_symlink()
    assert sorted(_zip_names(real)) == ["a", "b"]


def test_zip_listing_skips_names_that_cannot_be_read_and_lists_duplicates_once(cli, tmp_path):
    archive = tmp_path / "odd.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for name in ("../x", "a//b", "/abs", "./dot", "ok/1", "dup"):
            handle.writestr(name, b"v")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle.writestr("dup", b"second")
    done = cli("-s", str(archive), "keys")
    assert done.returncode == 0
    listed = done.stdout.decode().splitlines()
    assert sorted(listed) == ["dup", "ok/1"]
    for key in listed:  # everything listed can be read back by its name
        assert cli("-s", str(archive), "get", key).returncode == 0
    dumped = cli("-s", str(archive), "dump")
    assert dumped.returncode == 0
    assert [json.loads(line)["key"] for line in dumped.stdout.splitlines()].count("dup") == 1
    record("zip-odd-names", tried=7, listed=len(listed), unreadable_listed=0)


def test_http_listing_skips_links_that_cannot_be_read(cli, tmp_path):
    """An index page may link `../x`, `a//b` or `%2e%2e/x`: `keys` lists only what `get` can read."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = tmp_path / "served"
    (root / "sub").mkdir(parents=True)
    (root / "ok").write_bytes(b"ok")
    (root / "sub" / "b").write_bytes(b"b")
    (tmp_path / "x").write_bytes(b"outside")
    links = ["../../x", "../ok", "a//b", "b", "./c/../b", "%2e%2e/x"]
    page = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
    (root / "sub" / "index.html").write_text(f"<html><body>{page}</body></html>")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = cli("-s", url, "keys")
        assert done.returncode == 0, done.stderr
        listed = done.stdout.decode().splitlines()
        assert "ok" in listed
        assert not any(".." in key.split("/") or "//" in key for key in listed), listed
        for key in listed:
            assert cli("-s", url, "get", key).returncode == 0, key
    finally:
        server.shutdown()
        server.server_close()
    record("http-odd-links", tried=len(links), unreadable_listed=0)
