"""What a new user hit in a field trial, through a real `anystore` process: `put KEY -`, per-side
options of `io`/`get -o`/`put -i`/`mirror`, unknown `-b` options, empty redis prefix, binary
output to a terminal, `settings` on a terminal, and how errors name stores and uris."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_cli_support import CLI_BACKENDS, CliStore, assert_one_line_error, make_cli_store, stderr_text
from tests.tmux import TmuxBash


@pytest.fixture(params=CLI_BACKENDS)
def cli_store(request: pytest.FixtureRequest, store_factory: Any) -> CliStore:
    """A fresh store on each CLI backend in turn."""
    return make_cli_store(store_factory, request.param)


@pytest.fixture
def local_store(store_factory: Any) -> CliStore:
    """A fresh local-folder store."""
    return make_cli_store(store_factory, "local")


def test_put_dash_reads_stdin(cli_store: CliStore) -> None:
    """`put KEY -` stores what is piped in (not the one-byte value `-`), as `-i -` does."""
    data = b"piped\x00data\n" * 1000
    cli_store.ok("put", "k", "-", input=data)
    assert cli_store.get("k") == data


def test_put_dash_with_input_is_a_usage_error(local_store: CliStore, tmp_path: Any) -> None:
    """`put KEY - -i FILE` names two sources: exit 2, nothing written."""
    source = tmp_path / "in.bin"
    source.write_bytes(b"file")
    proc = local_store("put", "k", "-", "-i", str(source), input=b"stdin")
    assert_one_line_error(proc, 2, "not both")
    assert local_store("exists", "k").returncode == 1


# ---- each uri configured on its own side: -b for the store, --input-config / --output-config ----


def _s3(s3_server: str) -> tuple[str, list[str]]:
    from tests.conftest import make_bucket, unique

    bucket = unique("fld")
    make_bucket(s3_server, bucket)
    return bucket, [f"endpoint_url={s3_server}", "key=testing", "secret=testing"]


def _side(option: str, items: list[str]) -> list[str]:
    return [arg for item in items for arg in (option, item)]


NO_AWS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_ENDPOINT_URL": "",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


def test_io_with_per_side_options(cli: Any, s3_server: str, tmp_path: Any) -> None:
    """`io` reads and writes S3 uris configured with --input-config / --output-config (no
    AWS variables), and `-b` (which configures the store, not io's uris) is a usage error."""
    bucket, options = _s3(s3_server)
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00io bytes\xff" * 1000)
    uri = f"s3://{bucket}/dir/x.bin"
    done = cli("io", "-i", str(source), "-o", uri, *_side("--output-config", options), env=NO_AWS)
    assert done.returncode == 0, stderr_text(done)
    back = cli("io", "-i", uri, "-o", "-", *_side("--from-config", options), env=NO_AWS)
    assert back.returncode == 0, stderr_text(back)
    assert back.stdout == source.read_bytes()
    wrong = cli(*_side("-b", options), "io", "-i", uri, "-o", "-", env=NO_AWS)
    assert_one_line_error(wrong, 2, "--input-config")


def test_io_errors_name_the_uri(cli: Any, s3_server: str) -> None:
    """An S3 uri without credentials, and a missing object: the error line names the uri."""
    bucket, options = _s3(s3_server)
    uri = f"s3://{bucket}/missing.bin"
    endpoint = [f"endpoint_url={s3_server}", "connect_timeout=2", "read_timeout=2", "retries=1"]
    denied = cli("io", "-i", uri, "-o", "-", *_side("--input-config", endpoint), env=NO_AWS, timeout=60)
    line = assert_one_line_error(denied, 3, f"`{uri}`")
    assert "Traceback" not in line
    missing = cli("io", "-i", uri, "-o", "-", *_side("--input-config", options), env=NO_AWS)
    assert_one_line_error(missing, 1, f"`{uri}`")


def test_get_output_and_put_input_configure_their_uri(local_store: CliStore, s3_server: str) -> None:
    """`get -o s3://...` and `put -i s3://...` take the S3 options of their uri."""
    bucket, options = _s3(s3_server)
    value = b"value\x00for s3" * 500
    local_store.put("k", value)
    uri = f"s3://{bucket}/out.bin"
    done = local_store("get", "k", "-o", uri, *_side("--output-config", options), env=NO_AWS)
    assert done.returncode == 0, stderr_text(done)
    done = local_store("put", "copy", "-i", uri, *_side("--input-config", options), env=NO_AWS)
    assert done.returncode == 0, stderr_text(done)
    assert local_store.get("copy") == value
    failed = local_store("put", "copy2", "-i", f"s3://{bucket}/nope.bin", *_side("--input-config", options), env=NO_AWS)
    assert_one_line_error(failed, 1, f"`s3://{bucket}/nope.bin`")


def test_mirror_sides_have_their_own_options(cli: Any, tmp_path: Any) -> None:
    """`mirror` between two sqlite tables: --from-config / --to-config configure each side; `-b`
    with neither side the store is refused instead of mirroring from the wrong table."""
    a, b = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    for n in range(3):
        assert cli("-s", a, "-b", "table=src", "put", f"k{n}", f"v{n}").returncode == 0
    wrong = cli("-b", "table=dst", "mirror", "-i", a, "-o", b)
    assert_one_line_error(wrong, 2, "--input-config")
    done = cli("mirror", "-i", a, "-o", b, "--from-config", "table=src", "--to-config", "table=dst")
    assert done.returncode == 0, stderr_text(done)
    assert "3 copied" in stderr_text(done)
    listed = cli("-s", b, "-b", "table=dst", "keys", "--sort")
    assert listed.stdout == b"k0\nk1\nk2\n"
    # -b still configures a side that is the store (-s), here the omitted -i
    again = cli("-s", a, "-b", "table=src", "mirror", "-o", b, "--to-config", "table=dst2")
    assert again.returncode == 0, stderr_text(again)
    assert cli("-s", b, "-b", "table=dst2", "keys", "--count").stdout.strip() == b"3"


# ---- backend options ------------------------------------------------------------------------


def test_unknown_backend_option_is_a_usage_error(cli: Any, tmp_path: Any) -> None:
    """A mistyped `-b` option fails (exit 2) naming it and the options the backend knows."""
    db = f"sqlite:///{tmp_path}/kv.db"
    done = cli("-s", db, "-b", "tabel=kv", "put", "k", "v")
    line = assert_one_line_error(done, 2, "`tabel`", "table")
    assert "sql" in line
    assert cli("-s", db, "keys").returncode == 3  # nothing was written: not even the database file
    assert cli("-s", db, "exists", "k").returncode == 1
    assert not (tmp_path / "kv.db").exists()
    local = cli("-s", str(tmp_path / "folder"), "-b", "fsnyc=true", "put", "k", "v")
    assert_one_line_error(local, 2, "`fsnyc`", "fsync")
    side = cli("mirror", "-i", db, "-o", str(tmp_path / "o"), "--to-config", "tabel=x")
    assert_one_line_error(side, 2, "--output-config", "`tabel`")


def test_unknown_s3_option_is_a_usage_error(cli: Any, s3_server: str) -> None:
    bucket, options = _s3(s3_server)
    done = cli("-s", f"s3://{bucket}", *_side("-b", options), "-b", "endpoint=http://x", "keys", env=NO_AWS)
    assert_one_line_error(done, 2, "`endpoint`", "endpoint_url")
    ok = cli("-s", f"s3://{bucket}", *_side("-b", options), "-b", "read_timeout=5", "keys", env=NO_AWS)
    assert ok.returncode == 0, stderr_text(ok)


def test_empty_redis_prefix_is_the_whole_database(cli: Any, redis_url: str) -> None:
    """`-b redis_prefix=` reads and lists keys that another program wrote without a prefix."""
    import redis

    from tests.conftest import unique

    client = redis.Redis.from_url(redis_url)
    name = unique("noprefix")
    try:
        client.set(f"{name}/plain", b"written by redis-cli")
        base = ["-s", redis_url, "-b", "redis_prefix="]
        got = cli(*base, "get", f"{name}/plain")
        assert got.returncode == 0, stderr_text(got)
        assert got.stdout == b"written by redis-cli"
        assert cli(*base, "put", f"{name}/new", "v").returncode == 0
        assert client.get(f"{name}/new") == b"v"
        listed = cli(*base, "keys", "--prefix", f"{name}/", "--sort")
        assert listed.stdout.decode().split() == [f"{name}/new", f"{name}/plain"]
        info = cli(*base, "info", f"{name}/new")
        assert info.returncode == 0, stderr_text(info)
    finally:
        for key in client.scan_iter(match=f"*{name}*"):
            client.delete(key)
        client.close()


# ---- bash completion in a real, interactive bash (tmux) ---------------------------------------


class InteractiveBash(TmuxBash):
    """An interactive bash (readline, COMP_WORDBREAKS as users have it) in a tmux pane, with
    the committed completion script sourced and the installed `anystore` on PATH."""

    def __init__(self, cwd: Any) -> None:
        from pathlib import Path

        script = Path(__file__).resolve().parent.parent / "completions" / "anystore.bash"
        super().__init__(cwd, "--norc --noprofile -i", setup=f"source {script}; ", size=(250, 30), wait=15)

    def line_after_tab(self, line: str) -> str:
        """Type `line`, press Tab once, and return the command line once the completion is in
        (trailing blanks are not on tmux's copy of the screen). A completion that gave up on a
        slow store (a loaded machine) leaves the line as typed: then it is tried again."""
        result = line
        for _ in range(3):
            result = self._tab(line)
            if result != line:
                break
        return result

    def _tab(self, line: str) -> str:
        import time

        self.type(line, "Tab")
        previous, stable_since = None, time.monotonic()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            current = [row for row in self.screen().splitlines() if row.startswith("$ ")][-1]
            if current != previous:
                previous, stable_since = current, time.monotonic()
            elif time.monotonic() - stable_since > 1.5:
                break
            time.sleep(0.1)
        self.type("", "C-u")
        assert previous is not None
        return previous[2:]


@pytest.fixture
def interactive_bash(tmp_path: Any) -> Any:
    import shutil

    if shutil.which("tmux") is None or shutil.which("bash") is None:
        pytest.skip("tmux and bash are needed to drive an interactive bash")
    shell = InteractiveBash(tmp_path)
    yield shell
    shell.close()


def test_bash_completes_keys_of_uri_stores_and_quotes_them(interactive_bash: Any, cli: Any, tmp_path: Any) -> None:
    """With `-s sqlite:///kv.db` (a uri with `:`), `get lo<Tab>` completes the key, not the
    command `load`; keys with spaces, glob characters and `:` arrive quoted, as typed."""
    uri = "sqlite:///kv.db"
    for key in ("logs/a b.txt", "logs/c*d[1]", "x:y/z"):
        assert cli("-s", uri, "put", key, "v", cwd=tmp_path).returncode == 0
    bash = interactive_bash
    assert bash.line_after_tab(f"anystore -s {uri} get lo") == f"anystore -s {uri} get logs/"
    assert bash.line_after_tab(f"anystore -s {uri} get logs/a") == f"anystore -s {uri} get logs/a\\ b.txt"
    assert bash.line_after_tab(f"anystore -s {uri} get logs/c") == f"anystore -s {uri} get logs/c\\*d\\[1\\]"
    assert bash.line_after_tab(f"anystore -s {uri} get x:") == f"anystore -s {uri} get x:y/z"
    assert bash.line_after_tab(f"anystore -s {uri} get 'logs/a") == f"anystore -s {uri} get 'logs/a b.txt'"
    assert bash.line_after_tab(f"anystore --store={uri} info lo") == f"anystore --store={uri} info logs/"


# ---- the terminal ---------------------------------------------------------------------------


def test_s3_get_draws_progress_on_a_terminal(cli: Any, s3_server: str, tmp_path: Any) -> None:
    """A large `get` from S3 draws a progress bar on a terminal's stderr, as `put` does;
    stdout holds the value and nothing else."""
    import os

    from tests.test_terminal import run_on_terminal

    bucket, options = _s3(s3_server)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1024) * (17 * 1024))  # over the 16 MiB a bar starts from
    base = ["-s", f"s3://{bucket}", *_side("-b", options)]
    assert cli(*base, "put", "big", "-i", str(source), env=NO_AWS).returncode == 0
    run = run_on_terminal(*base, "get", "big", cwd=tmp_path, stdout_on_terminal=False, env=NO_AWS)
    assert run.returncode == 0, run.screen
    assert "get big" in run.screen
    assert run.stdout == source.read_bytes()


