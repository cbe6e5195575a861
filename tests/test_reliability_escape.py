"""No escape from a store: hostile keys, prefixes, symlinks and archives never make anystore read
or write outside the store's folder.

Every test puts the store at `outer/store`, next to files and folders of its own (`outer/x`,
`outer/secret.txt`, `outer/secret_dir/...`), and checks after each command that nothing under
`outer` but the store changed, and that no secret reached stdout or stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from anystore_cli.core import InvalidKey, get_store
from tests.faults import record

SECRET = b"TOP-SECRET-outside-the-store\n"
ESCAPING_KEYS = ["../x", "a/../../x", "..", "a/..", "./../x", "a/./../../x", "../store/../x", "../../etc/passwd"]
"""Keys with a `..` segment: refused (status 2) by every command"""


def snapshot(folder: Path, skip: Path) -> dict[str, str]:
    """Every path under `folder` but `skip`, with a digest of its content (or its link target)."""
    result: dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here == skip or skip in here.parents:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = here / name
            if path == skip:
                continue
            if path.is_symlink():
                result[str(path)] = f"link:{os.readlink(path)}"
            elif path.is_file():
                result[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                result[str(path)] = "dir"
    return result


@pytest.fixture
def outer(tmp_path: Path) -> Path:
    """`outer/` with a store folder and things outside it worth stealing or clobbering."""
    root = tmp_path / "outer"
    (root / "store" / "inside").mkdir(parents=True)
    (root / "store" / "inside" / "ok").write_bytes(b"inside value")
    (root / "x").write_bytes(b"outer x")
    (root / "victim").write_bytes(b"victim value")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "secret_dir").mkdir()
    (root / "secret_dir" / "secret.txt").write_bytes(SECRET)
    return root


@pytest.fixture
def guard(outer: Path):
    """Call `guard()` to assert nothing outside `outer/store` changed since the test began."""
    before = snapshot(outer, outer / "store")

    def check() -> None:
        assert snapshot(outer, outer / "store") == before, "something outside the store changed"

    return check


def _leaks(done) -> bool:
    return b"TOP-SECRET" in done.stdout or b"TOP-SECRET" in done.stderr


# ---- hostile keys on the command line -----------------------------------------------------------


@pytest.mark.parametrize("key", ["../x", "a/../../x", "..", "./../x", "../../etc/passwd"])
def test_cli_refuses_keys_with_dotdot_segments(cli, outer, guard, key):
    store = str(outer / "store")
    attempts = [
        ["put", key, "clobbered"],
        ["put", key, "-i", str(outer / "x")],
        ["get", key],
        ["get", key, "-o", str(outer / "got")],
        ["pop", key],
        ["rm", key],
        ["rm", "-f", key],
        ["info", key],
        ["checksum", key],
        ["stream", key],
        ["touch", key],
        ["exists", key],
    ]
    for argv in attempts:
        done = cli("-s", store, *argv)
        assert done.returncode == 2, f"{argv}: exit {done.returncode}, stderr {done.stderr!r}"
        assert done.stdout == b""
        assert b"Traceback" not in done.stderr
        guard()
    assert not (outer / "got").exists()
    record("escape-cli-dotdot-key", key=key, tried=len(attempts), escaped=0)


def test_cli_refuses_absolute_keys(cli, outer, guard):
    store = str(outer / "store")
    for key in (str(outer / "victim"), str(outer / "secret.txt"), "/etc/passwd", "//etc/passwd"):
        for argv in (["put", key, "clobbered"], ["get", key], ["rm", key], ["pop", key], ["checksum", key]):
            done = cli("-s", store, *argv)
            assert done.returncode == 2, f"{argv}: exit {done.returncode}"
            assert done.stdout == b""
            assert b"root:" not in done.stdout and not _leaks(done)
            guard()
    assert not (outer / "store" / "etc").exists()


LOOKALIKE_KEYS = ["%2e%2e/x", "%2e%2e%2fx", "..%2fx", "%2E%2E/%2e%2e/x", "..x/y", "a..b", "...", "..\\x"]


@pytest.mark.parametrize("key", LOOKALIKE_KEYS)
def test_cli_percent_encoded_and_lookalike_keys_are_literal_and_stay_inside(cli, outer, guard, key):
    store = outer / "store"
    assert cli("-s", str(store), "put", key, "literal").returncode == 0
    assert (store / key).read_bytes() == b"literal"
    done = cli("-s", str(store), "get", key)
    assert (done.returncode, done.stdout) == (0, b"literal")
    listed = cli("-s", str(store), "keys").stdout.decode().splitlines()
    assert key in listed
    assert cli("-s", str(store), "rm", key).returncode == 0
    assert not (store / key).exists()
    guard()


def test_cli_refuses_nul_bytes_in_keys_from_files(cli, outer, guard, tmp_path):
    """A NUL byte cannot pass through argv; it can through `load` and `dump --keys-from`."""
    store = str(outer / "store")
    line = json.dumps({"key": "inside/a\x00/../../x", "value": "x"}) + "\n"
    done = cli("-s", store, "load", input=line.encode())
    assert done.returncode == 2
    assert b"NUL" in done.stderr
    keys_file = tmp_path / "keys"
    keys_file.write_bytes(b"inside/ok\x00../x\n")
    done = cli("-s", store, "dump", "--keys-from", str(keys_file))
    assert done.returncode == 2
    guard()


def test_cli_load_refuses_escaping_keys_and_writes_nothing_outside(cli, outer, guard):
    store = str(outer / "store")
    for key in ESCAPING_KEYS + [str(outer / "victim")]:
        line = json.dumps({"key": key, "value": "clobbered"}) + "\n"
        done = cli("-s", store, "load", input=line.encode())
        assert done.returncode == 2, f"{key}: exit {done.returncode}"
        guard()


PATTERNS = ["../", "..", "../secret_dir/", "../*", "../**", "inside/../../", "/../", "dir_link/", "dir_link/*"]


@pytest.mark.parametrize("option", ["--prefix", "--glob"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_cli_prefix_and_glob_never_list_or_delete_outside(cli, outer, linked, guard, option, pattern):
    store = str(outer / "store")
    done = cli("-s", store, "keys", option, pattern)
    assert done.returncode in (0, 2)
    assert not any(line.startswith("..") or "secret" in line for line in done.stdout.decode().splitlines())
    done = cli("-s", store, "dump", option, pattern)
    assert done.returncode in (0, 2) and not _leaks(done)
    done = cli("-s", store, "rm", "-f", option, pattern)
    assert done.returncode in (0, 2)
    done = cli("-s", store, "mirror", "-i", store, "-o", str(outer / "store" / "copy"), option, pattern)
    assert done.returncode in (0, 2)
    guard()
    assert (outer / "store" / "inside" / "ok").read_bytes() == b"inside value"


# ---- symlinks inside the store pointing out of it ------------------------------------------------


@pytest.fixture
def linked(outer: Path) -> Path:
    """The store with a file link and a folder link to the secrets outside, and a harmless inside link."""
    store = outer / "store"
    (store / "file_link").symlink_to(outer / "secret.txt")
    (store / "dir_link").symlink_to(outer / "secret_dir")
    (store / "inside" / "deep").mkdir()
    (store / "inside" / "deep" / "up_link").symlink_to(outer / "secret.txt")
    (store / "inside" / "rel_link").symlink_to("../../secret.txt")
    return store


LINK_KEYS = ["file_link", "dir_link/secret.txt", "inside/deep/up_link", "inside/rel_link", "dir_link/new"]


@pytest.mark.parametrize("key", LINK_KEYS)
def test_cli_never_follows_symlinks_out_of_the_store(cli, outer, linked, guard, key):
    store = str(linked)
    attempts = [
        ["get", key],
        ["get", key, "-o", str(outer / "store" / "stolen")],
        ["stream", key],
        ["checksum", key],
        ["info", key],
        ["put", key, "clobbered"],
        ["put", "--no-clobber", key, "clobbered"],
        ["touch", key],
        ["pop", key],
        ["rm", key],
    ]
    secret_sha1 = hashlib.sha1(SECRET).hexdigest().encode()
    for argv in attempts:
        done = cli("-s", store, *argv)
        assert not _leaks(done), f"{argv} printed the secret"
        assert secret_sha1 not in done.stdout, f"{argv} hashed the secret"
        assert str(len(SECRET)).encode() not in done.stdout or argv[0] != "info", f"{argv} told the secret's size"
        assert done.returncode != 0 or argv[0] == "rm", f"{argv} succeeded: {done.stdout!r}"
        assert b"Traceback" not in done.stderr
        assert (outer / "secret.txt").read_bytes() == SECRET
        assert (outer / "secret_dir" / "secret.txt").read_bytes() == SECRET
        assert not (outer / "secret_dir" / "new").exists()
        stolen = outer / "store" / "stolen"
        assert not stolen.exists() or SECRET not in stolen.read_bytes()
    guard()
    record("escape-cli-symlink", key=key, tried=len(attempts), escaped=0)


def test_cli_bulk_commands_skip_symlinks_out_of_the_store(cli, outer, linked, guard, tmp_path):
    store = str(linked)
    keys = cli("-s", store, "keys").stdout.decode().splitlines()
    assert "inside/ok" in keys
    assert not any("link" in key for key in keys), keys
    for argv in (["dump"], ["keys", "--json"], ["keys", "-l"], ["checksum", "inside/ok"], ["stream", "inside/ok"]):
        done = cli("-s", store, *argv)
        assert done.returncode == 0, argv
        assert not _leaks(done), argv
    target = tmp_path / "copy"
    done = cli("mirror", "-i", store, "-o", str(target))
    assert done.returncode == 0
    copied = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert copied == {"inside/ok": b"inside value"}
    done = cli("-s", store, "rm", "-f", "--prefix", "")
    done = cli("-s", store, "rm", "-f", "--glob", "**")
    assert done.returncode in (0, 1)
    assert (outer / "secret.txt").read_bytes() == SECRET
    assert (outer / "secret_dir" / "secret.txt").read_bytes() == SECRET
    guard()


def test_store_root_that_is_itself_a_symlink_works(cli, tmp_path):
    """A link as the store's own folder is the user's choice, not an escape."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert cli("-s", str(tmp_path / "alias"), "put", "a/b", "v").returncode == 0
    assert (real / "a" / "b").read_bytes() == b"v"
    assert cli("-s", str(tmp_path / "alias"), "get", "a/b").stdout == b"v"


