"""Redis and SQL backends under several processes at once, and failing servers, through the CLI.

The load tests run what a user's scripts do, 8 writers in parallel, 200 keys each, against
sqlite, PostgreSQL, MariaDB and Redis:

- `test_parallel_put_processes_write_every_key`: 8 processes, each running the command line's
  `put` 200 times in-process (every put its own store operation and transaction);
- `test_parallel_anystore_put_commands` (slow): 8 workers each starting the `anystore put`
  executable once per key. One process per key costs about 0.35 s of CPU, so 1,600 of them
  per backend take minutes on a small machine: it writes `ANYSTORE_TEST_KEYS_PER_WORKER` keys
  per worker (default 25); set it to 200 for the full 1,600 processes.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.service

BACKENDS = ["sqlite", "postgres", "mysql", "redis"]
WORKERS = 8
KEYS_PER_WORKER = 200
REPO = Path(__file__).resolve().parents[1]
CLI_KEYS_PER_WORKER = int(os.environ.get("ANYSTORE_TEST_KEYS_PER_WORKER", "25"))


def _cli_options(store_factory: Any, backend: str) -> list[str]:
    """Global CLI options (`-s URI -b NAME=VALUE`) for a fresh store on `backend`."""
    uri, config = store_factory.uri_and_config(backend)
    options = ["-s", uri]
    for name, value in config.items():
        options += ["-b", f"{name}={value}"]
    return options


def _store(options: list[str]) -> Any:
    from anystore_cli.core import get_store

    config = dict(item.split("=", 1) for item in options[3::2])
    return get_store(options[1], backend_config=config or None)


def _value(worker: int, index: int) -> str:
    return f"worker {worker} key {index} " + "x" * (index % 50)


def _check_all_keys(options: list[str], keys_per_worker: int) -> None:
    expected = {f"w{w}/k{i}": _value(w, i).encode() for w in range(WORKERS) for i in range(keys_per_worker)}
    store = _store(options)
    assert sorted(store.iterate_keys()) == sorted(expected)
    assert dict(store.get_many(expected, serialization_mode="raw")) == expected
    result = run_cli(*options, "keys", "--count")
    assert result.returncode == 0 and int(result.stdout) == WORKERS * keys_per_worker


_PUT_LOOP = """
import sys
from anystore_cli.cli.app import run
from tests.test_backend_processes import _value
worker, count, options = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
failed = 0
for index in range(count):
    status = run([*options, "put", f"w{worker}/k{index}", _value(worker, index)])
    failed += status != 0
sys.exit(1 if failed else 0)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_put_processes_write_every_key(backend, store_factory):
    options = _cli_options(store_factory, backend)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _PUT_LOOP, str(worker), str(KEYS_PER_WORKER), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        for worker in range(WORKERS)
    ]
    outcomes = [(worker.wait(timeout=600), *worker.communicate()) for worker in workers]
    assert [(code, err) for code, _, err in outcomes] == [(0, b"")] * WORKERS
    _check_all_keys(options, KEYS_PER_WORKER)


def _put_commands(options: list[str], worker: int) -> list[str]:
    """Run the `anystore put` executable once per key; return the failures."""
    failures = []
    for index in range(CLI_KEYS_PER_WORKER):
        result = run_cli(*options, "put", f"w{worker}/k{index}", _value(worker, index))
        if result.returncode != 0 or result.stderr:
            failures.append(f"w{worker}/k{index}: exit {result.returncode}: {result.stderr.decode()!r}")
    return failures


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_anystore_put_commands(backend, store_factory):
    options = _cli_options(store_factory, backend)
    with ThreadPoolExecutor(WORKERS) as pool:
        failures = [f for found in pool.map(lambda w: _put_commands(options, w), range(WORKERS)) for f in found]
    assert failures == []
    _check_all_keys(options, CLI_KEYS_PER_WORKER)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_pop_processes_return_a_key_to_exactly_one(backend, store_factory):
    options = _cli_options(store_factory, backend)
    for round_ in range(3):
        assert run_cli(*options, "put", "job", f"payload {round_}").returncode == 0
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: run_cli(*options, "pop", "job"), range(2)))
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 1], [r.stderr for r in results]
        winner = next(r for r in results if r.returncode == 0)
        assert winner.stdout == f"payload {round_}".encode()
        assert run_cli(*options, "exists", "job").returncode == 1


