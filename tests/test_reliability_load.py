"""Load: 8 processes x 500 mixed put/get/rm operations on one store, for local, sqlite,
PostgreSQL, MariaDB and Redis: no error, no lost or mixed value.

Each process owns some keys (it alone writes them, so it knows what they must hold) and shares
others with every process. Values name their key, writer and sequence number and carry a
checksum (`tests.faults.make_value`), so a torn or mixed value is caught wherever it is read.
"""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from anystore_cli.core import get_store
from tests.faults import OWN_KEYS, SHARED_KEYS, check_value, load_worker, own_key, record, shared_key

PROCESSES = 8
OPERATIONS = 500


def run_workers(uri: str, config: dict[str, Any], processes: int = PROCESSES) -> list[dict[str, Any]]:
    """Run `processes` load workers at once (fresh interpreters) and return their reports."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        jobs = [
            pool.apply_async(load_worker, (uri, config, worker, OPERATIONS, 7919 * worker))
            for worker in range(processes)
        ]
        return [job.get(timeout=300) for job in jobs]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "sqlite", "postgres", "mysql", "redis"])
def test_parallel_processes_lose_and_mix_nothing(backend, store_factory):
    uri, config = store_factory.uri_and_config(backend)
    started = time.monotonic()
    reports = run_workers(uri, config)
    elapsed = time.monotonic() - started
    errors = [error for report in reports for error in report["errors"]]
    assert errors == [], f"{len(errors)} errors, first ones: {errors[:10]}"

    store = get_store(uri=uri, backend_config=config or None, serialization_mode="raw")
    lost = mixed = 0
    for report in reports:
        worker = report["worker"]
        for index in range(OWN_KEYS):
            key = own_key(worker, index)
            expected = report["expected"][key]
            found = store.get(key, raise_on_nonexist=False)
            if expected is None:
                assert found is None, f"{key} was deleted last but holds {found[:60]!r}"
                continue
            if found is None:
                lost += 1
                continue
            fields = check_value(found, key)
            if (fields["writer"], fields["seq"]) != (f"w{worker}", expected):
                mixed += 1
    for index in range(SHARED_KEYS):
        key = shared_key(index)
        found = store.get(key, raise_on_nonexist=False)
        if found is not None:
            check_value(found, key)
    keys = set(store.iterate_keys())
    allowed = {own_key(r["worker"], i) for r in reports for i in range(OWN_KEYS)} | {
        shared_key(i) for i in range(SHARED_KEYS)
    }
    assert keys <= allowed, f"unexpected keys: {sorted(keys - allowed)[:10]}"
    ops: dict[str, int] = {}
    for report in reports:
        for name, count in report["ops"].items():
            ops[name] = ops.get(name, 0) + count
    total = sum(ops.values())
    record(
        f"load-{backend}",
        processes=PROCESSES,
        operations=total,
        errors=0,
        lost=lost,
        mixed=mixed,
        seconds=round(elapsed, 1),
        ops=ops,
    )
    assert total == PROCESSES * OPERATIONS
    assert (lost, mixed) == (0, 0)


def _churn(uri: str, name: str, rounds: int) -> list[str]:
    """Put, read back and delete one key again and again, in a folder other processes empty too."""
    from anystore_cli.core import get_store

    store = get_store(uri=uri, serialization_mode="raw")
    errors: list[str] = []
    key = f"churn/a/b/{name}"
    for index in range(rounds):
        value = b"%s-%d" % (name.encode(), index)
        try:
            store.put(key, value)
            if store.get(key) != value:
                errors.append(f"{key}: read back something else")
            if not store.delete(key):
                errors.append(f"{key}: vanished before its delete")
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            errors.append(f"{key}: {type(exc).__name__}: {exc}")
    return errors


@pytest.mark.slow
def test_local_writes_survive_other_processes_pruning_their_folder(tmp_path):
    """A delete removes folders it leaves empty; a put in the same folder at that moment must
    create it again rather than fail."""
    uri = str(tmp_path / "store")
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(_churn, [(uri, f"k{index}", 600) for index in range(4)])
    errors = [error for result in results for error in result]
    record("load-local-prune-race", processes=4, operations=4 * 600 * 3, errors=len(errors))
    assert errors == [], errors[:5]
