"""Helpers shared by the command-line tests (test_cli_*.py): a store on a backend, driven
through the installed `anystore` in a subprocess with real pipes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import anystore_bin, run_cli

CLI_BACKENDS = ["local", "sqlite", "redis"]
"""A local folder, and the second backends every CLI.md row is checked on."""


class CliStore:
    """A fresh store on one backend, and `anystore -s URI -b ...` to drive it."""

    def __init__(self, backend: str, uri: str, config: dict[str, Any], tmp_path: Path) -> None:
        self.backend = backend
        self.uri = uri
        self.config = config
        self.tmp_path = tmp_path

    @property
    def global_args(self) -> list[str]:
        """The global options naming this store."""
        args = ["-s", self.uri]
        for name, value in self.config.items():
            args += ["-b", f"{name}={value}"]
        return args

    def __call__(
        self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return run_cli(*self.global_args, *args, input=input, env=env, timeout=timeout, cwd=self.tmp_path)

    def ok(self, *args: str, input: bytes | None = None) -> bytes:
        """Run, assert exit 0, return stdout."""
        proc = self(*args, input=input)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr.decode(errors="replace"))
        return proc.stdout

    def put(self, key: str, value: bytes) -> None:
        """Store `value` at `key` through `anystore put` (stdin)."""
        self.ok("put", key, input=value)

    def get(self, key: str) -> bytes:
        """`anystore get KEY`, asserting success."""
        return self.ok("get", key)

    def shell(self, pipeline: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run a bash pipeline where `$ANYSTORE` is `anystore -s URI -b ...`."""
        import shlex

        command = " ".join(shlex.quote(a) for a in [anystore_bin(), *self.global_args])
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
        env["ANYSTORE"] = command
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", pipeline.replace("$ANYSTORE", command)],
            capture_output=True,
            env=env,
            cwd=self.tmp_path,
            timeout=kwargs.pop("timeout", 120),
            **kwargs,
        )


def make_cli_store(store_factory: Any, backend: str) -> CliStore:
    """A fresh, empty `CliStore` on `backend`."""
    uri, config = store_factory.uri_and_config(backend)
    return CliStore(backend, uri, config, store_factory.tmp_path)


@pytest.fixture(params=CLI_BACKENDS)
def cli_store(request: pytest.FixtureRequest, store_factory: Any) -> CliStore:
    """A fresh store on each CLI backend in turn."""
    return make_cli_store(store_factory, request.param)


@pytest.fixture
def local_store(store_factory: Any) -> CliStore:
    """A fresh local-folder store."""
    return make_cli_store(store_factory, "local")


def stderr_text(proc: subprocess.CompletedProcess[bytes]) -> str:
    """stderr as text."""
    return proc.stderr.decode("utf-8", "replace")


def assert_one_line_error(proc: subprocess.CompletedProcess[bytes], status: int, *fragments: str) -> str:
    """Assert the exit status, a single `anystore: error:` line and no traceback; return it."""
    err = stderr_text(proc)
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("anystore: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)
    return lines[0]