def test_binary_get_to_a_terminal_is_refused(local_store: CliStore) -> None:
    """`get` of binary bytes to a terminal refuses (exit 2, naming -o and pipes), as curl does;
    text still prints, `-o -` forces, and a pipe gets the bytes as always."""
    from tests.test_terminal import run_on_terminal

    binary = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    local_store.put("image.png", binary)
    local_store.put("note.txt", "grüße\n".encode())
    base = local_store.global_args
    run = run_on_terminal(*base, "get", "image.png", cwd=local_store.tmp_path)
    assert run.returncode == 2, run.screen
    assert "anystore: error: binary value" in run.screen and "-o -" in run.screen
    assert "PNG" not in run.screen
    run = run_on_terminal(*base, "get", "note.txt", cwd=local_store.tmp_path)
    assert run.returncode == 0 and "grüße" in run.screen
    run = run_on_terminal(*base, "get", "image.png", "-o", "-", cwd=local_store.tmp_path)
    assert run.returncode == 0 and "IHDR" in run.screen
    assert local_store.get("image.png") == binary


def test_settings_on_a_terminal_are_indented_and_show_no_library_serialization(local_store: CliStore) -> None:
    """`settings` on a terminal is indented JSON, piped one JSON line; neither shows the
    library's allow_pickle / serialization_mode, which the command line never uses."""
    import json

    from tests.test_terminal import run_on_terminal

    run = run_on_terminal(*local_store.global_args, "settings", cwd=local_store.tmp_path)
    assert run.returncode == 0, run.screen
    lines = run.screen.strip().splitlines()
    assert len(lines) > 10 and max(len(line) for line in lines) < 200
    record = json.loads(run.screen)
    piped = local_store.ok("settings")
    assert piped.count(b"\n") == 1 and json.loads(piped) == record
    text = json.dumps(record)
    assert "allow_pickle" not in text and "serialization_mode" not in text
    assert "never unpickles" in record["store"]["values"]