def _pop_all(uri: str, config: dict[str, str], keys: list[str], barrier: Any, results: Any) -> None:
    from anystore_cli.core import get_store

    store = get_store(uri, backend_config=config or None, serialization_mode="raw")
    store.exists("warm-up")  # connect (and create the table) before the race
    barrier.wait()
    won = [key for key in keys if store.pop(key, raise_on_nonexist=False) is not None]
    results.put(won)


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_pop_processes_share_keys_without_duplicates(backend, store_factory):
    uri, config = store_factory.uri_and_config(backend)
    from anystore_cli.core import get_store

    keys = [f"job/{i}" for i in range(100)]
    get_store(uri, backend_config=config or None).put_many({key: key for key in keys})
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_pop_all, args=(uri, config, keys, barrier, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    won = [key for _ in workers for key in results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert sorted(won) == sorted(keys)


# ---- failing servers: exit 3 within 5 seconds, password masked ----------------------------------


def _startup_seconds() -> float:
    """Wall time of a command that touches no server: the interpreter's start on this machine now."""
    started = time.monotonic()
    assert run_cli("-s", "memory://", "exists", "k").returncode == 1
    return time.monotonic() - started


def _expect_exit_3(uri: str, secret: str) -> None:
    # the 5 second budget is the store's: on a loaded machine starting Python alone takes seconds
    startup = _startup_seconds()
    started = time.monotonic()
    result = run_cli("-s", uri, "get", "k", timeout=30)
    elapsed = time.monotonic() - started
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert elapsed < 5 or elapsed - startup < 5, f"took {elapsed:.1f} s (a bare start {startup:.1f} s)"
    assert secret not in stderr and "***" in stderr
    assert stderr.startswith("anystore: error: ") and stderr.count("\n") == 1


URIS = {
    "postgres": "postgresql://postgres:{pw}@{host}/test",
    "mysql": "mysql+pymysql://root:{pw}@{host}/test",
    "redis": "redis://:{pw}@{host}/0",
}


@pytest.mark.parametrize("backend", sorted(URIS))
def test_unreachable_port_exits_3(backend):
    _expect_exit_3(URIS[backend].format(pw="hunter2", host="127.0.0.1:1"), "hunter2")


@pytest.mark.parametrize("backend", sorted(URIS))
def test_silent_server_exits_3_within_5_seconds(backend):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        _expect_exit_3(URIS[backend].format(pw="hunter2", host=host), "hunter2")


def test_wrong_mariadb_password_exits_3(mysql_url):
    host = mysql_url.split("@", 1)[1].split("/", 1)[0]
    _expect_exit_3(f"mysql+pymysql://root:hunter2@{host}/test", "hunter2")


def test_refused_redis_credentials_exit_3(redis_url):
    # the server has no password: redis-py accepts AUTH for the default user, so name a user
    host = redis_url.split("://", 1)[1].rsplit("@", 1)[-1]
    _expect_exit_3(f"redis://nosuchuser:hunter2@{host}", "hunter2")


def test_unknown_postgres_role_exits_3(postgres_url):
    # the test server trusts every password, so a refused login is an unknown role
    host = postgres_url.split("@", 1)[1].split("/", 1)[0]
    _expect_exit_3(f"postgresql://nosuchrole:hunter2@{host}/test", "hunter2")


def _put_many_shuffled(uri: str, config: dict[str, str], seed: int, barrier: Any) -> None:
    import random

    from anystore_cli.core import get_store

    store = get_store(uri, backend_config=config or None)
    store.exists("warm-up")
    keys = [f"shared/{i}" for i in range(300)]
    barrier.wait()
    for round_ in range(4):
        random.Random(seed * 10 + round_).shuffle(keys)
        store.put_many({key: f"{seed}" for key in keys}, batch_size=100)


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_bulk_writes_of_shared_keys_do_not_deadlock(backend, store_factory):
    uri, config = store_factory.uri_and_config(backend)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_put_many_shuffled, args=(uri, config, seed, barrier)) for seed in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * 4
    from anystore_cli.core import get_store

    store = get_store(uri, backend_config=config or None)
    values = dict(store.get_many([f"shared/{i}" for i in range(300)]))
    assert len(values) == 300 and set(values.values()) <= {0, 1, 2, 3}
