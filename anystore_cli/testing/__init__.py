"""The backend contract suite, for anyone who registers a backend (see docs/testing.md).

    from anystore_cli.testing import BackendContract

    class TestMyBackend(BackendContract):
        @pytest.fixture
        def make_store(self, tmp_path):
            return lambda **options: get_store(uri=f"my://{tmp_path}", **options)

Nothing in anystore_cli imports this package: it needs pytest, which only a test run has.
"""

import pytest

# failing asserts in the suite explain themselves as they do in the test's own module
pytest.register_assert_rewrite("anystore_cli.testing.contract")

from anystore_cli.testing.contract import SPECIAL_KEYS, BackendContract, MakeStore  # noqa: E402

__all__ = ["SPECIAL_KEYS", "BackendContract", "MakeStore"]
