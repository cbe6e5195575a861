"""Hostile input, property-based: random keys (unicode, spaces, `%`, `_`, `*`, `?`, `[`, `\\`)
and random byte values go into every backend and come back exactly, and list exactly by
prefix and glob."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anystore_cli.util.keys import glob_to_regex

SEGMENT_ALPHABET = st.sampled_from(list(string.ascii_letters + string.digits + " %_*?[]\\-.,;=+!~ü✓中"))
# `.~anystore-*` names are a local store's temporary files: refused there (see test below)
segment = st.text(SEGMENT_ALPHABET, min_size=1, max_size=12).filter(
    lambda s: s not in (".", "..") and not s.startswith(".~anystore-")
)
keys = st.lists(segment, min_size=1, max_size=3).map("/".join)
values = st.binary(min_size=0, max_size=2048)

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _escape_glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


@PROPERTY_SETTINGS
@given(data=st.dictionaries(keys, values, min_size=1, max_size=8))
def test_random_keys_and_values_roundtrip(store, data):
    if store.capabilities.append_only:
        data = {k: v for k, v in data.items() if not store.exists(k)}
    # a key may not be both a value and a "folder" of another key on file-like stores
    names = sorted(data)
    data = {k: data[k] for k in names if not any(o.startswith(k + "/") for o in names if o != k)}
    existing = set(store.iterate_keys())
    if store.is_fslike:
        clash = lambda k: any(e.startswith(k + "/") or k.startswith(e + "/") for e in existing)  # noqa: E731
        data = {k: v for k, v in data.items() if not clash(k)}
    if not data:
        return
    store.put_many(data, serialization_mode="raw")
    for key, value in data.items():
        assert store.get(key, serialization_mode="raw") == value
    listed = set(store.iterate_keys())
    assert set(data) <= listed
    for key in data:
        prefix = key[: max(1, len(key) // 2)]
        expected = {k for k in listed if k.startswith(prefix)}
        assert set(store.iterate_keys(prefix=prefix)) == expected
        assert key in set(store.iterate_keys(glob=_escape_glob(key)))
        assert set(store.iterate_keys(glob=_escape_glob(key))) == {key}


@given(key=keys)
def test_escaped_glob_matches_only_the_literal_key(key):
    pattern = glob_to_regex(_escape_glob(key))
    assert pattern.match(key)
    assert not pattern.match(key + "x")


@pytest.mark.parametrize("backend", ["memory", "local"])
@PROPERTY_SETTINGS
@given(value=st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.dictionaries(st.text(), st.integers())))
def test_auto_mode_roundtrips_json_values(store_factory, backend, value):
    store = store_factory(backend)
    store.put("v", value)
    if isinstance(value, str):
        # text that happens to be JSON comes back parsed, as in the original library
        import orjson

        try:
            expected = orjson.loads(value)
        except orjson.JSONDecodeError:
            expected = value
        assert store.get("v") == expected
    else:
        assert store.get("v") == value


def test_local_store_refuses_its_temporary_file_names(store_factory):
    from anystore_cli.core import InvalidKey

    store = store_factory("local")
    for key in (".~anystore-x", "a/.~anystore-tmp/b"):
        with pytest.raises(InvalidKey):
            store.put(key, b"x")
        with pytest.raises(InvalidKey):
            store.get(key)
    store.put("a/.~anystore", b"fine")  # only the full reserved prefix is refused
    assert store.get("a/.~anystore") == "fine"


def test_names_that_start_with_two_dots_are_listed_by_glob_and_prefix(store_factory):
    store = store_factory("local")
    store.put("..*/0/0", b"x")
    store.put("..x", b"y")
    assert list(store.iterate_keys(glob="..[*]/0/0")) == ["..*/0/0"]
    assert sorted(store.iterate_keys(prefix="..")) == ["..*/0/0", "..x"]
    assert list(store.iterate_keys(prefix="../")) == []
