"""Nothing is empty by accident: a store that is not there is an error, never an empty listing;
a folder that cannot be read is an error, never skipped; `mirror --delete` deletes nothing after
any listing error; overlapping mirrors are refused."""

from __future__ import annotations

import ctypes
import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anystore_cli.errors import StoreError, StoreNotFound
from anystore_cli.store.registry import get_store as backend_store
from tests.conftest import anystore_bin, run_cli
from tests.test_cli_support import stderr_text

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def _fill(root: Path, values: dict[str, bytes]) -> None:
    for key, value in values.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(value)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def _error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = stderr_text(proc).strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


# ---- a store that is not there -------------------------------------------------------------


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server (directory index pages) over a folder: its url and the folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    "command",
    [["keys"], ["keys", "-l"], ["keys", "--json"], ["keys", "--count"], ["dump"], ["rm", "--prefix", "a", "-f"]],
)
@pytest.mark.parametrize("kind", ["missing folder", "regular file", "missing zip", "not a zip"])
def test_listing_a_local_store_that_is_not_there_exits_3_naming_it(tmp_path, kind, command):
    uri = {
        "missing folder": tmp_path / "nothere",
        "regular file": tmp_path / "file.txt",
        "missing zip": tmp_path / "nothere.zip",
        "not a zip": tmp_path / "text.zip",
    }[kind]
    if kind in ("regular file", "not a zip"):
        uri.write_bytes(b"just text\n")
    before = sorted(os.listdir(tmp_path))
    proc = run_cli("-s", str(uri), *command)
    assert proc.returncode == 3, stderr_text(proc)
    assert proc.stdout == b""
    line = _error_line(proc)
    assert line.startswith("anystore: error: ") and str(uri) in line, line
    assert ("does not exist" if "missing" in kind else "not a") in line
    assert sorted(os.listdir(tmp_path)) == before  # nothing created by a read


def test_http_index_answering_404_is_an_error_and_a_missing_prefix_folder_is_empty(http_root):
    url, folder = http_root
    _fill(folder / "site", {"a.txt": b"A", "sub/b.txt": b"B"})
    proc = run_cli("-s", f"{url}/site", "keys", "--sort")
    assert (proc.returncode, proc.stdout) == (0, b"a.txt\nsub/b.txt\n"), stderr_text(proc)
    for command in (["keys"], ["keys", "-l"], ["dump"]):
        proc = run_cli("-s", f"{url}/nosite", *command)
        assert proc.returncode == 3, stderr_text(proc)
        assert f"{url}/nosite" in _error_line(proc) and "does not exist" in _error_line(proc)
    # a folder of the prefix that is not there under a store that is: no keys
    proc = run_cli("-s", f"{url}/site", "keys", "--prefix", "nosub/")
    assert (proc.returncode, proc.stdout) == (0, b""), stderr_text(proc)


def test_the_command_lines_stores_raise_for_a_store_that_is_not_there(tmp_path):
    """The store layer under the commands; the library face lists such a store as empty, as
    anystore does (tests/test_library_face.py)."""
    for path in (tmp_path / "nothere", tmp_path / "nothere.zip"):
        store = backend_store(str(path))
        with pytest.raises(StoreNotFound, match="does not exist"):
            list(store.iterate_keys())
        assert store.get("k", raise_on_nonexist=False) is None  # a read of a key is still "missing"
        assert not path.exists()
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a folder"):
        list(backend_store(str(tmp_path / "plain")).iterate_keys())


