"""Single-valued filters given twice are refused before anything is listed or deleted."""

from __future__ import annotations

import pytest


@pytest.fixture
def folder(tmp_path, cli):
    store = str(tmp_path / "st")
    for key in ("a/keep", "a/x", "b/y"):
        assert cli("-s", store, "put", key, "v").returncode == 0
    return store


@pytest.mark.parametrize(
    "args",
    [
        ("rm", "--prefix", "a", "--exclude-prefix", "a/keep", "--exclude-prefix", "a/x"),
        ("rm", "--glob", "a/*", "--glob", "b/*"),
        ("rm", "--prefix", "a", "--prefix", "b"),
        ("keys", "--shard", "0/2", "--shard", "1/2"),
    ],
)
def test_a_repeated_single_filter_is_a_usage_error_and_deletes_nothing(folder, cli, args):
    result = cli("-s", folder, *args)
    assert result.returncode == 2
    flag = args[-2]
    assert f"{flag} given more than once" in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1
    keys = cli("-s", folder, "keys").stdout.decode().split()
    assert sorted(keys) == ["a/keep", "a/x", "b/y"]


def test_repeatable_rules_still_repeat(folder, cli):
    result = cli("-s", folder, "keys", "--exclude", "a/x", "--include", "a/*", "--include", "b/*")
    assert result.returncode == 0
    assert sorted(result.stdout.decode().split()) == ["a/keep", "b/y"]