# ---- uris and keys --------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["s3://", "s3:///prefix", "gs://"])
def test_object_store_without_bucket_is_a_usage_error(cli: Any, uri: str) -> None:
    """`-s s3://` names no bucket: exit 2 saying so (not "does not exist", exit 1)."""
    for argv in (["-s", uri, "put", "k", "v"], ["-s", uri, "keys"], ["io", "-i", uri, "-o", "-"]):
        assert_one_line_error(cli(*argv, env=NO_AWS), 2, "no bucket", f"`{uri}`")


def test_s3_key_with_a_newline_is_never_reported_missing_on_put(cli: Any, s3_server: str) -> None:
    """A put of a key holding a newline is stored, or (a server that cannot take the name, as
    moto) fails as a store failure naming the key with its newline shown: never "does not
    exist" (exit 1) for a key that is being written."""
    bucket, options = _s3(s3_server)
    base = ["-s", f"s3://{bucket}", *_side("-b", options)]
    key = "line one\nline two.txt"
    for argv, data in ((["put", key, "value"], b""), (["put", key], b"streamed value")):
        done = cli(*base, *argv, input=data, env=NO_AWS)
        if done.returncode == 0:
            assert cli(*base, "get", key, env=NO_AWS).stdout in (b"value", b"streamed value")
            continue
        line = assert_one_line_error(done, 3, "`line one\\nline two.txt`", "refused")
        assert "does not exist" not in line