def test_the_default_store_in_a_fresh_folder_is_not_there_until_the_first_put(tmp_path):
    proc = run_cli("keys", cwd=tmp_path)
    assert proc.returncode == 3, stderr_text(proc)
    assert "`.anystore`" in _error_line(proc) and "does not exist" in _error_line(proc)
    assert not (tmp_path / ".anystore").exists()
    # the README's install line
    proc = subprocess.run(
        f"echo hello | {anystore_bin()} put greeting && {anystore_bin()} get greeting",
        shell=True,
        capture_output=True,
        cwd=tmp_path,
    )
    assert (proc.returncode, proc.stdout) == (0, b"hello\n"), stderr_text(proc)
    proc = run_cli("keys", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (0, b"greeting\n")


@pytest.mark.parametrize("name", ["new/folder", "new.zip"])
def test_put_into_a_new_folder_or_archive_still_creates_it(tmp_path, name):
    uri = str(tmp_path / name)
    assert run_cli("-s", uri, "put", "k", "v").returncode == 0
    proc = run_cli("-s", uri, "keys")
    assert (proc.returncode, proc.stdout) == (0, b"k\n"), stderr_text(proc)


def test_mirror_delete_from_a_source_that_is_not_there_deletes_nothing(tmp_path):
    target = tmp_path / "dst"
    _fill(target, {"keep/1": b"1", "keep/2": b"2"})
    for source in (tmp_path / "buidl", tmp_path / "buidl.zip"):
        proc = run_cli("mirror", "-i", str(source), "-o", str(target), "--delete")
        assert proc.returncode == 3, stderr_text(proc)
        assert str(source) in _error_line(proc) and "does not exist" in _error_line(proc)
        assert "deleted" not in stderr_text(proc)
        assert _files(target) == {"keep/1": b"1", "keep/2": b"2"}
        proc = run_cli("check", "-i", str(source), "-o", str(target))
        assert proc.returncode == 3, stderr_text(proc)
        assert not source.exists()


def test_mirror_into_a_target_that_is_not_there_creates_it_unless_no_create(tmp_path):
    source = tmp_path / "src"
    _fill(source, {"a": b"1", "b/c": b"2"})
    refused = run_cli("mirror", "-i", str(source), "-o", str(tmp_path / "new"), "--no-create")
    assert refused.returncode == 3, stderr_text(refused)
    assert str(tmp_path / "new") in _error_line(refused)
    assert not (tmp_path / "new").exists()
    for target in (tmp_path / "new", tmp_path / "new.zip"):
        proc = run_cli("mirror", "-i", str(source), "-o", str(target), "--delete")
        assert proc.returncode == 0, stderr_text(proc)
        assert "2 copied" in stderr_text(proc)
        assert run_cli("check", "-i", str(source), "-o", str(target)).returncode == 0


# ---- a folder that cannot be read ----------------------------------------------------------


def _drop_read_override() -> None:
    """In the child: lose root's right to read any folder (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH leave the bounding set, so the exec'd command runs without them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _run_bound(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`anystore` as a user bound by file permissions (root runs it without its override)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    preexec = _drop_read_override if os.geteuid() == 0 else None
    return subprocess.run(
        [anystore_bin(), *args], input=b"", capture_output=True, env=env, timeout=60, preexec_fn=preexec
    )


@pytest.fixture
def unreadable(tmp_path: Path) -> Iterator[Path]:
    """A source folder whose `private/` cannot be listed by `_run_bound`."""
    source = tmp_path / "src"
    _fill(source, {"a": b"A", "pub/b": b"B", "private/secret": b"S", "private/more/x": b"X"})
    (source / "private").chmod(0)
    try:
        probe = subprocess.run(
            ["ls", str(source / "private")],
            capture_output=True,
            preexec_fn=_drop_read_override if os.geteuid() == 0 else None,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        (source / "private").chmod(0o755)
        pytest.skip(f"cannot run a command without root's read override here: {exc}")
    if probe.returncode == 0:
        (source / "private").chmod(0o755)
        pytest.skip("a folder with mode 000 can still be listed here (capabilities not droppable)")
    yield source
    (source / "private").chmod(0o755)


def test_listing_a_store_with_an_unreadable_folder_exits_3_naming_it(unreadable):
    for command in (["keys"], ["keys", "--json"], ["dump"]):
        proc = _run_bound("-s", str(unreadable), *command)
        assert proc.returncode == 3, stderr_text(proc)
        assert b"private" not in proc.stdout
        line = _error_line(proc)
        assert "`private`" in line and "incomplete" in line and str(unreadable) in line, line
    line = _error_line(proc)
    assert "`private`" in line and "incomplete" in line and str(unreadable) in line


def test_mirror_delete_after_an_unreadable_folder_deletes_nothing_and_exits_3(unreadable, tmp_path):
    target = tmp_path / "dst"
    _fill(target, {"private/secret": b"S", "private/more/x": b"X", "stale": b"old"})
    proc = _run_bound("mirror", "-i", str(unreadable), "-o", str(target), "--delete")
    err = stderr_text(proc)
    assert proc.returncode == 3, err
    assert "`private`" in err and "nothing deleted" in err and "1 listing error" in err
    # what could be listed is copied; nothing of the target is deleted
    assert _files(target) == {"a": b"A", "pub/b": b"B", "private/secret": b"S", "private/more/x": b"X", "stale": b"old"}
    dry = _run_bound("mirror", "-i", str(unreadable), "-o", str(target), "--delete", "--dry-run")
    assert dry.returncode == 3, stderr_text(dry)
    assert b"delete" not in dry.stdout


def test_check_with_an_unreadable_folder_exits_3_not_equal(unreadable, tmp_path):
    target = tmp_path / "dst"
    _fill(target, {"a": b"A", "pub/b": b"B", "private/secret": b"S", "private/more/x": b"X"})
    proc = _run_bound("check", "-i", str(unreadable), "-o", str(target))
    assert proc.returncode == 3, stderr_text(proc)
    assert "`private`" in _error_line(proc)


def test_http_listing_with_a_subfolder_answering_404_is_incomplete(http_root):
    url, folder = http_root
    _fill(folder / "site", {"a.txt": b"A", "sub/b.txt": b"B"})
    # an index page that links to a folder which is not there
    (folder / "site" / "index.html").write_text('<a href="a.txt">a.txt</a> <a href="gone/">gone/</a>')
    proc = run_cli("-s", f"{url}/site", "keys")
    assert proc.returncode == 3, stderr_text(proc)
    assert "incomplete" in _error_line(proc)


# ---- overlapping mirrors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "extra"),
    [
        ("s/sub", "s", ["--delete"]),
        ("s", "s/sub", []),
        ("s", "s", []),
        ("s", "./s/../s/", []),
        ("s", "link/sub", []),
        ("s", "s/archive.zip", []),
    ],
)
def test_overlapping_mirrors_are_refused(tmp_path, source, target, extra):
    _fill(tmp_path / "s", {"sub/a": b"1", "b": b"2"})
    (tmp_path / "link").symlink_to(tmp_path / "s")
    before = _files(tmp_path / "s")
    proc = run_cli("mirror", "-i", source, "-o", target, *extra, cwd=tmp_path)
    assert proc.returncode == 2, stderr_text(proc)
    line = _error_line(proc)
    assert "overlap" in line or "same store" in line, line
    assert _files(tmp_path / "s") == before


def test_side_by_side_folders_with_a_common_name_start_are_not_overlapping(tmp_path):
    _fill(tmp_path / "s", {"a": b"1"})
    proc = run_cli("mirror", "-i", "s", "-o", "s2", cwd=tmp_path)
    assert proc.returncode == 0, stderr_text(proc)
    assert _files(tmp_path / "s2") == {"a": b"1"}


@pytest.mark.parametrize(
    ("source", "target", "options"),
    [
        ("{db}/{p}/sub", "{db}/{p}", ["--delete"]),
        ("{db}/{p}", "{db}/{p}/sub", []),
        ("{db}/{p}", "{db}", ["--to-config", "redis_prefix={p}"]),
        ("{db}", "{db}/{p}", ["--from-config", "redis_prefix="]),
    ],
)
def test_overlapping_redis_mirrors_are_refused(redis_url, source, target, options):
    """The database is the uri's first path segment; what follows is the key prefix (as the
    anystore 1.2 line writes it), so `/DB/P/sub` lies inside `/DB/P`."""
    from tests.conftest import unique

    base = redis_url.rsplit("/", 1)[0]
    db, prefix = redis_url.rsplit("/", 1)[1] or "0", unique()
    source_uri = base + "/" + source.format(db=db, p=prefix)
    target_uri = base + "/" + target.format(db=db, p=prefix)
    assert run_cli("-s", f"{base}/{db}/{prefix}/sub", "put", "x", "1").returncode == 0
    try:
        proc = run_cli("mirror", "-i", source_uri, "-o", target_uri, *(o.format(p=prefix) for o in options))
        assert proc.returncode == 2, stderr_text(proc)
        line = _error_line(proc)
        assert "overlap" in line or "same store" in line, line
        assert run_cli("-s", f"{base}/{db}/{prefix}/sub", "get", "x").stdout == b"1"
    finally:
        run_cli("-s", f"{base}/{db}/{prefix}", "rm", "--glob", "**", "-f")
