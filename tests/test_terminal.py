"""The terminal: tables and progress bars for people, nothing but data for pipes.

Each command runs as the installed `anystore` with its stdout and/or stderr on a pseudo-terminal
(the `pty` module, with the window size and COLUMNS set), or on a pipe.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import anystore_bin, run_cli

ESCAPE = b"\x1b"
SGR = re.compile(rb"\x1b\[([0-9;]*)m")
HIDE_CURSOR = b"\x1b[?25l"


@dataclass
class TerminalRun:
    """What a command wrote: `terminal` is all it wrote on the pty, `stdout`/`stderr` what went to pipes."""

    returncode: int
    terminal: bytes
    stdout: bytes
    stderr: bytes

    @property
    def screen(self) -> str:
        """The terminal output as text, the terminal's CR LF line ends made LF."""
        return self.terminal.decode("utf-8", "replace").replace("\r\n", "\n")


def run_on_terminal(
    *args: str,
    cwd: Path,
    stdout_on_terminal: bool = True,
    stderr_on_terminal: bool = True,
    columns: int = 100,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
    timeout: float = 60,
) -> TerminalRun:
    """Run the installed `anystore` with stdout and/or stderr on a pseudo-terminal of `columns` columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANYSTORE_") and k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS", "LINES")
    }
    full_env.update({"TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"})
    full_env.update(env or {})
    proc = subprocess.Popen(
        [anystore_bin(), *args],
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=slave if stdout_on_terminal else subprocess.PIPE,
        stderr=slave if stderr_on_terminal else subprocess.PIPE,
        env=full_env,
        cwd=cwd,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not data:
                break
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        stdout, stderr = proc.communicate(input=input, timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        os.close(master)
    return TerminalRun(proc.returncode, b"".join(chunks), stdout or b"", stderr or b"")


def color_codes(data: bytes) -> list[bytes]:
    """The SGR parameters in `data` that set a colour (foreground, background, 256 or true colour)."""
    found = []
    for match in SGR.finditer(data):
        for param in match.group(1).split(b";"):
            if param and (30 <= int(param) <= 49 or 90 <= int(param) <= 107):
                found.append(match.group(0))
                break
    return found


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A local store with a small text value and a 2 KiB binary value."""
    folder = tmp_path / "store"
    assert run_cli("-s", str(folder), "put", "alpha.txt", "hello").returncode == 0
    proc = run_cli("-s", str(folder), "put", "dir/beta.bin", input=b"\0" * 2048)
    assert proc.returncode == 0, proc.stderr
    return folder


# ---- keys -l ---------------------------------------------------------------------------------


def test_keys_long_is_a_table_on_a_terminal(store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), "keys", "-l", cwd=tmp_path)
    assert run.returncode == 0, run.screen
    lines = [SGR.sub(b"", line.encode()).decode() for line in run.screen.splitlines()]
    header = lines[0].split("┃")
    assert [cell.strip() for cell in header] == ["size", "updated_at", "key"]
    assert set(lines[1]) <= {"━", "╇"}
    rows = [[cell.strip() for cell in line.split("│")] for line in lines[2:]]
    assert [row[0] for row in rows] == ["5 B", "2.0 KiB"]
    assert [row[2] for row in rows] == ["alpha.txt", "dir/beta.bin"]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", row[1]) for row in rows)
    assert b"\x1b[1m" in run.terminal  # a bold header for people


def test_keys_long_piped_is_plain_tab_separated_data(store: Path) -> None:
    proc = run_cli("-s", str(store), "keys", "-l", env={"TERM": "xterm-256color", "COLUMNS": "100"})
    assert proc.returncode == 0
    assert ESCAPE not in proc.stdout
    assert proc.stderr == b""
    rows = [line.split("\t") for line in proc.stdout.decode().splitlines()]
    assert [(row[0], row[2]) for row in rows] == [("5", "alpha.txt"), ("2048", "dir/beta.bin")]


