"""Acceptance checks of store config files: a field of the wrong type is bad input (exit 2,
naming the field and the file), never read as something else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("readonly: notbool", "readonly"),
        ("readonly: 2", "readonly"),
        ("default_ttl: abc", "default_ttl"),
        ("default_ttl: true", "default_ttl"),
        ("raise_on_nonexist: maybe", "raise_on_nonexist"),
        ("backend_config: [1, 2]", "backend_config"),
        ("uri: [1, 2]", "uri"),
    ],
)
def test_a_config_field_of_the_wrong_type_exits_2(line: str, field: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "k").write_bytes(b"v")
    config = tmp_path / "store.yml"
    config.write_text(f"uri: {tmp_path / 'data'}\n{line}\n" if not line.startswith("uri:") else f"{line}\n")
    result = run_cli("--config", str(config), "keys")
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert stderr.startswith("anystore: error: ") and stderr.count("\n") == 1
    assert f"`{field}`" in stderr and "store.yml" in stderr


def test_config_fields_of_the_right_type_still_work(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = tmp_path / "store.json"
    config.write_text(f'{{"uri": "{tmp_path / "data"}", "readonly": true, "raise_on_nonexist": false}}')
    result = run_cli("--config", str(config), "put", "k", "v")
    assert result.returncode == 3 and b"readonly" in result.stderr
    yaml_config = tmp_path / "store.yml"
    yaml_config.write_text(f"uri: {tmp_path / 'data'}\nreadonly: 'yes'\nserialization_mode: raw\n")
    result = run_cli("--config", str(yaml_config), "put", "k", "v")
    assert result.returncode == 3 and b"readonly" in result.stderr
