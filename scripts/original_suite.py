#!/usr/bin/env python
"""Run the original anystore 0.3.0 test suite against `anystore_cli.core`.

Usage:
    python scripts/original_suite.py [PATH_TO_ORIGINAL_CHECKOUT] [-k EXPR] [--keep]

Without a path, the public repository is cloned at tag v0.3.0 into a temporary folder
(`git clone --depth 1 --branch v0.3.0 https://github.com/investigativedata/anystore`): that
needs the network. Only the checkout's `tests/` folder is used, copied into a temporary
folder; the original's code is never imported. `import anystore` and every `anystore.X`
resolve to `anystore_cli.core` and `anystore_cli.core.X` (the same module objects), through
a meta path finder this file installs when pytest loads it as a plugin.

A few assertions pin behaviour this project changes on purpose; each is removed from the copy
(the line is replaced by `pass`) and printed with its reason before the run. Whole tests are
deselected only where no single line can go.

The original's tests need boto3, requests, moto and pytest-asyncio (pip install
'anystore-cli[test]'); this script installs nothing and says what is missing.
Run it with the project's interpreter: `.venv/bin/python scripts/original_suite.py`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from typing import Any

ALIAS = "anystore"
TARGET = "anystore_cli.core"
ALIAS_ENV = "ANYSTORE_TEST_ORIGINAL_SUITE_ALIAS"  # ANYSTORE_TEST_* is no setting
REPOSITORY = "https://github.com/investigativedata/anystore"
TAG = "v0.3.0"
REQUIRED = {
    "boto3": "boto3",
    "requests": "requests",
    "moto": "moto[server]",
    "pytest_asyncio": "pytest-asyncio",
    "pytest": "pytest",
    "aiobotocore": "s3fs",
}

# (file in tests/, the consecutive lines as written there (stripped), why they go)
REMOVED_LINES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "test_serialize.py",
        ("with pytest.raises(ValueError):", 'serialize.to_store("str value", serialization_mode="raw")'),
        "raw mode encodes a str as UTF-8 instead of raising (the command line's `put` stores text as it is)",
    ),
    (
        "test_store.py",
        ('assert store.get("foo%20bar") == "baz"',),
        "keys are literal, never percent-decoded: `foo%20bar` and `foo bar` are two keys (CLI.md)",
    ),
    (
        "test_store.py",
        ('assert store.get("foo2 bar") == "baz"',),
        "keys are literal, never percent-decoded: `foo2%20bar` and `foo2 bar` are two keys (CLI.md)",
    ),
    (
        "test_store.py",
        ('keys = [k for k in store.iterate_keys(prefix="sub%20dir")]', "assert len(keys) == 1"),
        "prefixes are literal, never percent-decoded: `sub%20dir` is not the folder `sub dir`",
    ),
    (
        "test_store.py",
        ('store = Store(uri=fixtures_path / "sub%20dir")', "assert len(list(store.iterate_keys())) == 1"),
        "a path is literal: the folder `sub%20dir` is not the folder `sub dir` (a `file://` uri is decoded)",
    ),
    (
        "fixtures/store.yml",
        ("raise_on_onexist: false",),
        "the fixture's misspelt field (ignored by the original) is refused as every unknown config field (CLI.md)",
    ),
]

# (test node id, why it is deselected)
DESELECTED: list[tuple[str, str]] = []


class _AliasLoader(importlib.abc.Loader):
    """Hands out the already imported `anystore_cli.core.X` module for `anystore.X`."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(self.target)

    def exec_module(self, module: Any) -> None:
        """Nothing to run: the module is the target, loaded under its own name."""


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolve `anystore` and `anystore.X.Y` to `anystore_cli.core` and `anystore_cli.core.X.Y`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        real = TARGET + fullname[len(ALIAS) :]
        try:
            real_spec = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            return None
        if real_spec is None:
            return None
        is_package = real_spec.submodule_search_locations is not None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real), is_package=is_package)


