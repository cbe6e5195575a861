"""Secrets stay secret: a password in a store URI or in the backend config never shows on stdout
or stderr, whatever the command, `--verbose`, or a traceback under `--debug`.

Unreachable servers (port 1) give the error paths; a private Redis with `requirepass` and the
moto S3 endpoint give the paths where everything works.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import make_bucket, unique
from tests.faults import PrivateRedis, record

PASSWORD = "s3cret-Pa55w0rd"
ENCODED = "s3cr%2Fet%40Pa55"
"""A password percent-encoded in the uri: neither form may show"""
DECODED = "s3cr/et@Pa55"

UNREACHABLE_URIS = [
    f"redis://:{PASSWORD}@127.0.0.1:1/0",
    f"postgresql://u:{PASSWORD}@127.0.0.1:1/x",
    f"mysql+pymysql://root:{PASSWORD}@127.0.0.1:1/x",
    f"redis://:{ENCODED}@127.0.0.1:1/0",
]
LOUD = ["--verbose", "--debug"]
FLAGS = [[], LOUD]
COMMANDS = [["get", "k"], ["put", "k", "v"], ["keys"], ["info", "k"], ["settings"]]


def assert_no_secret(done, *secrets: str) -> None:
    """Fail if any of `secrets` shows on the stdout or stderr of a finished command."""
    for secret in secrets or (PASSWORD, ENCODED, DECODED):
        for name, stream in (("stdout", done.stdout), ("stderr", done.stderr)):
            assert secret.encode() not in stream, f"{secret!r} on {name}: {stream.decode(errors='replace')[-800:]}"


@pytest.mark.parametrize("uri", UNREACHABLE_URIS)
def test_password_in_uri_never_shows_in_errors(cli, uri):
    runs = 0
    for flags, commands in (([], COMMANDS[:1]), (LOUD, COMMANDS)):
        for argv in commands:
            done = cli(*flags, "-s", uri, *argv, timeout=60)
            runs += 1
            expected = 0 if argv[0] == "settings" else 3
            assert done.returncode == expected, f"{flags} {argv}: exit {done.returncode} {done.stderr[-300:]!r}"
            assert_no_secret(done)
    done = cli(*LOUD, "-s", uri, "load", input=b'{"key": "k", "value": "v"}\n')
    assert done.returncode == 3
    assert_no_secret(done)
    record("secrets-unreachable-uri", uri=uri.split(":", 1)[0], tried=runs + 1, leaked=0)


def test_password_in_uri_never_shows_through_env_or_config_file(cli, tmp_path: Path):
    uri = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    for argv in (["get", "k"], ["settings"]):
        assert_no_secret(cli(*LOUD, *argv, env={"ANYSTORE_URI": uri}))
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {uri}\nbackend_config:\n  password: {PASSWORD}\n  secret: {PASSWORD}\n")
    json_config = tmp_path / "store.json"
    json_config.write_text(json.dumps({"uri": uri, "backend_config": {"token": PASSWORD}}))
    for path in (config, json_config):
        for argv in (["get", "k"], ["settings"], ["keys"]):
            done = cli(*LOUD, "--config", str(path), *argv)
            # 2: options the redis backend does not declare are refused, named (never their values)
            assert done.returncode in (0, 2, 3)
            assert_no_secret(done)


SECRET_OPTIONS = ["password", "secret", "token", "aws_secret_access_key", "client_secret", "api_key", "passwd"]


@pytest.mark.parametrize("uri", ["redis://127.0.0.1:1/0", "postgresql://u@127.0.0.1:1/x", "s3://no-such-bucket"])
def test_secret_backend_config_never_shows(cli, uri):
    """Every secret-looking backend option at once, each with a value of its own."""
    secrets = {name: f"{PASSWORD}-{name}" for name in SECRET_OPTIONS}
    options = [item for name, value in secrets.items() for item in ("-b", f"{name}={value}")]
    if uri.startswith("s3"):
        options += ["-b", "endpoint_url=http://127.0.0.1:1"]
    for flags, commands in (([], [["get", "k"], ["settings"]]), (LOUD, [["get", "k"], ["settings"], ["keys"]])):
        for argv in commands:
            done = cli(*flags, "-s", uri, *options, *argv, timeout=90)
            # 2: an option the backend does not know is refused, naming it (never its value)
            assert done.returncode in (0, 2, 3), f"{uri} {argv}: exit {done.returncode} {done.stderr[-300:]!r}"
            assert_no_secret(done, *secrets.values())
    env = {f"ANYSTORE_BACKEND_CONFIG__{name.upper()}": value for name, value in secrets.items()}
    assert_no_secret(cli("-s", uri, "settings", env=env), *secrets.values())


def test_uri_query_password_never_shows(cli):
    """libpq and redis-py both take `?password=` in the uri."""
    for uri in (f"redis://127.0.0.1:1/0?password={PASSWORD}", f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}"):
        for argv in (["get", "k"], ["settings"]):
            assert_no_secret(cli("-s", uri, *argv))


def test_a_masked_query_password_leaves_the_store_name_readable(cli):
    """The mask ends where the uri does: the error still reads "in store `URI`: why"."""
    uri = f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}"
    done = cli("-s", uri, "get", "k")
    assert done.returncode == 3
    assert "in store `postgresql://u@127.0.0.1:1/x?password=***`: " in done.stderr.decode(), done.stderr
    # a password holding a backquote is masked whole all the same
    tricky = "s3cret`Pa55w0rd"
    done = cli("-s", f"postgresql://u@127.0.0.1:1/x?password={tricky}", "get", "k")
    assert done.returncode == 3
    assert b"s3cret" not in done.stderr and b"Pa55w0rd" not in done.stderr, done.stderr


# ---- a real server that wants the password -------------------------------------------------------


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory):
    """A private Redis that refuses clients without the password."""
    try:
        server = PrivateRedis(tmp_path_factory.mktemp("redis-auth"), extra=["--requirepass", PASSWORD])
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    with server:
        yield server


def test_wrong_password_is_refused_with_exit_3_and_never_shown(cli, locked_redis):
    wrong = "wr0ng-Pa55w0rd"
    for flags in FLAGS:
        for uri in (locked_redis.url, locked_redis.url.replace("redis://", f"redis://:{wrong}@")):
            done = cli(*flags, "-s", uri, "get", "k")
            assert done.returncode == 3, done.stderr
            assert_no_secret(done, PASSWORD, wrong)


def test_working_store_with_password_never_shows_it(cli, locked_redis, tmp_path: Path):
    uri = locked_redis.url.replace("redis://", f"redis://:{quote(PASSWORD)}@")
    base = ["-s", uri, "-b", f"redis_prefix={unique()}"]
    assert cli(*base, "put", "a/k", "value").returncode == 0
    runs = [
        ["get", "a/k"],
        ["info", "a/k"],
        ["info", "--json", "a/k"],
        ["keys"],
        ["keys", "-l"],
        ["keys", "--json"],
        ["keys", "--count"],
        ["checksum", "a/k"],
        ["stream", "a/k"],
        ["exists", "a/k"],
        ["touch", "a/t"],
        ["put", "a/k2", "v2"],
        ["dump"],
        ["settings"],
        ["get", "missing"],
        ["mirror", "-o", str(tmp_path / "copy")],
        ["mirror", "-i", str(tmp_path / "copy"), "-o", uri, "--overwrite"],
        ["rm", "--glob", "a/*"],
    ]
    for argv in runs:
        done = cli(*LOUD, *base, *argv)
        assert done.returncode in (0, 1), f"{argv}: {done.stderr!r}"
        assert_no_secret(done, PASSWORD, quote(PASSWORD))
    record("secrets-working-redis", tried=len(runs), leaked=0)


def test_working_s3_store_never_shows_its_secret(cli, s3_server, tmp_path: Path):
    bucket = unique("b")
    make_bucket(s3_server, bucket)
    base = ["-s", f"s3://{bucket}", "-b", f"endpoint_url={s3_server}", "-b", "key=testing", "-b", f"secret={PASSWORD}"]
    env = {"AWS_SECRET_ACCESS_KEY": PASSWORD, "AWS_ACCESS_KEY_ID": "testing"}
    assert cli(*base, "put", "a/k", "value", env=env).returncode == 0
    for argv in (["get", "a/k"], ["info", "a/k"], ["keys", "-l"], ["settings"], ["dump"]):
        done = cli(*LOUD, *base, *argv, env=env)
        assert done.returncode == 0, f"{argv}: {done.stderr!r}"
        assert_no_secret(done, PASSWORD)
    done = cli(*LOUD, "-s", "s3://no-such-bucket-here", *base[2:], "get", "k", env=env)
    assert done.returncode in (1, 3)
    assert_no_secret(done, PASSWORD)


def test_library_errors_and_reprs_mask_the_password():
    from anystore_cli.core import StoreError, get_store

    store = get_store(uri=f"redis://:{PASSWORD}@127.0.0.1:1/0", backend_config={"socket_connect_timeout": 1})
    with pytest.raises(StoreError) as caught:
        store.get("k")
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(store) and PASSWORD not in str(store)
    store = get_store(uri=f"postgresql://u:{PASSWORD}@127.0.0.1:1/x")
    with pytest.raises(StoreError) as caught:
        store.put("k", b"v")
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(store)
    # options s3fs takes (secret by name) beside one that is not secret
    config = {name: PASSWORD for name in ("key", "secret", "token", "password")}
    store = get_store(uri="s3://secrets", backend_config={**config, "endpoint_url": "http://visible"})
    assert PASSWORD not in repr(store)
    assert "visible" in repr(store)


def test_query_password_masking_keeps_the_closing_backtick(cli):
    done = cli("-s", f"redis://127.0.0.1:1/0?password={PASSWORD}", "get", "k")
    assert done.returncode == 3
    assert_no_secret(done)
    assert b"?password=***`" in done.stderr
