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

import pytest

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


# ---- local: a folder swapped for a symlink while writes run ------------------------------------

_SWAPPER = textwrap.dedent(
    """
    import os, sys, time
    store, outside, seconds, least = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    folders = [os.path.join(store, "d"), os.path.join(store, "d", "sub")]
    print("ready", flush=True)  # the writers run from now until this process ends
    start = time.monotonic()
    swaps = tries = 0
    # at least `seconds`, and on a busy machine on until `least` swaps were made (at most 60 s)
    while (time.monotonic() - start < seconds or swaps < least) and time.monotonic() - start < 60:
        for number, folder in enumerate(folders):
            # a fresh name each try: a name reused after a failed swap may be a folder already
            tries += 1
            hold = os.path.join(store, f"hold-{number}-{tries}")
            link = os.path.join(store, f"link-{number}-{tries}")
            try:
                os.rename(folder, hold)  # the folder out of the way (it stays in the store)
            except OSError:
                pass
            try:
                os.symlink(outside, link)
                os.rename(link, folder)  # now a symlink to the outside folder
                swaps += 1
            except OSError:
                if os.path.islink(link):
                    os.unlink(link)
            time.sleep(0.0002)
            try:
                if os.path.islink(folder):
                    os.unlink(folder)
            except OSError:
                pass
    print(swaps)
    """
)


def _outside_entries(outside: Path) -> list[str]:
    return sorted(str(p.relative_to(outside)) for p in outside.rglob("*"))


def test_local_writes_never_land_outside_when_a_folder_is_swapped_for_a_symlink(cli, tmp_path):
    """A folder of the store replaced by a symlink to an outside folder, again and again, while
    `put`, `put_stream`, `put_many`, `pop`, `delete` and `anystore put` run: nothing is ever
    created (or removed) outside; the writes either land inside or fail."""
    import io
    import threading

    from anystore_cli.core import get_store

    store_dir = tmp_path / "store"
    (store_dir / "d" / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"keep")
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(store_dir), str(outside), "3.0", "200"], stdout=subprocess.PIPE
    )
    store = get_store(uri=str(store_dir), serialization_mode="raw")
    counts = {"tried": 0, "failed": 0}
    assert swapper.stdout is not None and swapper.stdout.readline().strip() == b"ready"

    def library_loop(offset: int) -> None:
        number = offset
        while swapper.poll() is None:
            number += 2
            calls = (
                lambda n=number: store.put(f"d/k{n}", b"v"),
                lambda n=number: store.put(f"d/sub/k{n}", b"v"),
                lambda n=number: store.put_stream(f"d/s{n}", io.BytesIO(b"streamed")),
                lambda n=number: store.put_many({f"d/m{n}": b"1", f"d/sub/m{n}": b"2"}),
                lambda n=number: store.pop(f"d/k{n - 2}"),
                lambda n=number: store.delete(f"d/sub/k{n - 2}"),
                lambda: store.delete("keep"),
            )
            for call in calls:
                counts["tried"] += 1
                try:
                    call()
                except Exception:  # noqa: BLE001 - refused or missing: fine, as long as nothing escapes
                    counts["failed"] += 1

    threads = [threading.Thread(target=library_loop, args=(offset,)) for offset in (0, 1)]
    for thread in threads:
        thread.start()
    cli_puts = 0
    while swapper.poll() is None:
        cli("-s", str(store_dir), "put", f"d/sub/cli{cli_puts}", "v")
        cli_puts += 1
    for thread in threads:
        thread.join()
    swaps = int((swapper.communicate(timeout=30)[0] or b"0").split()[-1])
    assert swaps >= 200, "the swapper did not run"
    assert _outside_entries(outside) == ["keep"], "a write landed outside the store"
    assert (outside / "keep").read_bytes() == b"keep"
    record(
        "local-symlink-swap-race",
        swaps=swaps,
        tried=counts["tried"] + cli_puts,
        failed=counts["failed"],
        outside=len(_outside_entries(outside)) - 1,
    )


# ---- `-o PATH`: devices, FIFOs, /dev/stdout, symlinks -------------------------------------------


def _char_device(path: Path) -> bool:
    """Make a character device like /dev/null at `path` (root only); False when not allowed."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return False
    return True


def _fifo_reader(path: Path) -> tuple[object, dict[str, bytes]]:
    """A thread that reads the FIFO at `path` to its end."""
    import threading

    got: dict[str, bytes] = {}

    def read() -> None:
        with open(path, "rb") as handle:
            got["data"] = handle.read()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A local store with two keys."""
    store = tmp_path / "store"
    (store / "dir").mkdir(parents=True)
    (store / "dir" / "k").write_bytes(b"value of k")
    (store / "other").write_bytes(b"other value")
    return store


OUTPUT_COMMANDS = {
    "get": (["get", "dir/k", "-o"], b"value of k"),
    "pop": (["pop", "dir/k", "-o"], b"value of k"),
    "keys": (["keys", "--sort", "-o"], b"dir/k\nother\n"),
    "dump": (["dump", "--prefix", "dir/", "-o"], b'{"key":"dir/k","value":"value of k"}\n'),
}


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_output_to_a_fifo_is_written_into_not_replaced(cli, filled, tmp_path, command):
    argv, expected = OUTPUT_COMMANDS[command]
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    thread, got = _fifo_reader(fifo)
    done = cli("-s", str(filled), *argv, str(fifo), timeout=20)
    thread.join(5)  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced"
    assert got.get("data", b"").replace(b" ", b"") == expected.replace(b" ", b"")
    record("output-fifo", command=command, replaced=0)


