"""An interactive bash in a tmux pane, for the tests that drive completion as a user's terminal
does (readline, COMP_WORDBREAKS, the shell's own startup files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.conftest import anystore_bin, unique


class TmuxBash:
    """`bash` (with `bash_args`) started in a new tmux session in `home`, which is also its
    HOME, with only the installed `anystore` and the system on PATH; ready once its prompt is `$ `
    after `setup` (a shell line) ran."""

    def __init__(
        self, home: Path, bash_args: str = "-i", setup: str = "", size: tuple[int, int] = (200, 20), wait: float = 20
    ) -> None:
        self.name = unique("tmuxbash")
        self.wait = wait
        path = f"{Path(anystore_bin()).parent}:/usr/bin:/bin"
        command = f"env -i HOME={home} PATH={path} TERM=xterm LANG=C.UTF-8 bash {bash_args}"
        width, height = size
        subprocess.run(
            [shutil.which("tmux") or "tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height)]
            + ["-c", str(home), command],
            check=True,
            env={k: v for k, v in os.environ.items() if k != "TMUX"},
        )
        try:
            self.type(f"{setup}PS1='$ '; clear; echo READY\n")
            self.wait_for("READY\n$")
        except BaseException:
            self.close()
            raise

    def type(self, text: str, *keys: str) -> None:
        """Type `text` literally, then press each of `keys` (tmux key names: `Tab`, `C-u`)."""
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)

    def screen(self) -> str:
        """What the pane shows now."""
        done = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, check=True)
        return done.stdout.decode()

    def wait_for(self, text: str, timeout: float | None = None) -> str:
        """The screen once it shows `text`; an AssertionError with the screen after `timeout`
        seconds (the pane's default wait)."""
        deadline = time.monotonic() + (self.wait if timeout is None else timeout)
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the screen:\n{self.screen()}")

    def close(self) -> None:
        """End the tmux session and the shell in it."""
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)