def test_keys_long_table_fits_the_terminal_width(tmp_path: Path) -> None:
    folder = tmp_path / "wide"
    long_key = "very/" * 20 + "long-key.txt"
    assert run_cli("-s", str(folder), "put", long_key, "x").returncode == 0
    run = run_on_terminal("-s", str(folder), "keys", "-l", cwd=tmp_path, columns=60)
    assert run.returncode == 0
    lines = [SGR.sub(b"", line.encode()).decode() for line in run.screen.splitlines()]
    assert lines
    assert max(len(line) for line in lines) <= 60
    assert "".join(line.split("│")[-1].strip() for line in lines[2:]) == long_key  # wrapped, not cut


def test_keys_without_long_on_a_terminal_prints_plain_keys(store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), "keys", cwd=tmp_path)
    assert run.returncode == 0
    assert run.screen.splitlines() == ["alpha.txt", "dir/beta.bin"]
    assert ESCAPE not in run.terminal


# ---- info --------------------------------------------------------------------------------------


def test_info_is_a_table_on_a_terminal(store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), "info", "dir/beta.bin", cwd=tmp_path)
    assert run.returncode == 0, run.screen
    lines = [SGR.sub(b"", line.encode()).decode() for line in run.screen.splitlines()]
    assert [cell.strip() for cell in lines[0].split("┃")] == ["field", "value"]
    fields: dict[str, str] = {}
    name = ""
    for line in lines[2:]:
        field, value = (cell.strip() for cell in line.split("│", 1))
        name = field or name  # a long value folds onto lines with an empty field cell
        fields[name] = fields.get(name, "") + value
    assert list(fields) == ["key", "name", "store", "uri", "size", "created_at", "updated_at"]
    assert fields["uri"].endswith("/store/dir/beta.bin")
    assert fields["key"] == "dir/beta.bin"
    assert fields["name"] == "beta.bin"
    assert fields["size"] == "2.0 KiB"  # as `keys -l` shows it


def test_info_piped_is_one_json_object(store: Path) -> None:
    proc = run_cli("-s", str(store), "info", "dir/beta.bin", env={"TERM": "xterm-256color"})
    assert proc.returncode == 0
    assert ESCAPE not in proc.stdout
    record = json.loads(proc.stdout)
    assert record["key"] == "dir/beta.bin"
    assert record["size"] == 2048


def test_info_json_on_a_terminal_is_json(store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), "info", "alpha.txt", "--json", cwd=tmp_path)
    assert run.returncode == 0
    assert ESCAPE not in run.terminal
    assert json.loads(run.screen)["size"] == 5


# ---- NO_COLOR and TERM=dumb ------------------------------------------------------------------


@pytest.mark.parametrize("command", [["keys", "-l"], ["info", "alpha.txt"]], ids=["keys-l", "info"])
def test_no_color_leaves_out_colours(command: list[str], store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), *command, cwd=tmp_path, env={"NO_COLOR": "1"})
    assert run.returncode == 0
    assert color_codes(run.terminal) == []
    assert "alpha.txt" in run.screen
    assert "│" in run.screen  # still a table