def install_alias() -> None:
    """Put the alias finder first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


if os.environ.get(ALIAS_ENV) == "1":  # loaded by pytest as a plugin (-p original_suite)
    install_alias()

    import aiobotocore.endpoint
    import pytest

    _CONVERT_TO_RESPONSE_DICT = aiobotocore.endpoint.convert_to_response_dict

    @pytest.fixture(scope="session", autouse=True)
    def _s3_through_moto_server(request: Any) -> None:
        """Undo the conftest's patch of aiobotocore for in-process moto.

        In-process moto cannot serve the aiobotocore this project installs (moto fails to read
        its request bodies); S3 calls go to a moto server instead (moto's server mode, set up by
        the script), which needs aiobotocore's own response handling.
        """
        try:
            request.getfixturevalue("patch_aiobotocore")  # the conftest's patch comes first ...
        except pytest.FixtureLookupError:
            pass
        aiobotocore.endpoint.convert_to_response_dict = _CONVERT_TO_RESPONSE_DICT  # ... then goes


def _missing_packages() -> list[str]:
    return [pip_name for module, pip_name in REQUIRED.items() if importlib.util.find_spec(module) is None]


def _clone(folder: str) -> str:
    import subprocess

    target = os.path.join(folder, "anystore-original")
    print(f"Cloning {REPOSITORY} at {TAG} (needs the network) ...", flush=True)
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", "--branch", TAG, REPOSITORY, target],
        check=True,
    )
    return target


def _start_moto_server(env: dict[str, str]) -> Any:
    """Start a moto server on a free port and point moto's server mode and S3 clients at it."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    env.update(
        {
            "TEST_SERVER_MODE": "true",
            "TEST_SERVER_MODE_ENDPOINT": endpoint,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    env.pop("AWS_ENDPOINT_URL_S3", None)
    env.pop("AWS_PROFILE", None)
    return process


def _pytest_env(checkout: str) -> dict[str, str]:
    """The environment of the original's `[tool.pytest_env]` (pyproject.toml)."""
    env = {"REDIS_DEBUG": "1", "DEBUG": "1", "ANYSTORE_YAML_URI": "./tests/fixtures/store.yml"}
    pyproject = os.path.join(checkout, "pyproject.toml")
    try:
        import tomllib
    except ImportError:  # Python 3.10: the defaults above are the original's values
        return env
    if os.path.exists(pyproject):
        with open(pyproject, "rb") as handle:
            configured = tomllib.load(handle).get("tool", {}).get("pytest_env") or {}
        env.update({str(key): str(value) for key, value in configured.items()})
    return env


ORIGINAL_REDIS_KEYS = [
    "test",
    "seri",
    "other",
    "foo/bar/baz",
    "touched",
    "nothing",
    "lorem",
    "lorem2/ipsum.pdf",
    "lorem.txt",
    "lorem2.txt",
    "popped",
    "to_delete",
    "expired",
    "foo2%20bar",
] + ["foo bar"]
"""The keys the original's store test writes (tests/test_store.py, `_test_store`)"""


def _drop_redis_keys() -> None:
    """Remove the keys the original's Redis test writes, from redis://localhost (best effort)."""
    try:
        from anystore_cli.store.registry import get_store

        store = get_store("redis://localhost")
        for key in ORIGINAL_REDIS_KEYS:
            store.delete(key, ignore_errors=True)
    except Exception as exc:  # noqa: BLE001 - a cleanup that fails says so and moves on
        print(f"  (could not remove the original Redis test's keys: {exc})")


def _remove_lines(tests: str) -> None:
    for name, block, reason in REMOVED_LINES:
        path = os.path.join(tests, name)
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        stripped = [line.strip() for line in lines]
        hits = [ix for ix in range(len(lines)) if tuple(stripped[ix : ix + len(block)]) == block]
        if not hits:
            print(f"  not found (nothing removed): {name}: {' / '.join(block)}")
            continue
        for ix in reversed(hits):
            indent = lines[ix][: len(lines[ix]) - len(lines[ix].lstrip())]
            filler = "pass  " if name.endswith(".py") else ""
            lines[ix : ix + len(block)] = [f"{indent}{filler}# removed by original_suite.py"]
            shown = "\n          ".join(block)
            print(f"  removed {name}:{ix + 1}: {shown}\n      why: {reason}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))


def _first_error_line(problem: Any) -> str:
    """The line that says what went wrong: the exception line of the traceback if there is one."""
    text = (problem.text or "").strip().splitlines()
    errors = [line.strip() for line in text if line.startswith("E ") or "Error" in line.split(":")[0]]
    message = (problem.get("message") or "").strip().splitlines()
    best = errors[-1] if errors else (message[0] if message else "")
    return best.removeprefix("E").strip()[:200]


def _report(junit: str) -> tuple[int, int, int]:
    import xml.etree.ElementTree as ElementTree

    passed = failed = skipped = 0
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        classname = case.get("classname") or ""
        name = f"{classname.replace('.', '/')}.py::{case.get('name')}" if classname else str(case.get("name"))
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skip = case.find("skipped")
        if problem is not None:
            failed += 1
            print(f"FAILED  {name}: {_first_error_line(problem)}")
        elif skip is not None:
            skipped += 1
            print(f"SKIPPED {name}: {(skip.get('message') or '')[:160]}")
        else:
            passed += 1
            print(f"PASSED  {name}")
    return passed, failed, skipped


def main(argv: list[str] | None = None) -> int:
    """Copy the original tests, run them against the core, print a line per test."""
    import argparse
    import shutil
    import subprocess
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", nargs="?", help="checkout of the original repository (default: clone it)")
    parser.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    parser.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output too")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)

    missing = _missing_packages()
    if missing:
        print(f"Missing packages for the original tests: pip install {' '.join(missing)}", file=sys.stderr)
        return 2

    work = tempfile.mkdtemp(prefix="anystore-original-suite-")
    try:
        try:
            checkout = args.checkout or _clone(work)
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"Cannot clone {REPOSITORY} ({exc}); without the network, pass a checkout's path", file=sys.stderr)
            return 2
        source = os.path.join(checkout, "tests")
        if not os.path.isdir(source):
            print(f"No tests/ folder in {checkout}", file=sys.stderr)
            return 2
        run_dir = os.path.join(work, "run")
        shutil.copytree(source, os.path.join(run_dir, "tests"))
        with open(os.path.join(run_dir, "pytest.ini"), "w") as handle:
            # the rootdir: no settings of this project leak in
            handle.write("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
        print("Assertions removed (deliberate differences):")
        _remove_lines(os.path.join(run_dir, "tests"))
        for node, reason in DESELECTED:
            print(f"  deselected {node}\n      why: {reason}")

        env = dict(os.environ)
        env.update(_pytest_env(checkout))
        env[ALIAS_ENV] = "1"
        if "ANYSTORE_WORKER_THREADS" not in env:
            # the worker test expects 5 one-second tasks to finish in under 5 s, which takes at
            # least 2 consumer threads: the default (the CPU count) gives 1 on a 2-CPU machine
            env["ANYSTORE_WORKER_THREADS"] = str(max(4, os.cpu_count() or 1))
            print(f"ANYSTORE_WORKER_THREADS={env['ANYSTORE_WORKER_THREADS']} (at least 2 consumer threads)")
        # the original's Redis test ran on fakeredis; here it talks to the server on localhost,
        # under the default prefix: remove the keys it writes before and after the run
        _drop_redis_keys()
        here = os.path.dirname(os.path.abspath(__file__))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, run_dir, env.get("PYTHONPATH")) if p)
        moto = _start_moto_server(env)
        junit = os.path.join(work, "junit.xml")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "original_suite",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=short",
            "--continue-on-collection-errors",
            f"--junitxml={junit}",
            "tests",
        ]
        command += [arg for node, _ in DESELECTED for arg in ("--deselect", node)]
        if args.keyword:
            command += ["-k", args.keyword]
        print(f"Running: {' '.join(command)}  (in {run_dir})", flush=True)
        try:
            output = None if args.verbose else subprocess.DEVNULL
            subprocess.run(command, cwd=run_dir, env=env, stdout=output, check=False)
            _drop_redis_keys()
        finally:
            moto.terminate()
            moto.wait()
        if not os.path.exists(junit):
            print("pytest wrote no report", file=sys.stderr)
            return 2
        passed, failed, skipped = _report(junit)
        print(f"\n{passed} passed, {failed} failed, {skipped} skipped, {len(DESELECTED)} deselected")
        return 0 if failed == 0 else 1
    finally:
        if args.keep:
            print(f"Kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
