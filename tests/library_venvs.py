"""The released `anystore` packages, each in a venv of its own, for tests of data written by one
side and read by the other.

A venv is built once per version and kept in `ANYSTORE_TEST_LIBRARY_VENVS` (default
`~/.cache/anystore-cli-tests/venvs`); a file lock keeps two test processes from building the same
one. When the package index cannot be reached the tests skip with the reason, except under `CI`,
where they fail.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import need

VERSIONS = ("0.3.0", "1.2.6")
# The drivers the library needs for the servers the tests use (its own extras differ by version).
DRIVERS = ("redis", "sqlalchemy", "psycopg2-binary", "pymysql")
ROOT = Path(os.environ.get("ANYSTORE_TEST_LIBRARY_VENVS", Path.home() / ".cache" / "anystore-cli-tests" / "venvs"))
_failures: dict[str, str] = {}


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def library_python(version: str) -> Path:
    """The interpreter of a venv holding `anystore==version`, built on first use."""
    if version in _failures:
        need(f"anystore {version} from the package index ({_failures[version]})", False)
    venv = ROOT / version
    ready = venv / ".ready"
    if ready.exists():
        return _python(venv)
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            _build(version, venv)
    return _python(venv)


def _build(version: str, venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [str(_python(venv)), "-m", "pip", "install", "-q", f"anystore=={version}", *DRIVERS],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        _failures[version] = tail[-300:] or f"pip exited {done.returncode}"
        need(f"anystore {version} from the package index ({_failures[version]})", False)
    (venv / ".ready").write_text(version)


def run_library(version: str, code: str, **data: object) -> object:
    """Run `code` under the released library; it reads `DATA` (the keyword arguments) and may set
    `RESULT`, which comes back decoded from JSON. A failure fails the test with the library's
    own traceback."""
    program = "import json, sys\nDATA = json.loads(sys.stdin.read())\nRESULT = None\n"
    program += textwrap.dedent(code)
    program += "\nsys.stdout.write(json.dumps(RESULT))\n"
    done = subprocess.run(
        [str(library_python(version)), "-c", program],
        input=json.dumps(data),
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")},
    )
    if done.returncode:
        pytest.fail(f"anystore {version} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout or "null")