@pytest.mark.parametrize("command", [["keys", "-l"], ["info", "alpha.txt"]], ids=["keys-l", "info"])
def test_dumb_terminal_gets_no_escape_codes(command: list[str], store: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-s", str(store), *command, cwd=tmp_path, env={"TERM": "dumb"})
    assert run.returncode == 0
    assert ESCAPE not in run.terminal
    assert "alpha.txt" in run.screen


# ---- progress: on a terminal's stderr only ---------------------------------------------------


def _dump_file(tmp_path: Path, count: int = 200) -> Path:
    path = tmp_path / "dump.jsonl"
    path.write_text("".join(json.dumps({"key": f"k/{i:04d}", "value": "v" * 50}) + "\n" for i in range(count)))
    return path


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A local store of 200 keys."""
    folder = tmp_path / "filled"
    proc = run_cli("-s", str(folder), "load", "-i", str(_dump_file(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    return folder


def _bulk_command(name: str, filled: Path, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of a bulk command, and the word its progress bar shows."""
    if name == "dump":
        return ["-s", str(filled), "dump"], "dumping"
    if name == "load":
        return ["-s", str(tmp_path / "loaded"), "load", "-i", str(_dump_file(tmp_path))], "loading"
    return ["mirror", "-i", str(filled), "-o", str(tmp_path / "mirrored")], "mirroring"


@pytest.mark.parametrize("command", ["dump", "load", "mirror"])
def test_progress_is_drawn_on_a_terminal_stderr_and_stdout_stays_data(
    command: str, filled: Path, tmp_path: Path
) -> None:
    args, word = _bulk_command(command, filled, tmp_path)
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False)
    assert run.returncode == 0, run.screen
    assert HIDE_CURSOR in run.terminal  # a live progress display was drawn
    assert word in run.screen
    assert ESCAPE not in run.stdout
    if command == "dump":
        records = [json.loads(line) for line in run.stdout.splitlines()]
        assert len(records) == 200
    else:
        assert run.stdout == b""


@pytest.mark.parametrize("command", ["dump", "load", "mirror"])
def test_no_progress_when_stderr_is_not_a_terminal(command: str, filled: Path, tmp_path: Path) -> None:
    args, word = _bulk_command(command, filled, tmp_path)
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, stderr_on_terminal=False)
    assert run.returncode == 0, run.stderr
    assert ESCAPE not in run.stderr
    assert ESCAPE not in run.stdout
    assert word not in run.stderr.decode()
    assert len(run.stderr.decode().splitlines()) == 1  # the summary line


@pytest.mark.parametrize("command", ["dump", "load", "mirror"])
def test_progress_honours_no_color_and_dumb_terminals(command: str, filled: Path, tmp_path: Path) -> None:
    args, _word = _bulk_command(command, filled, tmp_path)
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, env={"NO_COLOR": "1"})
    assert run.returncode == 0
    assert color_codes(run.terminal) == []
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, env={"TERM": "dumb"})
    assert run.returncode == 0
    assert ESCAPE not in run.terminal


def test_quiet_draws_no_progress(filled: Path, tmp_path: Path) -> None:
    run = run_on_terminal("-q", "-s", str(filled), "dump", cwd=tmp_path, stdout_on_terminal=False)
    assert run.returncode == 0
    assert run.terminal == b""


LARGE = 17 * 1024 * 1024
"""Bigger than the size from which `get` and `put` draw a progress bar (16 MiB)."""


@pytest.fixture
def large_value(tmp_path: Path) -> Path:
    """A file of `LARGE` bytes, and the same bytes stored at `big` in `tmp_path/large`."""
    path = tmp_path / "large.bin"
    path.write_bytes(os.urandom(1024) * (LARGE // 1024))
    proc = run_cli("-s", str(tmp_path / "large"), "put", "big", "-i", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def _value_command(name: str, tmp_path: Path, source: Path) -> list[str]:
    if name == "get":
        return ["-s", str(tmp_path / "large"), "get", "big"]
    return ["-s", str(tmp_path / "put-target"), "put", "big", "-i", str(source)]


@pytest.mark.parametrize("command", ["get", "put"])
def test_large_value_progress_only_on_a_terminal_stderr(command: str, large_value: Path, tmp_path: Path) -> None:
    args = _value_command(command, tmp_path, large_value)
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False)
    assert run.returncode == 0, run.screen
    assert f"{command} big" in run.screen
    if command == "get":
        assert run.stdout == large_value.read_bytes()  # stdout holds the value and nothing else
    else:
        assert run.stdout == b""
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, stderr_on_terminal=False)
    assert run.returncode == 0
    assert run.stderr == b""
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, env={"TERM": "dumb"})
    assert run.returncode == 0
    assert run.terminal == b""
    run = run_on_terminal(*args, cwd=tmp_path, stdout_on_terminal=False, env={"NO_COLOR": "1"})
    assert run.returncode == 0
    assert color_codes(run.terminal) == []
