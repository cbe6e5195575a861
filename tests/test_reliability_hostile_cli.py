"""Hostile and unlucky use of the command line: short writes on stdout, closed standard streams,
pop that must not lose its value, secrets in odd places, nested Redis prefixes, prefixes that
mean the whole store, key names that are not UTF-8, and exit statuses that agree across backends.
Every test drives the installed `anystore` in a real process."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import anystore_bin, run_cli
from tests.test_cli_support import CLI_BACKENDS, CliStore, make_cli_store

BIG = os.urandom(3 * 1024 * 1024)


@pytest.fixture(params=CLI_BACKENDS)
def cli_store(request: pytest.FixtureRequest, store_factory) -> CliStore:
    """A fresh store on each CLI backend (local, sqlite, redis) in turn."""
    return make_cli_store(store_factory, request.param)


def _slow_nonblocking_reader(args: list[str], cwd: Path) -> tuple[int, bytes, bytes]:
    """Run `anystore ARGS` with PYTHONUNBUFFERED=1 into a pipe whose write end is non-blocking
    (as a parent that set O_NONBLOCK leaves it), read slowly; return status, stdout, stderr."""
    read_end, write_end = os.pipe()
    flags = fcntl.fcntl(write_end, fcntl.F_GETFL)
    fcntl.fcntl(write_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [anystore_bin(), *args], stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, cwd=cwd
    )
    os.close(write_end)
    time.sleep(0.3)  # let the writer fill the pipe and meet EAGAIN
    chunks = []
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        while chunk := reader.read(65536):
            chunks.append(chunk)
            time.sleep(0.0005)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, b"".join(chunks), err


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_short_writes_to_stdout_are_completed(store_factory, backend):
    store = make_cli_store(store_factory, backend)
    store.put("big", BIG)
    store.put("lines", b"x" * 99 + b"\n" * 1 + b"line\n" * 200_000)
    store.ok("load", input=b"".join(b'{"key": "many/%05d-%s", "value": "v"}\n' % (i, b"k" * 60) for i in range(3000)))
    cases = {
        ("get", "big"): BIG,
        ("get", "big", "--mode", "auto"): BIG,
        ("stream", "lines"): store.get("lines"),
        ("keys", "--prefix", "many/"): store.ok("keys", "--prefix", "many/"),
        ("dump", "--prefix", "many/"): store.ok("dump", "--prefix", "many/"),
    }
    for args, expected in cases.items():
        status, out, err = _slow_nonblocking_reader([*store.global_args, *args], store.tmp_path)
        assert (status, len(out)) == (0, len(expected)), (args, err)
        assert out == expected, args
    status, out, err = _slow_nonblocking_reader([*store.global_args, "pop", "big"], store.tmp_path)
    assert (status, out == BIG) == (0, True), err
    assert store("exists", "big").returncode == 1


def test_pop_to_a_failing_output_keeps_the_value(cli_store: CliStore):
    cli_store.put("job", b"precious")
    for pipeline in ("$ANYSTORE pop job >&-", "$ANYSTORE pop job > /dev/full"):
        proc = cli_store.shell(pipeline)
        assert proc.returncode in (2, 3), proc.stderr
        assert proc.stderr.decode().count("anystore: error:") == 1, proc.stderr
        assert b"Traceback" not in proc.stderr
        assert cli_store.get("job") == b"precious", pipeline
    proc = cli_store("pop", "job", "--mode", "json")  # not JSON: refused, kept
    assert proc.returncode == 2
    assert cli_store.get("job") == b"precious"


@pytest.mark.parametrize("setting", ["model: some.module.Model", "deserialization_func: os.system"])
def test_pop_with_a_model_in_the_config_returns_the_bytes(tmp_path, setting):
    folder = tmp_path / "store"
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {folder}\n{setting}\n")
    assert run_cli("-s", str(folder), "put", "k", "hello").returncode == 0
    proc = run_cli("--config", str(config), "pop", "k")
    assert (proc.returncode, proc.stdout) == (0, b"hello"), proc.stderr
    assert run_cli("-s", str(folder), "exists", "k").returncode == 1


def test_closed_stdin_and_stdout_are_one_line_usage_errors(cli_store: CliStore):
    cli_store.put("k", b"v")
    for pipeline, name in (
        ("$ANYSTORE get k >&-", "stdout"),
        ("$ANYSTORE keys >&-", "stdout"),
        ("$ANYSTORE settings >&-", "stdout"),
        ("$ANYSTORE put k2 <&-", "stdin"),
        ("$ANYSTORE load <&-", "stdin"),
    ):
        proc = cli_store.shell(pipeline)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (pipeline, err)
        assert err.count("\n") == 1 and err.startswith("anystore: error:") and f"{name} is closed" in err, err
    assert cli_store.shell("$ANYSTORE exists k <&- >&-").returncode == 0
    assert cli_store("exists", "k2").returncode == 1


# ---- secrets: masked the way clients parse them, and by what they look like ------------------

SECRET = "S3cr3tPW"


def _assert_hidden(done: subprocess.CompletedProcess[bytes], *secrets: str) -> None:
    for secret in secrets:
        for name, stream in (("stdout", done.stdout), ("stderr", done.stderr)):
            assert secret.encode() not in stream, f"{secret!r} on {name}: {stream.decode(errors='replace')[-600:]}"


def test_passwords_with_a_raw_at_or_a_space_are_masked_whole():
    uris = [
        f"redis://:p@{SECRET}@127.0.0.1:1/0",
        f"redis://:my {SECRET}@127.0.0.1:1/0",
        f"postgresql://u:p@{SECRET}@127.0.0.1:1/x",
        f"mysql+pymysql://root:a b@{SECRET}@127.0.0.1:1/x",
    ]
    runs = 0
    for uri in uris:
        for argv in (["get", "k"], ["settings"], ["info", "k"], ["keys"]):
            for flags in ([], ["--debug", "--verbose"]):
                done = run_cli(*flags, "-s", uri, *argv)
                runs += 1
                assert done.returncode == (0 if argv == ["settings"] else 3), done.stderr[-300:]
                _assert_hidden(done, SECRET)
    assert runs == 32
    # a plain password equal to the user name masks the password only, not every `postgres`
    done = run_cli("-s", "postgresql://postgres:postgres@127.0.0.1:1/test", "get", "k")
    assert b"`postgresql://postgres:***@127.0.0.1:1/test`" in done.stderr, done.stderr


def test_credential_looking_options_are_masked_by_value_and_name():
    options = {
        "connection_string": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET}1==;EndpointSuffix=x",
        "client_kwargs": json_text({"headers": {"Authorization": f"Bearer {SECRET}2"}}),
        "pw": f"{SECRET}3",
        "auth": f"{SECRET}4",
        "endpoint_url": f"https://blob.example?sv=1&sig={SECRET}5",
        "storage_options": json_text({"note": f"x AccountKey={SECRET}6;y"}),
    }
    args = [arg for name, value in options.items() for arg in ("-b", f"{name}={value}")]
    # settings checks options as the store does: those S3 takes, with secret ones of its own
    s3 = {"client_kwargs": options["client_kwargs"], "endpoint_url": options["endpoint_url"]}
    s3.update(secret=f"{SECRET}3", token=f"{SECRET}4")
    done = run_cli("-s", "s3://bucket", *(a for n, v in s3.items() for a in ("-b", f"{n}={v}")), "settings")
    assert done.returncode == 0, done.stderr
    _assert_hidden(done, *(f"{SECRET}{n}" for n in range(2, 6)))
    shown = json.loads(done.stdout)["store"]["backend_config"]
    assert shown["endpoint_url"] == "https://blob.example?sv=1&sig=***"  # masked, not dropped
    done = run_cli("--debug", "-s", f"redis://127.0.0.1:1/0?password={SECRET}7", *args, "get", "k")
    assert done.returncode == 2  # options Redis does not know are refused, and the refusal masks them too
    _assert_hidden(done, *(f"{SECRET}{n}" for n in range(1, 8)))


def json_text(value: object) -> str:
    return json.dumps(value)


def test_config_uri_and_its_store_uri_are_masked_in_debug_tracebacks(tmp_path: Path):
    import functools
    import http.server
    import threading

    (tmp_path / "store.yml").write_text(f"uri: redis://:p@{SECRET}9@127.0.0.1:1/0\n")
    (tmp_path / "bad.yml").write_text("uri: [unclosed\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        for name in ("store.yml", "bad.yml", "missing.yml"):
            config = f"http://u:p@{SECRET}8@127.0.0.1:{port}/{name}"
            for argv in (["get", "k"], ["settings"]):
                done = run_cli("--debug", "--verbose", "--config", config, *argv)
                assert done.returncode in (0, 2, 3), done.stderr[-300:]
                _assert_hidden(done, f"{SECRET}8", f"{SECRET}9")
    finally:
        server.shutdown()


# ---- nested Redis prefixes ------------------------------------------------------------------


def test_nested_redis_prefixes_do_not_show_each_others_internals(redis_url):
    from tests.conftest import _redis_cleanup, unique

    parent = unique("nest")
    outer = ["-s", redis_url, "-b", f"redis_prefix={parent}"]
    inner = ["-s", redis_url, "-b", f"redis_prefix={parent}/sub"]
    try:
        assert run_cli(*inner, "put", "precious", "kept").returncode == 0
        assert run_cli(*inner, "put", "big", input=os.urandom(3 * 1024 * 1024)).returncode == 0
        assert run_cli(*outer, "put", "a", "1").returncode == 0
        done = run_cli(*outer, "keys", "-0", "--sort")
        assert (done.returncode, done.stdout) == (0, b"a\0sub/big\0sub/precious\0"), done.stderr
        done = run_cli(*outer, "keys", "--json")
        assert done.returncode == 0, done.stderr
        assert sorted(json.loads(line)["key"] for line in done.stdout.splitlines()) == ["a", "sub/big", "sub/precious"]
        done = run_cli(*outer, "dump")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 3
        done = run_cli(*outer, "rm", "--glob", "**", "--dry-run")
        assert (done.returncode, sorted(done.stdout.split())) == (0, [b"a", b"sub/big", b"sub/precious"]), done.stderr
        done = run_cli(*outer, "rm", "--glob", "a*")
        assert done.returncode == 0, done.stderr
        assert run_cli(*inner, "get", "precious").stdout == b"kept"
        assert run_cli(*inner, "info", "precious").returncode == 0
    finally:
        _redis_cleanup(redis_url, parent)


# ---- prefixes mean the same on every backend -------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "sqlite", "redis", "postgres", "mysql"])
def test_a_prefix_naming_the_whole_store_is_refused_by_rm_and_lists_alike(store_factory, backend):
    store = make_cli_store(store_factory, backend)
    store.ok("load", input=b'{"key": "a", "value": "1"}\n{"key": "b/c", "value": "2"}\n{"key": "b/.d", "value": "3"}\n')
    everything = store.ok("keys", "--sort")
    assert everything == b"a\nb/.d\nb/c\n"
    for prefix in ("/", "./", "", "//", "/./", "././"):
        done = store("rm", "--prefix", prefix)
        assert done.returncode == 2, (prefix, done.stderr)
        assert done.stderr.startswith(b"anystore: error:") and done.stderr.count(b"\n") == 1, done.stderr
        assert store.ok("keys", "--prefix", prefix, "--sort") == everything, prefix
    assert store("rm", "--prefix", "/", "--glob", "**").returncode == 2
    assert store.ok("keys", "--sort") == everything
    for prefix in ("./b/", "/b/", "b//", "./b"):
        assert store.ok("keys", "--prefix", prefix, "--sort") == b"b/.d\nb/c\n", prefix
    assert store.ok("keys", "--prefix", "b/.", "--sort") == b"b/.d\n"
    assert store.ok("keys", "--prefix", "../", "--sort") == b""
    assert store.ok("rm", "--prefix", "./b/") == b""
    assert store.ok("keys", "--sort") == b"a\n"


# ---- key names that are not UTF-8 -----------------------------------------------------------

LATIN1 = b"caf\xe9"


def test_names_that_are_not_utf8_list_dump_and_load(tmp_path: Path, redis_url):
    import base64

    import redis

    from tests.conftest import _redis_cleanup, unique

    folder = tmp_path / "made-by-another-tool"
    (folder / "dir").mkdir(parents=True)
    (folder / "dir").joinpath(os.fsdecode(LATIN1)).write_bytes(b"v1")
    (folder / "ok").write_bytes(b"v2")
    prefix = unique("nonutf")
    client = redis.Redis.from_url(redis_url)
    client.set(prefix.encode() + b"/dir/" + LATIN1, b"v1")  # as redis-cli sets raw bytes
    client.set(prefix.encode() + b"/ok", b"v2")
    stores = [["-s", str(folder)], ["-s", redis_url, "-b", f"redis_prefix={prefix}"]]
    expected_b64 = base64.b64encode(b"dir/" + LATIN1).decode()
    try:
        for store in stores:
            done = run_cli(*store, "keys", "--sort")
            assert (done.returncode, done.stdout) == (0, b"dir/" + LATIN1 + b"\nok\n"), done.stderr
            done = run_cli(*store, "keys", "--json", "--sort")
            assert done.returncode == 0, done.stderr
            records = [json.loads(line) for line in done.stdout.splitlines()]
            assert records[0]["key_b64"] == expected_b64 and records[0]["key"] == "dir/caf\ufffd"
            assert "key_b64" not in records[1] and records[1]["key"] == "ok"
            done = run_cli(*store, "info", os.fsdecode(b"dir/" + LATIN1))
            assert (done.returncode, json.loads(done.stdout)["key_b64"]) == (0, expected_b64), done.stderr
            done = run_cli(*store, "dump")
            assert done.returncode == 0, done.stderr
            dumped = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda r: "key_b64" in r)
            assert dumped == [{"key": "ok", "value": "v2"}, {"key_b64": expected_b64, "value": "v1"}]
            copy = tmp_path / f"copy-{len(store)}"
            assert run_cli("-s", str(copy), "load", input=done.stdout).returncode == 0
            assert (copy / "dir" / os.fsdecode(LATIN1)).read_bytes() == b"v1"
            assert (
                run_cli(*stores[1][:2], "-b", f"redis_prefix={prefix}-copy", "load", input=done.stdout).returncode == 0
            )
            assert client.get(f"{prefix}-copy/dir/".encode() + LATIN1) == b"v1"
            done = run_cli("-s", f"sqlite:///{tmp_path}/k.db", "load", input=done.stdout)
            assert done.returncode == 2 and b"not UTF-8" in done.stderr, done.stderr
    finally:
        _redis_cleanup(redis_url, prefix)
        client.close()


# ---- the same fault gives the same exit status on every backend -----------------------------


@pytest.mark.parametrize("backend", ["local", "sqlite", "redis", "postgres", "mysql"])
def test_over_long_keys_and_ttls_are_usage_errors_everywhere(store_factory, backend):
    store = make_cli_store(store_factory, backend)
    store.put("a", b"v")
    long_keys = {
        "local": ["k" * 300, "dir/" + "é" * 200],
        "postgres": ["k" * 10_000],
        "mysql": ["k" * 10_000, "k" * 769],
    }.get(backend, [])
    for key in long_keys:
        for argv in (["get", key], ["exists", key], ["put", key, "v"], ["info", key], ["rm", key]):
            done = store(*argv)
            assert done.returncode == 2, (argv[0], len(key), done.returncode, done.stderr[-200:])
    for argv in (["put", "t", "v", "--ttl", "99999999999999"], ["touch", "t", "--ttl", "99999999999999"]):
        done = store(*argv)
        assert done.returncode == 2, (argv, done.stderr)
    done = store("load", input=b'{"key": "t", "value": "v", "ttl": 99999999999999}\n')
    assert done.returncode == 2, done.stderr
    assert store("exists", "t").returncode == 1
    accepted = store("put", "t", "v", "--ttl", str(50 * 365 * 86400)).returncode
    assert accepted == (2 if backend == "local" else 0)  # local folders cannot expire keys: refused


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
def test_over_long_table_names_are_usage_errors(request, backend):
    url = request.getfixturevalue(f"{backend}_url")
    done = run_cli("-s", url, "-b", f"table={'t' * 100}", "put", "a", "v")
    assert done.returncode == 2, done.stderr
    assert b"table name" in done.stderr and done.stderr.count(b"\n") == 1


def test_a_value_over_max_allowed_packet_names_it(store_factory):
    import sqlalchemy

    from anystore_cli.backends.sql import get_engine

    store = make_cli_store(store_factory, "mysql")
    with get_engine(store.uri).connect() as conn:
        packet = int(conn.execute(sqlalchemy.text("SELECT @@max_allowed_packet")).scalar_one())
    big = b"x" * (packet + 1024 * 1024)
    for argv, data in ((["put", "big"], big), (["load"], b'{"key": "big", "value": "' + big + b'"}\n')):
        done = store(*argv, input=data)
        assert done.returncode == 3, done.stderr[-300:]
        assert b"max_allowed_packet" in done.stderr and done.stderr.count(b"\n") == 1, done.stderr[-400:]
    assert store("put", "small", "v").returncode == 0


# ---- smaller holes ------------------------------------------------------------------------


def test_empty_store_or_config_option_is_a_usage_error(tmp_path: Path):
    for argv in (["-s", "", "keys"], ["-s", " ", "put", "a", "b"], ["--config", "", "keys"]):
        done = run_cli(*argv, cwd=tmp_path)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.startswith(b"anystore: error:") and done.stderr.count(b"\n") == 1
    assert not (tmp_path / ".anystore").exists()


def test_a_yaml_alias_bomb_in_the_config_is_refused_at_once(tmp_path: Path):
    lines = ["uri: memory://", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 7):
        lines.append(f"l{level}: &l{level} [{','.join([f'*l{level - 1}'] * 9)}]")
    lines.append("backend_config: {x: *l6}")  # 9^7 strings once expanded (and printed by settings)
    config = tmp_path / "bomb.yml"
    config.write_text("\n".join(lines) + "\n")
    assert len(config.read_bytes()) < 400
    for argv in (["settings"], ["keys"]):
        started = time.monotonic()
        done = run_cli("--config", str(config), *argv, timeout=20)
        assert done.returncode == 2, done.stderr
        assert b"aliases" in done.stderr and done.stderr.count(b"\n") == 1
        assert time.monotonic() - started < 5


def test_load_that_fails_part_way_reports_exactly_what_it_stored(tmp_path: Path):
    from tests.faults import limit_file_size

    lines = [b'{"key": "small/%03d", "value": "v"}\n' % i for i in range(37)]
    lines.append(b'{"key": "big", "value": "' + b"x" * (2 << 20) + b'"}\n')  # over the file-size limit
    lines += [b'{"key": "after/%03d", "value": "v"}\n' % i for i in range(20)]
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    done = subprocess.run(
        [anystore_bin(), "-s", str(store), "load"],
        input=b"".join(lines),
        capture_output=True,
        timeout=60,
        env=env,
        preexec_fn=limit_file_size(1 << 20),
    )
    assert done.returncode == 3, done.stderr
    stored = run_cli("-s", str(store), "keys", "--count").stdout.strip()
    assert stored == b"37"
    assert b"(loaded 37 keys before the failure)" in done.stderr, done.stderr


EVIL = "evil\x1b]0;pwned\x07\x1b[2J\x1b[31mred\rover\u202etxt"
"""A key name with a window-title escape, clear screen, colour, carriage return and a bidi override"""


def test_escape_sequences_in_key_names_are_escaped_on_a_terminal_and_raw_when_piped(tmp_path: Path):
    from tests.test_terminal import run_on_terminal

    store = str(tmp_path / "store")
    assert run_cli("-s", store, "put", EVIL, "v").returncode == 0
    raw = EVIL.encode()
    # piped: the exact bytes, as scripts need them
    assert run_cli("-s", store, "keys").stdout == raw + b"\n"
    assert run_cli("-s", store, "rm", "--glob", "*", "--dry-run").stdout == raw + b"\n"
    assert raw in run_cli("-s", store, "checksum", EVIL, EVIL).stdout
    # on a terminal: no control character of the name reaches it
    runs = [
        run_on_terminal("-s", store, "keys", cwd=tmp_path),
        run_on_terminal("-s", store, "keys", "-l", cwd=tmp_path),
        run_on_terminal("-s", store, "info", EVIL, cwd=tmp_path),
        run_on_terminal("-s", store, "rm", "--glob", "*", "--dry-run", cwd=tmp_path),
        run_on_terminal("-s", store, "checksum", EVIL, EVIL, cwd=tmp_path),
        run_on_terminal("-s", store, "get", EVIL + "-missing", cwd=tmp_path),
        run_on_terminal("-s", store, "-v", "rm", EVIL, cwd=tmp_path, stdout_on_terminal=False),
    ]
    for run in runs:
        for bad in (b"\x1b]0;", b"\x1b[2J", b"\x1b[31mred", b"\x07", b"\rover", "\u202e".encode()):
            assert bad not in run.terminal, (bad, run.terminal[-300:])
        assert "evil" in run.screen, run.screen
    assert "\\x1b]0;pwned" in runs[0].screen
    assert runs[5].returncode == 1 and runs[6].returncode == 0