# ---- hostile archives ---------------------------------------------------------------------------


def test_hostile_zip_entries_never_land_outside(cli, outer, guard, tmp_path):
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("../x", b"clobbered by ../x")
        handle.writestr("a/../../x", b"clobbered by a/../../x")
        handle.writestr(str(outer / "victim"), b"clobbered by an absolute entry")
        handle.writestr("good/key", b"good value")
    store = str(outer / "store")
    done = cli("mirror", "-i", str(archive), "-o", store)
    assert done.returncode in (0, 2, 3)
    guard()
    dumped = cli("-s", str(archive), "dump")
    done = cli("-s", store, "load", input=dumped.stdout)
    assert done.returncode in (0, 2)
    guard()
    for key in ("../x", "a/../../x"):
        assert cli("-s", str(archive), "get", key).returncode == 2
    assert (outer / "x").read_bytes() == b"outer x"
    assert (outer / "victim").read_bytes() == b"victim value"


# ---- the library --------------------------------------------------------------------------------


def test_library_refuses_dotdot_and_nul_keys(outer, guard):
    store = get_store(uri=str(outer / "store"), serialization_mode="raw")
    for key in [*ESCAPING_KEYS, "a\x00b", "\x00", "", "/", "./."]:
        for call in (
            lambda k: store.put(k, b"clobbered"),
            lambda k: store.get(k),
            lambda k: store.delete(k),
            lambda k: store.exists(k),
            lambda k: store.info(k),
            lambda k: store.pop(k),
            lambda k: store.checksum(k),
            lambda k: store.put_many({k: b"clobbered"}),
            lambda k: list(store.get_many([k])),
        ):
            with pytest.raises(InvalidKey):
                call(key)
    guard()


def test_library_absolute_keys_stay_inside(outer, guard):
    """The library drops leading slashes: `/x` is the key `x` of the store, never the file `/x`."""
    store = get_store(uri=str(outer / "store"), serialization_mode="raw")
    victim = str(outer / "victim")
    store.put(victim, b"stays inside")
    assert (outer / "store" / victim.lstrip("/")).read_bytes() == b"stays inside"
    assert store.get("/etc/passwd", raise_on_nonexist=False) is None
    guard()


def test_library_listing_never_leaves_the_store(outer, linked, guard):
    store = get_store(uri=str(linked), serialization_mode="raw")
    for prefix in ("../", "..", "../secret_dir", "inside/../../", "/../", "dir_link/", "dir_link/secret"):
        assert list(store.iterate_keys(prefix=prefix)) == [], prefix
    for glob in ("../*", "../**", "**/../*", "../secret_dir/*", "dir_link/*", "dir_link/**"):
        assert list(store.iterate_keys(glob=glob)) == [], glob
    assert sorted(store.iterate_keys()) == ["inside/ok"]
    guard()