def test_io_output_to_a_fifo_and_a_device(cli, tmp_path):
    source = tmp_path / "in"
    source.write_bytes(b"copied")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    thread, got = _fifo_reader(fifo)
    done = cli("io", "-i", str(source), "-o", str(fifo), timeout=20)
    thread.join(5)  # type: ignore[attr-defined]
    assert done.returncode == 0, done.stderr
    assert got.get("data") == b"copied"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    device = tmp_path / "null"
    if _char_device(device):
        assert cli("io", "-i", str(source), "-o", str(device)).returncode == 0
        assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_get_to_a_character_device_keeps_the_device(cli, filled, tmp_path):
    device = tmp_path / "null"
    if not _char_device(device):
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    for argv in (["get", "dir/k"], ["keys"], ["dump"], ["get", "other", "--mode", "auto"]):
        done = cli("-s", str(filled), *argv, "-o", str(device))
        assert done.returncode == 0, (argv, done.stderr)
        assert stat.S_ISCHR(os.lstat(device).st_mode), f"{argv} replaced the device with a file"
    record("output-device", tried=4, replaced=0)


def test_output_to_process_substitution_and_dev_fd(cli, filled, tmp_path):
    from tests.conftest import anystore_bin

    out = tmp_path / "gz-out"
    script = f'"{anystore_bin()}" -s "{filled}" get dir/k -o >(cat > "{out}"); wait'
    done = subprocess.run(["bash", "-c", script], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for _ in range(50):
        if out.exists() and out.read_bytes():
            break
        import time

        time.sleep(0.1)
    assert out.read_bytes() == b"value of k"
    done = cli("-s", str(filled), "get", "dir/k", "-o", "/dev/fd/1")
    assert (done.returncode, done.stdout) == (0, b"value of k")


def test_output_to_dev_stdout_writes_to_stdout(cli, filled, tmp_path):
    before = os.readlink("/dev/stdout") if os.path.islink("/dev/stdout") else None
    done = cli("-s", str(filled), "get", "dir/k", "-o", "/dev/stdout")
    assert (done.returncode, done.stdout) == (0, b"value of k"), done.stderr
    # appended after what the shell wrote first, as a redirection to /dev/stdout does
    target = tmp_path / "log"
    from tests.conftest import anystore_bin

    script = (
        f'{{ echo head; "{anystore_bin()}" -s "{filled}" get dir/k -o /dev/stdout; echo; echo tail; }} > "{target}"'
    )
    assert subprocess.run(["bash", "-c", script], timeout=30).returncode == 0
    assert target.read_bytes() == b"head\nvalue of k\ntail\n"
    assert (os.readlink("/dev/stdout") if os.path.islink("/dev/stdout") else None) == before


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(cli, filled, tmp_path):
    real = tmp_path / "real.txt"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    done = cli("-s", str(filled), "get", "dir/k", "-o", str(link))
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()
    assert real.read_bytes() == b"value of k"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640, "the file's mode was not kept"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    done = cli("-s", str(filled), "get", "dir/k", "-o", str(dangling))
    assert done.returncode == 2
    assert b"dangling symlink" in done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_output_to_a_regular_file_stays_atomic(cli, filled, tmp_path):
    target = tmp_path / "out"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    inode = target.stat().st_ino
    assert cli("-s", str(filled), "get", "dir/k", "-o", str(target)).returncode == 0
    assert target.read_bytes() == b"value of k"
    assert target.stat().st_ino != inode, "a regular file is replaced by a rename"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert cli("-s", str(filled), "get", "missing", "-o", str(target)).returncode == 1
    assert target.read_bytes() == b"value of k"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "store"]


# ---- special files inside a store -------------------------------------------------------------


def test_fifo_and_device_inside_a_store_are_refused_not_read(cli, filled):
    os.mkfifo(filled / "fifo")
    (filled / "dir" / "link_to_fifo").symlink_to("../fifo")
    names = ["fifo", "dir/link_to_fifo"]
    if _char_device(filled / "zero"):
        os.unlink(filled / "zero")
        os.mknod(filled / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # like /dev/zero: endless
        names.append("zero")
    tried = 0
    for name in names:
        for argv in (["get", name], ["checksum", name], ["stream", name], ["pop", name], ["get", name, "-o", "x"]):
            try:
                done = cli("-s", str(filled), *argv, timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{argv} hung on a special file")
            tried += 1
            assert done.returncode == 3, (argv, done.returncode, done.stderr)
            assert b"not a regular file" in done.stderr
            assert done.stdout == b""
        assert cli("-s", str(filled), "exists", name).returncode == 1
        assert cli("-s", str(filled), "info", name).returncode == 1
    assert stat.S_ISFIFO(os.lstat(filled / "fifo").st_mode), "pop removed the FIFO"
    keys = cli("-s", str(filled), "keys").stdout.decode().split()
    assert sorted(keys) == ["dir/k", "other"]
    assert cli("-s", str(filled), "dump").returncode == 0
    record("special-files-in-store", tried=tried, hung=0)


def test_readonly_on_a_new_sqlite_path_creates_no_file(cli, tmp_path):
    path = tmp_path / "new.db"
    # a store that is not there: an error to read or list, "no" to `exists`, refused to write
    for argv, status in ((["get", "k"], 3), (["keys"], 3), (["exists", "k"], 1), (["dump"], 3), (["put", "k", "v"], 3)):
        done = cli("--readonly", "-s", f"sqlite:///{path}", *argv)
        assert done.returncode == status, (argv, done.returncode, done.stderr)
        assert b"Traceback" not in done.stderr
        assert not path.exists(), f"{argv} created the database file"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