def test_errors_name_the_store_as_given_and_no_temporary_files(cli: Any, tmp_path: Any) -> None:
    """Every error line names the store as the user gave it (not once `.anystore` and once
    `file:///...`), and none shows the store's temporary file names."""
    (tmp_path / ".anystore" / "folder" / "inner").mkdir(parents=True)
    (tmp_path / ".anystore" / "file").write_bytes(b"x")
    runs = {
        ("get", "missing"): 1,
        ("get", "../x"): 2,
        ("put", "folder", "v"): 3,  # a folder where the value would go
        ("put", "file/below", "v"): 3,  # a file where a folder would go
        ("info", "missing"): 1,
    }
    for argv, status in runs.items():
        line = assert_one_line_error(cli(*argv, cwd=tmp_path), status, "store `.anystore`")
        assert "file://" not in line and ".~anystore-" not in line, line
    line = assert_one_line_error(cli("-s", "./.anystore", "put", "folder", "v", cwd=tmp_path), 3, "`./.anystore`")
    assert ".~anystore-" not in line


# ---- packaging ------------------------------------------------------------------------------


def test_wheel_ships_man_pages_and_completions(tmp_path: Any) -> None:
    """The wheel (what `pip install` / `pipx install` put in place) carries the man pages and the
    completion scripts under share/, byte for byte the committed ones."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(repo), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    (wheel,) = tmp_path.glob("anystore_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = {
            name.split(".data/data/", 1)[1]: archive.read(name) for name in archive.namelist() if ".data/data/" in name
        }
    expected = {
        **{f"share/man/man1/{page.name}": page for page in (repo / "man").glob("*.1")},
        "share/bash-completion/completions/anystore.bash": repo / "completions" / "anystore.bash",
        "share/zsh/site-functions/_anystore": repo / "completions" / "_anystore",
        "share/fish/vendor_completions.d/anystore.fish": repo / "completions" / "anystore.fish",
    }
    assert "share/man/man1/anystore.1" in expected and len(expected) > 10
    assert sorted(files) == sorted(expected)
    for name, path in expected.items():
        assert files[name] == path.read_bytes(), name
