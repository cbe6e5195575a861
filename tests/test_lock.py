"""`anystore lock`: a lease that holds across processes, through the real command line, on
every backend that can lock atomically (local, sqlite, PostgreSQL, MariaDB, Redis, S3 via
moto's server, which honours If-None-Match and If-Match on PutObject)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import anystore_bin, drop_sql_table, run_cli

pytestmark = pytest.mark.service

LOCK_BACKENDS = ["local", "sqlite", "postgres", "mysql", "redis", "s3"]
CONTENDERS = 8


def _fresh(store_factory: Any, backend: str) -> tuple[str, dict[str, Any]]:
    """`uri_and_config` of a fresh store; on SQL servers its `<table>_locks` is dropped after."""
    uri, config = store_factory.uri_and_config(backend)
    if backend in ("postgres", "mysql"):
        store_factory.cleanups.append(lambda: drop_sql_table(uri, f"{config['table']}_locks"))
    return uri, config


def _store(store_factory: Any, backend: str) -> Any:
    from anystore_cli.store.registry import get_store

    uri, config = _fresh(store_factory, backend)
    return get_store(uri=uri, backend_config=config or None)


def _options(store_factory: Any, backend: str) -> tuple[list[str], dict[str, str]]:
    """Global options for a fresh store, and the environment the CLI needs (S3 credentials)."""
    uri, config = _fresh(store_factory, backend)
    options = ["-s", uri]
    for name, value in config.items():
        options += ["-b", f"{name}={value}"]
    env = {}
    if backend == "s3":
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    return options, env


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    full_env.update(env)
    return subprocess.Popen(
        [anystore_bin(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=full_env,
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    """Start `anystore` with SIGINT at its default, as from a terminal or cron (a test runner
    started in the background may have it ignored, and ignored signals are inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def tell(path: Path) -> str:
    """A shell command that writes the lock's fencing token to `path`."""
    return f"echo $ANYSTORE_LOCK_TOKEN > {path}"


def _wait_gone(pid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"process {pid} still runs {timeout} s after `anystore lock` was killed")


def _wait_for(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written within {timeout} s")


@pytest.mark.parametrize("backend", LOCK_BACKENDS)
def test_contenders_run_their_critical_sections_one_at_a_time(backend: str, store_factory: Any, tmp_path: Path) -> None:
    options, env = _options(store_factory, backend)
    counter, log = tmp_path / "counter", tmp_path / "log"
    counter.write_text("0")
    # read, sleep, write: an overlap loses an increment and interleaves the log
    section = (
        f'echo "start $ANYSTORE_LOCK_TOKEN" >> {log}; n=$(cat {counter}); sleep 0.1; '
        f'echo $((n + 1)) > {counter}; echo "end $ANYSTORE_LOCK_TOKEN" >> {log}'
    )
    procs = [
        _spawn([*options, "lock", "section", "--ttl", "2", "--wait", "90", "--", "sh", "-c", section], env)
        for _ in range(CONTENDERS)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    assert counter.read_text().strip() == str(CONTENDERS)
    lines = log.read_text().split()
    events = list(zip(lines[0::2], lines[1::2], strict=True))
    assert [kind for kind, _ in events] == ["start", "end"] * CONTENDERS
    tokens = [int(token) for kind, token in events if kind == "start"]
    assert tokens == sorted(tokens) and len(set(tokens)) == CONTENDERS  # fencing tokens grow


@pytest.mark.parametrize("backend", LOCK_BACKENDS)
def test_killed_holders_lease_is_taken_over_after_the_ttl_with_a_larger_token(
    backend: str, store_factory: Any, tmp_path: Path
) -> None:
    options, env = _options(store_factory, backend)
    first, second, child = tmp_path / "first", tmp_path / "second", tmp_path / "child"
    holder = _spawn(
        [*options, "lock", "job", "--ttl", "2", "--", "sh", "-c", f"echo $$ > {child}; {tell(first)}; sleep 60"], env
    )
    token = int(_wait_for(first))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    held = run_cli(*options, "lock", "job", "--", "true", env=env)
    assert held.returncode == 1
    assert f"pid {holder.pid}" in held.stderr.decode() and "held by host" in held.stderr.decode()
    _wait_gone(int(_wait_for(child)))  # the command does not run on without the lease
    started = time.monotonic()
    taken = run_cli(*options, "lock", "job", "--wait", "10", "--", "sh", "-c", tell(second), env=env)
    assert taken.returncode == 0, taken.stderr.decode()
    assert time.monotonic() - started < 5
    assert int(second.read_text()) > token


@pytest.mark.parametrize("backend", LOCK_BACKENDS)
def test_a_lost_lease_stops_the_command_and_exits_3(backend: str, store_factory: Any, tmp_path: Path) -> None:
    options, env = _options(store_factory, backend)
    started_file = tmp_path / "started"
    script = f"echo go > {started_file}; exec sleep 60"
    holder = _spawn([*options, "lock", "job", "--ttl", "1", "--", "sh", "-c", script], env)
    _wait_for(started_file)
    status = run_cli(*options, "lock", "job", "--status", env=env)
    assert status.returncode == 0 and b'"state":"held"' in status.stdout
    released = run_cli(*options, "lock", "job", "--release", env=env)  # behind the holder's back
    assert released.returncode == 0, released.stderr.decode()
    started = time.monotonic()
    _, err = holder.communicate(timeout=20)
    assert holder.returncode == 3
    assert time.monotonic() - started < 5  # noticed at the next renewal (ttl/3), not after sleep 60
    assert err.decode().count("\n") == 1 and "lease lost" in err.decode()


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_command_exit_status_passes_through(backend: str, store_factory: Any) -> None:
    options, env = _options(store_factory, backend)
    assert run_cli(*options, "lock", "job", "--", "sh", "-c", "exit 7", env=env).returncode == 7
    assert run_cli(*options, "lock", "job", "--", "sh", "-c", "kill -TERM $$", env=env).returncode == 128 + 15
    assert run_cli(*options, "lock", "job", "--", "no-such-command-here", env=env).returncode == 127
    # the lease was released each time: the next run takes it at once
    assert run_cli(*options, "lock", "job", "--", "true", env=env).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_to_anystore_lock_reach_the_command(signum: int, tmp_path: Path) -> None:
    started_file, got = tmp_path / "started", tmp_path / "got"
    name = signal.Signals(signum).name[3:]
    # (the background sleep ignores SIGINT, as sh's background jobs do: its output goes elsewhere
    # so that it does not hold our pipes open)
    script = f'trap "echo {name} > {got}; exit 5" {name}; echo go > {started_file}; sleep 60 > /dev/null 2>&1 & wait'
    holder = _spawn(["-s", str(tmp_path / "store"), "lock", "job", "--", "sh", "-c", script], {})
    _wait_for(started_file)
    holder.send_signal(signum)
    holder.communicate(timeout=20)
    assert got.read_text().strip() == name
    assert holder.returncode == 5
    assert run_cli("-s", str(tmp_path / "store"), "lock", "job", "--", "true").returncode == 0  # released


def test_zip_and_memory_stores_refuse_with_exit_3(tmp_path: Path) -> None:
    for uri in (str(tmp_path / "a.zip"), "memory://x"):
        result = run_cli("-s", uri, "lock", "job", "--", "true")
        assert result.returncode == 3
        assert result.stderr.decode().startswith("anystore: error: ") and "lock" in result.stderr.decode()


def test_status_and_release_of_a_free_lock_exit_1(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    status = run_cli("-s", store, "lock", "job", "--status")
    assert status.returncode == 1 and b'"state":"free"' in status.stdout
    assert run_cli("-s", store, "lock", "job", "--release").returncode == 1
    assert run_cli("-s", store, "lock", "job").returncode == 2  # no COMMAND


def test_library_lock_excludes_threads_and_grows_the_token(store_factory: Any) -> None:
    from anystore_cli.core import Lock, LockHeld

    store = store_factory("local")
    inside, overlaps, tokens = [0], [], []

    def work() -> None:
        with Lock(store, "lib", ttl=2, wait=30) as lock:
            inside[0] += 1
            overlaps.append(inside[0])
            tokens.append(lock.token)
            time.sleep(0.05)
            inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [1] * 4 and sorted(tokens) == [1, 2, 3, 4]
    with Lock(store, "lib", ttl=2):
        with pytest.raises(LockHeld) as info:
            Lock(store, "lib", ttl=2).acquire()
        assert info.value.holder is not None and info.value.holder.pid == os.getpid()
    assert list(store.iterate_keys()) == []  # leases are no keys


def test_leases_are_not_listed_as_keys_on_s3(store_factory: Any) -> None:
    options, env = _options(store_factory, "s3")
    assert run_cli(*options, "put", "a", "-", input=b"1", env=env).returncode == 0
    assert run_cli(*options, "lock", "job", "--", "true", env=env).returncode == 0
    assert run_cli(*options, "lock", "job", "--status", env=env).returncode == 1  # released, still stored
    assert run_cli(*options, "keys", env=env).stdout == b"a\n"


def test_renewal_failing_past_the_ttl_loses_the_lease(store_factory: Any) -> None:
    from anystore_cli.errors import StoreError
    from anystore_cli.services.lock import Lock

    lost: list[str] = []
    lock = Lock(store_factory("local"), "job", ttl=0.6, on_lost=lost.append)
    with lock:

        def unreachable(*_: Any) -> Any:
            raise StoreError("store unreachable")

        lock.backend.renew = unreachable  # type: ignore[method-assign]
        started = time.monotonic()
        assert lock.lost.wait(5)
        elapsed = time.monotonic() - started
    assert 0.2 < elapsed < 1.5  # kept trying until the lease's expiry, not at the first failure
    assert len(lost) == 1 and "renewal failed past the ttl (store unreachable)" in lost[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql", "redis", "s3", "local"])
def test_lock_names_are_exact(backend: str, store_factory: Any) -> None:
    from anystore_cli.services.lock import Lock

    store = _store(store_factory, backend)
    with Lock(store, "Job", ttl=5), Lock(store, "job", ttl=5), Lock(store, "job ", ttl=5), Lock(store, "a/b", ttl=5):
        pass


def _pids(path: Path, count: int) -> list[int]:
    """The `count` pids written to `path`, one a line, once all are there."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= count:
            return [int(line) for line in lines]
        time.sleep(0.05)
    raise AssertionError(f"{path} did not get {count} pids within 20 s")


@pytest.mark.parametrize("how", ["sigkill", "command-ends"])
def test_the_commands_descendants_die_with_the_holder(how: str, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # a child, a grandchild and a great-grandchild that all outlive `sh` unless killed
    inner = f"sleep 300 & echo $! >> {pids}; wait"
    script = f"sleep 300 & echo $! >> {pids}; sh -c '{inner}' & echo $$ >> {pids}; sleep 300 & echo $! >> {pids}; "
    script += f'while [ "$(wc -l < {pids})" -lt 4 ]; do sleep 0.01; done'  # all written before sh goes on
    script += "; wait" if how == "sigkill" else ""
    holder = _spawn(["-s", str(tmp_path / "store"), "lock", "job", "--ttl", "2", "--", "sh", "-c", script], {})
    descendants = _pids(pids, 4)
    if how == "sigkill":
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    else:  # COMMAND (`sh`) exits at once, leaving its background jobs behind
        _, err = holder.communicate(timeout=20)
        assert holder.returncode == 0, err.decode()
    for pid in descendants:
        _wait_gone(pid)
    if how == "sigkill":
        taken = run_cli("-s", str(tmp_path / "store"), "lock", "job", "--wait", "10", "--", "true")
        assert taken.returncode == 0, taken.stderr.decode()


@pytest.mark.parametrize("ttl", ["nan", "inf", "-inf", "0", "-1"])
def test_ttl_that_is_not_a_positive_number_is_refused(ttl: str, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    result = run_cli("-s", str(tmp_path / "store"), "lock", "job", "--ttl", ttl, "--", "touch", str(ran))
    assert result.returncode == 2, result.stderr.decode()
    assert result.stderr.decode().startswith("anystore: error: ") and not ran.exists()
    assert run_cli("-s", str(tmp_path / "store"), "lock", "job", "--wait", "nan", "--", "true").returncode == 2


def test_library_lock_refuses_nan_ttl(store_factory: Any) -> None:
    from anystore_cli.services.lock import Lock

    for ttl in (float("nan"), float("inf"), 0):
        with pytest.raises(ValueError, match="ttl"):
            Lock(store_factory("local"), "job", ttl=ttl)
    for name in ("..", "a\x00b", "x/./y"):
        with pytest.raises(ValueError, match="lock name"):
            Lock(store_factory("local"), name)


@pytest.mark.parametrize("name", ["..", ".", "", "a/../b", "../x"])
def test_lock_names_follow_the_rules_of_keys(name: str, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    # digit-named user keys at the root: a lease folder placed there took them for tokens
    for key in ("00000000000000000000", "00000000000000000001"):
        assert run_cli("-s", store, "put", key, "-", input=b"user data").returncode == 0
    for args in (["--", "true"], ["--status"], ["--release"]):
        result = run_cli("-s", store, "lock", name, *args)
        assert result.returncode == 2, result.stderr.decode()
        assert result.stderr.decode().startswith("anystore: error: ") and "lock name" in result.stderr.decode()
    for key in ("00000000000000000000", "00000000000000000001"):
        assert run_cli("-s", store, "get", key).stdout == b"user data"


@pytest.mark.parametrize("backend", ["local", "sqlite", "redis"])
def test_long_and_dotted_lock_names_work(backend: str, store_factory: Any, tmp_path: Path) -> None:
    options, env = _options(store_factory, backend)
    # a key of five 200-character segments, a name starting with dots, a non-ASCII digit one
    for name in ("/".join(["n" * 200] * 5), "..hidden", ".x", "²³"):
        token = tmp_path / "token"
        result = run_cli(*options, "lock", name, "--", "sh", "-c", tell(token), env=env)
        assert result.returncode == 0, result.stderr.decode()
        assert token.read_text().strip() == "1"
        status = run_cli(*options, "lock", name, "--status", env=env)
        assert status.returncode == 1 and (b'"state":"released"' in status.stdout or b'"state":"free"' in status.stdout)
    assert run_cli(*options, "keys", env=env).stdout == b""


@pytest.mark.parametrize("backend", LOCK_BACKENDS)
def test_tokens_grow_by_one_per_acquisition_not_per_poll(backend: str, store_factory: Any, tmp_path: Path) -> None:
    options, env = _options(store_factory, backend)
    first, second, release = tmp_path / "first", tmp_path / "second", tmp_path / "release"
    script = f"{tell(first)}; while [ ! -e {release} ]; do sleep 0.05; done"
    holder = _spawn([*options, "lock", "job", "--ttl", "5", "--", "sh", "-c", script], env)
    token = int(_wait_for(first))
    waiting = run_cli(*options, "lock", "job", "--wait", "1.5", "--", "true", env=env)  # polls several times
    assert waiting.returncode == 1
    release.touch()
    holder.communicate(timeout=20)
    assert run_cli(*options, "lock", "job", "--", "sh", "-c", tell(second), env=env).returncode == 0
    assert int(second.read_text()) == token + 1


def test_status_says_when_the_holder_is_dead_on_this_host(tmp_path: Path) -> None:
    store, first = str(tmp_path / "store"), tmp_path / "first"
    holder = _spawn(["-s", store, "lock", "job", "--ttl", "30", "--", "sh", "-c", f"{tell(first)}; sleep 60"], {})
    _wait_for(first)
    alive = run_cli("-s", store, "lock", "job", "--status")
    assert alive.returncode == 0 and b'"pid_alive":true' in alive.stdout and alive.stderr == b""
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    dead = run_cli("-s", store, "lock", "job", "--status")
    assert dead.returncode == 0 and b'"state":"held"' in dead.stdout and b'"pid_alive":false' in dead.stdout
    assert f"pid {holder.pid}, is not running on this host" in dead.stderr.decode()


def test_the_lease_primitive_is_the_one_the_backend_names() -> None:
    """`lease_backend` loads the class a backend names in `capabilities.leases`; a backend that names
    none refuses, naming the store by its uri scheme."""
    from anystore_cli.backends.leases.memory import MemoryLeases
    from anystore_cli.backends.memory import MemoryStore
    from anystore_cli.services.lock import LockUnsupported, lease_backend

    assert isinstance(lease_backend(MemoryStore(uri="memory://primitive")), MemoryLeases)

    class NoLeases(MemoryStore):
        capabilities = dataclasses.replace(MemoryStore.capabilities, leases=None)

    with pytest.raises(LockUnsupported, match=r"`memory` stores cannot hold a lock atomically"):
        lease_backend(NoLeases(uri="memory://primitive"))


def test_the_lock_service_asks_the_backend_and_reaches_into_none() -> None:
    """services/lock.py chooses a primitive by what the backend declares: it names no backend
    class and reads no private attribute of anything but itself."""
    import ast
    import inspect

    from anystore_cli.services import lock

    tree = ast.parse(inspect.getsource(lock))
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert private == []
    assert "__name__" not in inspect.getsource(lock)
    for backend in ("LocalStore", "SqlStore", "RedisStore", "MemoryStore", "ZipStore"):
        assert backend not in inspect.getsource(lock)
