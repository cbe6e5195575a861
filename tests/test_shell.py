"""Shell integration: the generated completion scripts and man pages, and the completion protocol.

Completion is driven the way the shells drive it: the installed `anystore` runs as a subprocess
with `_ANYSTORE_COMPLETE=complete_bash` and `COMP_WORDS`/`COMP_CWORD` (bash), or
`complete_zsh`/`complete_fish` with `_TYPER_COMPLETE_ARGS` (zsh, fish), and prints candidates.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anystore_cli.cli import docgen
from anystore_cli.cli.app import COMMANDS
from tests.conftest import anystore_bin, run_cli
from tests.test_cli_support import make_cli_store
from tests.tmux import TmuxBash

REPO = Path(__file__).resolve().parent.parent
SHELLS = ("bash", "zsh", "fish")
KEYS = ("data/a.json", "data/b.json", "dat", "other key", "zz/deep/c.txt")
KEY_COMMANDS = ("get", "put", "pop", "info", "exists", "stream", "checksum", "touch", "rm")


# ---- generated files -----------------------------------------------------------------------


def test_generated_completions_and_man_pages_match_the_committed_files(tmp_path: Path) -> None:
    written = docgen.write(tmp_path)
    assert written
    differ = []
    for path in written:
        relative = path.relative_to(tmp_path)
        committed = REPO / relative
        if not committed.is_file() or committed.read_bytes() != path.read_bytes():
            differ.append(str(relative))
    assert not differ, f"out of date (run `python -m anystore_cli.cli.docgen`): {differ}"


def test_no_stale_generated_files_are_committed() -> None:
    expected = set(docgen.generated_files())
    folders = ("completions", "man", "docs/commands")
    present = {str(p.relative_to(REPO)) for folder in folders for p in (REPO / folder).iterdir()}
    assert present == expected


def test_docgen_check_reports_a_changed_file(tmp_path: Path) -> None:
    docgen.write(tmp_path)
    assert docgen.main(["--check", "-o", str(tmp_path)]) == 0
    (tmp_path / "man" / "anystore-get.1").write_text("changed\n")
    assert docgen.stale(tmp_path) == ["man/anystore-get.1"]
    assert docgen.main(["--check", "-o", str(tmp_path)]) == 1


def test_there_is_a_man_page_for_the_program_and_every_command() -> None:
    pages = {path.name for path in (REPO / "man").glob("*.1")}
    assert pages == {"anystore.1", *(f"anystore-{command}.1" for command in COMMANDS)}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_page_has_synopsis_examples_and_exit_status(command: str) -> None:
    text = (REPO / "man" / f"anystore-{command}.1").read_text()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS", "SEE ALSO"):
        assert f".SH {section}\n" in text, section
    assert "\\fB130\\fR" in text
    # the example is the one of `anystore COMMAND --help`
    help_text = run_cli(command, "--help").stdout.decode()
    example = next(line.strip() for line in help_text.splitlines() if line.strip().startswith("Example:"))
    assert docgen.roff_escape(example[len("Example:") :].strip()) in text


def test_main_page_lists_commands_options_environment_and_exit_status() -> None:
    text = (REPO / "man" / "anystore.1").read_text()
    for command in COMMANDS:
        assert f"anystore\\-{command}" in text
    for option in ("\\-s, \\-\\-store URI", "\\-\\-install\\-completion", "\\-\\-show\\-completion"):
        assert option in text
    for section in ("ENVIRONMENT", "EXIT STATUS", "EXAMPLES", "SHELL COMPLETION"):
        assert f".SH {section}\n" in text


def _man_pages() -> list[Path]:
    return sorted((REPO / "man").glob("*.1"))


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (apt-get install groff-base)")
@pytest.mark.parametrize("page", _man_pages(), ids=lambda p: p.name)
def test_man_page_renders_without_groff_warnings(page: Path) -> None:
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0
    assert proc.stderr == b"", proc.stderr.decode()


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed (apt-get install man-db)")
def test_man_l_renders_the_main_page_without_warnings() -> None:
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"}
    proc = subprocess.run(
        ["man", "--warnings", "-l", str(REPO / "man" / "anystore.1")],
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b"", proc.stderr.decode()
    out = proc.stdout.decode()
    assert "EXIT STATUS" in out
    assert "anystore -s s3://bucket/prefix get data.json > data.json" in out


# ---- the scripts are what `--show-completion` installs ---------------------------------------


def _script_body(text: str) -> str:
    """A committed script without its leading comment block."""
    lines = text.splitlines()
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        lines.pop(0)
    return "\n".join(lines).strip()


@pytest.mark.parametrize("shell", ["bash", "fish"])
def test_committed_script_is_what_show_completion_prints(shell: str, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = run_cli("--show-completion", shell, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    name = {"bash": "anystore.bash", "fish": "anystore.fish"}[shell]
    assert _script_body((REPO / "completions" / name).read_text()) == proc.stdout.decode().strip()


def test_zsh_script_works_from_fpath_and_when_sourced() -> None:
    text = (REPO / "completions" / "_anystore").read_text()
    assert text.startswith("#compdef anystore\n")  # compinit reads only the first line
    assert "_ANYSTORE_COMPLETE=complete_zsh" in text
    assert "compdef _anystore_completion anystore" in text


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses() -> None:
    proc = subprocess.run(["zsh", "-n", str(REPO / "completions" / "_anystore")], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()


def test_install_completion_still_works(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = run_cli("--install-completion", "bash", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    installed = tmp_path / ".bash_completions" / "anystore.sh"
    assert installed.read_text().strip() == _script_body((REPO / "completions" / "anystore.bash").read_text())
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()


# ---- the completion protocol ------------------------------------------------------------------


def complete(
    shell: str, words: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[bytes], list[str], float]:
    """Ask the installed `anystore` for the candidates of the last of `words` (`""` for a new word).

    Returns the process, the candidates and the seconds it took.
    """
    line = " ".join(["anystore", *words])
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYSTORE_", "_ANYSTORE_", "_TYPER_"))}
    full_env.update(env or {})
    full_env["_ANYSTORE_COMPLETE"] = f"complete_{shell}"
    if shell == "bash":
        full_env["COMP_WORDS"] = line
        full_env["COMP_CWORD"] = str(len(words))
    else:
        full_env["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            full_env.setdefault("_TYPER_COMPLETE_FISH_ACTION", "get-args")
    started = time.monotonic()
    proc = subprocess.run(
        [anystore_bin()], capture_output=True, env=full_env, timeout=30, cwd=cwd, stdin=subprocess.DEVNULL
    )
    elapsed = time.monotonic() - started
    return proc, parse_candidates(shell, proc.stdout.decode()), elapsed


_ZSH_ITEM = re.compile(r'"((?:[^"]|"")*)"(?::"(?:[^"]|"")*")?\n?')


def parse_candidates(shell: str, out: str) -> list[str]:
    """The values in a completion answer of `shell` (one candidate a line)."""
    if shell == "bash":
        return [line for line in out.splitlines() if line]
    if shell == "fish":
        return [line.split("\t", 1)[0] for line in out.splitlines() if line]
    out = out.strip()
    if out in ("", "_files"):
        return []
    assert out.startswith("_arguments '*: :((") and out.endswith("))'"), out
    body = out[len("_arguments '*: :((") : -len("))'")]
    values = []
    position = 0
    while position < len(body):
        match = _ZSH_ITEM.match(body, position)
        assert match, f"unexpected zsh completion answer {body[position:]!r}"
        values.append(match.group(1).replace('""', '"').replace("''", "'").replace("\\\\:", ":"))
        position = match.end()
    return values


def _quote_words(*words: str) -> list[str]:
    """Words as the shell passes them on the completion line (a space inside quoted)."""
    return [f"'{word}'" if " " in word else word for word in words]


@pytest.fixture
def local_store(tmp_path: Path) -> Path:
    """A local store folder holding `KEYS`."""
    folder = tmp_path / "store"
    for key in KEYS:
        proc = run_cli("-s", str(folder), "put", key, "v")
        assert proc.returncode == 0, proc.stderr.decode()
    return folder


@pytest.mark.parametrize("shell", SHELLS)
def test_commands_complete(shell: str) -> None:
    proc, found, _ = complete(shell, ["g"])
    assert proc.returncode == 0
    assert found == ["get"]
    proc, found, _ = complete(shell, [""])
    assert set(COMMANDS) <= set(found)


@pytest.mark.parametrize("shell", SHELLS)
def test_options_complete(shell: str) -> None:
    _, found, _ = complete(shell, ["get", "--m"])
    assert sorted(found) == ["--missing-ok", "--mode"]
    _, found, _ = complete(shell, ["--st"])
    assert found == ["--store"]
    # a long help text stays on its candidate's line (fish would offer a wrapped line as a candidate)
    _, found, _ = complete(shell, ["--con"])
    assert found == ["--config"]


@pytest.mark.parametrize("shell", SHELLS)
def test_mode_values_complete(shell: str) -> None:
    _, found, _ = complete(shell, ["get", "--mode", ""])
    assert sorted(found) == ["auto", "json", "pickle", "raw"]
    _, found, _ = complete(shell, ["stream", "--mode", "j"])
    assert found == ["json"]


@pytest.mark.parametrize("shell", SHELLS)
def test_algorithm_values_complete(shell: str) -> None:
    _, found, _ = complete(shell, ["checksum", "-a", "sha"])
    assert "sha256" in found
    assert set(found) <= hashlib.algorithms_guaranteed
    assert all(name.startswith("sha") for name in found)


@pytest.mark.parametrize("shell", SHELLS)
def test_keys_of_the_store_on_the_command_line_complete_filtered_by_prefix(shell: str, local_store: Path) -> None:
    proc, found, _ = complete(shell, ["-s", str(local_store), "get", "data/"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert found == ["data/a.json", "data/b.json"]
    assert proc.stderr == b""
    _, found, _ = complete(shell, ["--store", str(local_store), "info", "da"])
    assert found == ["dat", "data/a.json", "data/b.json"]


@pytest.mark.parametrize("shell", SHELLS)
def test_keys_of_the_store_named_after_the_command_complete(shell: str, local_store: Path) -> None:
    proc, found, _ = complete(shell, ["get", "-s", str(local_store), "data/"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert found == ["data/a.json", "data/b.json"]
    _, found, _ = complete(shell, ["keys", "--store", str(local_store), "--prefix", "zz/"])
    assert found == ["zz/deep/c.txt"]


@pytest.mark.parametrize("shell", SHELLS)
def test_keys_of_the_store_in_the_environment_complete(shell: str, local_store: Path) -> None:
    _, found, _ = complete(shell, ["checksum", ""], env={"ANYSTORE_URI": str(local_store)})
    assert sorted(found) == sorted(KEYS)


@pytest.mark.parametrize("command", KEY_COMMANDS)
def test_every_command_taking_a_key_completes_keys(command: str, local_store: Path) -> None:
    _, found, _ = complete("bash", ["-s", str(local_store), command, "zz/"])
    assert found == ["zz/deep/c.txt"]


@pytest.mark.parametrize("command", ["stream", "checksum", "touch", "rm"])
def test_every_key_of_a_several_key_command_completes(command: str, local_store: Path) -> None:
    _, found, _ = complete("bash", ["-s", str(local_store), command, "dat", "data/a.json", "data/"])
    assert found == ["data/a.json", "data/b.json"]


@pytest.mark.parametrize("option", ["--prefix", "--exclude-prefix"])
def test_keys_prefix_options_complete_keys(option: str, local_store: Path) -> None:
    _, found, _ = complete("bash", ["-s", str(local_store), "keys", option, "data/"])
    assert found == ["data/a.json", "data/b.json"]


def test_put_value_is_not_completed_as_a_key(local_store: Path) -> None:
    _, found, _ = complete("bash", ["-s", str(local_store), "put", "data/a.json", "da"])
    assert found == []


def test_keys_with_spaces_complete(local_store: Path) -> None:
    _, found, _ = complete("fish", ["-s", str(local_store), "get", "oth"])
    assert found == ["other key"]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_keys_of_other_backends_complete(backend: str, store_factory: object) -> None:
    store = make_cli_store(store_factory, backend)
    for key in KEYS:
        store.put(key, b"v")
    _, found, _ = complete("bash", [*_quote_words(*store.global_args), "get", "data/"], cwd=store.tmp_path)
    assert found == ["data/a.json", "data/b.json"]


def test_at_most_100_keys_are_offered(tmp_path: Path) -> None:
    folder = tmp_path / "many"
    lines = "".join(f'{{"key": "k/{i:04d}", "value": "v"}}\n' for i in range(150))
    proc = run_cli("-s", str(folder), "load", input=lines.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    _, found, _ = complete("bash", ["-s", str(folder), "get", "k/"])
    assert len(found) == 100
    assert all(key.startswith("k/") for key in found)
    _, found, _ = complete("bash", ["-s", str(folder), "get", "k/012"])
    assert found == [f"k/{i:04d}" for i in range(120, 130)]


@pytest.mark.parametrize("shell", SHELLS)
def test_unreachable_store_completes_to_nothing_quickly(shell: str) -> None:
    proc, found, elapsed = complete(shell, ["-s", "redis://127.0.0.1:1/0", "get", ""])
    assert proc.returncode == 0
    assert found == []
    assert proc.stderr == b""
    assert elapsed < 2.0


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a hung store)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.parametrize("shell", SHELLS)
def test_hung_store_completes_to_nothing_in_under_2_seconds(shell: str, silent_server: int) -> None:
    proc, found, elapsed = complete(shell, ["-s", f"redis://127.0.0.1:{silent_server}/0", "info", "a"])
    assert proc.returncode == 0
    assert found == []
    assert proc.stderr == b""
    assert elapsed < 2.0


def test_hung_s3_endpoint_completes_to_nothing_in_under_2_seconds(silent_server: int) -> None:
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent_server}",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    proc, found, elapsed = complete("bash", ["-s", "s3://bucket/prefix", "get", ""], env=env)
    assert proc.returncode == 0
    assert found == []
    assert proc.stderr == b""
    assert elapsed < 2.0


def test_fish_falls_back_to_files_when_the_store_hangs(silent_server: int) -> None:
    words = ["-s", f"redis://127.0.0.1:{silent_server}/0", "get", ""]
    proc, found, elapsed = complete("fish", words, env={"_TYPER_COMPLETE_FISH_ACTION": "is-args"})
    assert proc.returncode == 1  # "no arguments to offer": fish completes file names instead
    assert found == []
    assert elapsed < 2.0


def test_a_bad_store_uri_completes_to_nothing() -> None:
    proc, found, _ = complete("bash", ["-s", "nosuchscheme://x", "get", ""])
    assert proc.returncode == 0
    assert found == []
    assert proc.stderr == b""


def test_completing_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    for uri in ("absent", "sqlite:///absent.db"):
        proc, found, _ = complete("bash", ["-s", uri, "get", ""], cwd=tmp_path)
        assert proc.returncode == 0
        assert found == []
    proc, found, _ = complete("bash", ["get", ""], cwd=tmp_path)  # the default .anystore
    assert found == []
    assert list(tmp_path.iterdir()) == []


# ---- the scripts in the real shells -----------------------------------------------------------


def _shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYSTORE_")}
    env["PATH"] = f"{Path(anystore_bin()).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_bash_script_completes_keys_in_bash(local_store: Path) -> None:
    script = REPO / "completions" / "anystore.bash"
    program = (
        f"source {script}\n"
        f"COMP_WORDS=(anystore -s {local_store} get data/); COMP_CWORD=4\n"
        "_anystore_completion anystore\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
        "complete -p anystore\n"
    )
    proc = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, env=_shell_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[:2] == ["data/a.json", "data/b.json"]
    assert "_anystore_completion" in lines[2]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_script_completes_keys_in_fish(local_store: Path) -> None:
    script = REPO / "completions" / "anystore.fish"
    program = f"source {script}; complete -C 'anystore -s {local_store} get data/'"
    proc = subprocess.run(["fish", "--no-config", "-c", program], capture_output=True, env=_shell_env(), timeout=30)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [line.split("\t")[0] for line in proc.stdout.decode().splitlines()] == ["data/a.json", "data/b.json"]


# ---- the documented bash install, in an interactive bash (tmux) --------------------------------

BASH_COMPLETION = Path("/usr/share/bash-completion/bash_completion")


def _documented_bash_blocks() -> list[str]:
    """The shell blocks of the `## bash` section of docs/completion.md, in order."""
    text = (REPO / "docs" / "completion.md").read_text()
    section = text.split("\n## bash\n", 1)[1].split("\n## ", 1)[0]
    assert "`bash-completion` package" in section
    assert "apt install bash-completion" in section
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def _install_and_complete(tmp_path: Path, block: str, bashrc: str, local_store: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text(bashrc)
    env = {"HOME": str(home), "PATH": _shell_env()["PATH"]}
    done = subprocess.run(["bash", "-e", "-c", block], cwd=REPO, env=env, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    shell = TmuxBash(home)  # `bash -i`: its ~/.bashrc read, as a user's login does
    try:
        shell.type("anystore ge", "Tab")
        shell.wait_for("$ anystore get")
        shell.type("", "C-u")
        shell.type(f"anystore -s {local_store} get zz/d", "Tab")
        shell.wait_for("zz/deep/c.txt")
    finally:
        shell.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.skipif(not BASH_COMPLETION.is_file(), reason="the bash-completion package is not installed")
def test_documented_bash_install_with_the_bash_completion_package_completes(tmp_path: Path, local_store: Path) -> None:
    block = _documented_bash_blocks()[0]
    assert "~/.local/share/bash-completion/completions/anystore" in block
    _install_and_complete(tmp_path, block, f". {BASH_COMPLETION}\n", local_store)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_documented_bash_install_without_the_package_completes(tmp_path: Path, local_store: Path) -> None:
    block = _documented_bash_blocks()[1]
    assert "~/.bashrc" in block
    _install_and_complete(tmp_path, block, "", local_store)
