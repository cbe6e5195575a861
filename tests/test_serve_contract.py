"""The backend contract suite, run against `anystore+http://`: a local folder behind a real
`anystore serve` process, each test in its own folder of the served store."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")

from anystore_cli.testing import BackendContract, MakeStore  # noqa: E402
from tests.conftest import StoreFactory, anystore_bin, unique  # noqa: E402

TOKEN = "contract-token"


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A writable server in front of a local folder, for the whole module."""
    root: Path = tmp_path_factory.mktemp("served")
    token = root.parent / "contract-token.txt"
    token.write_text(TOKEN)
    proc = subprocess.Popen(
        [anystore_bin(), "-q", "-s", str(root), "serve", "--port", "0", "--writable", "--token-file", str(token)],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    port = int(line.split(" on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    yield f"anystore+http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class ServedFactory(StoreFactory):
    """Stores in fresh folders of the served store."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path, root: str) -> None:
        super().__init__(request, tmp_path)
        self.root = root

    def uri_and_config(self, backend: str) -> tuple[str, dict[str, Any]]:
        if backend != "served":
            return super().uri_and_config(backend)
        return f"{self.root}/{unique()}", {"token": TOKEN}


@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path, served_root: str) -> Iterator[StoreFactory]:
    factory = ServedFactory(request, tmp_path, served_root)
    yield factory
    factory.close()


class TestServed(BackendContract):
    """The contract on a fresh folder of the served store for each test."""

    child_stores_by_uri = True

    @pytest.fixture
    def make_store(self, store_factory: StoreFactory) -> MakeStore:
        """Fresh folders of the served store."""
        return lambda **options: store_factory("served", **options)
