"""`lock`: run a command while holding a lease in the store (cron jobs, CI steps)."""

import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from anystore_cli.cli.commands.common import UsageProblem, get_state
from anystore_cli.cli.options import flag

app = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE = 5.0
"""Seconds COMMAND has to end after SIGTERM when the lease is lost, before SIGKILL"""


@app.command(epilog="\b\nExample: anystore lock nightly-backup --ttl 60 --wait 300 -- ./backup.sh")
def lock(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The lock's name.")],
    command: Annotated[
        list[str] | None, typer.Argument(metavar="-- COMMAND [ARG...]", help="The command to run holding the lock.")
    ] = None,
    ttl: Annotated[
        float,
        typer.Option("--ttl", metavar="S", min=0.1, help="Seconds the lease lasts unrenewed; renewed every ttl/3."),
    ] = 60.0,
    wait: Annotated[
        float, typer.Option("--wait", metavar="S", min=0, help="Seconds to wait for a held lock (0: fail at once).")
    ] = 0.0,
    status: Annotated[bool, flag("--status", "Print the lease as JSON (exit 1 when nobody holds it).")] = False,
    release: Annotated[
        bool, typer.Option("--release", help="Release the lease by force, whoever holds it (for operators).")
    ] = False,
) -> None:
    """Run COMMAND holding the lock NAME (any process, any machine).

    The lease is taken atomically, renewed every ttl/3 while COMMAND runs and released when it
    ends. COMMAND gets ANYSTORE_LOCK_TOKEN, a fencing token that grows with every acquisition.
    Signals (INT, TERM, HUP) are passed on to COMMAND, which runs in its own process group;
    that group (COMMAND and what it started) is killed when anystore lock ends, even by SIGKILL.
    Exit status: COMMAND's (128+N when killed by signal N); 1 when not acquired within --wait
    (the holder is named); 3 when the lease is lost (COMMAND is stopped: TERM, then KILL) or
    the store cannot lock (zip, http, memory).
    """
    from anystore_cli.services.lock import check_name, check_ttl

    state = get_state(ctx)
    check_name(name)
    try:
        check_ttl(ttl, wait)
    except ValueError as exc:
        raise UsageProblem(f"lock `{name}`: {exc}") from None
    if status and release:
        raise UsageProblem("give --status or --release, not both")
    if (status or release) and command:
        raise UsageProblem("--status and --release take no COMMAND")
    if not (status or release) and not command:
        raise UsageProblem("give a COMMAND after `--` (or --status / --release)")
    store = state.store()
    if status:
        _status(state, store, name)
    elif release:
        _release(state, store, name)
    else:
        raise typer.Exit(_run(state, store, name, list(command or []), ttl, wait))


def _status(state: Any, store: Any, name: str) -> None:
    import socket

    from anystore_cli.cli.console import json_line
    from anystore_cli.services.lock import lease_backend

    lease = lease_backend(store, across_processes=True).status(name)
    if lease is None:
        sys.stdout.buffer.write(json_line({"name": name, "state": "free"}))
        raise typer.Exit(1)
    record = lease.record()
    if record["state"] == "held" and lease.host == socket.gethostname():
        # the holder is on this host: tell whether it still runs (a lease outlives a crash by its ttl)
        record["pid_alive"] = _pid_alive(lease.pid)
        if not record["pid_alive"]:
            state.note(
                f"lock `{name}`: its holder, pid {lease.pid}, is not running on this host; "
                f"the lease expires at {record['expires_iso']}"
            )
    sys.stdout.buffer.write(json_line(record))
    if record["state"] != "held":
        raise typer.Exit(1)


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    return True


def _release(state: Any, store: Any, name: str) -> None:
    from anystore_cli.services.lock import lease_backend

    lease = lease_backend(store, across_processes=True).force_release(name)
    if lease is None:
        state.note(f"lock `{name}`: nobody holds it")
        raise typer.Exit(1)
    state.note(f"lock `{name}`: released (was held by {lease.describe()}, token {lease.token})")


def _run(state: Any, store: Any, name: str, command: list[str], ttl: float, wait: float) -> int:
    from anystore_cli.cli.console import error, message
    from anystore_cli.services.lock import LeaseLost, Lock

    lock = Lock(store, name, ttl=ttl, wait=wait, across_processes=True)
    lock.acquire()
    try:
        env = dict(os.environ, ANYSTORE_LOCK_TOKEN=str(lock.token), ANYSTORE_LOCK_NAME=name)
        forwarder = _SignalForwarder()  # before COMMAND starts: no signal may slip between
        watchdog = _start_watchdog()
        try:
            try:
                child = subprocess.Popen(
                    command, env=env, process_group=watchdog.pid, preexec_fn=_parent_death_signal()
                )
            except FileNotFoundError:
                error(f"{command[0]}: command not found")
                return 127
            except PermissionError:
                error(f"{command[0]}: permission denied")
                return 126
            forwarder.started(child, watchdog.pid)
            status = _wait(child, lock, watchdog.pid)
        finally:
            forwarder.restore()
            _end_group(watchdog)
        if lock.lost.is_set():
            raise LeaseLost(f"{lock.lost_reason}; COMMAND stopped (its status was {status})")
        return status
    finally:
        try:
            lock.release()
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself after its ttl
            message(f"anystore: warning: lock `{name}`: release failed, it expires after its ttl ({exc})")


WATCHDOG = 'trap "" INT TERM HUP QUIT; cat > /dev/null; kill -9 0'
"""The watchdog: leader of COMMAND's process group, it ignores the signals passed on to the
group and waits for end of file on its stdin, a pipe whose only writer is `anystore lock`. The
pipe closes when `anystore lock` ends in any way (SIGKILL too), and the watchdog then kills the
whole group: COMMAND and every process it started that stayed in the group."""


def _start_watchdog() -> subprocess.Popen[bytes]:
    """Start the watchdog in a process group of its own (COMMAND joins that group)."""
    return subprocess.Popen(
        ["sh", "-c", WATCHDOG],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        process_group=0,
    )


def _end_group(watchdog: subprocess.Popen[bytes]) -> None:
    """COMMAND ended (or never started): close the watchdog's pipe so that it kills what is
    left of the group, and wait for it, so that nothing of COMMAND runs once the lease is
    released."""
    if watchdog.stdin is not None:
        watchdog.stdin.close()
    watchdog.wait()


def _parent_death_signal() -> Any:
    """On Linux: a function for the child, between fork and exec, asking the kernel to send it
    SIGTERM when `anystore lock` dies (even by SIGKILL), so COMMAND never runs on without the
    lease it was started under. It only calls a C function resolved here, in the parent."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    term = int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, term, 0, 0, 0)

    return set_death_signal


class _SignalForwarder:
    """Pass INT, TERM and HUP on to COMMAND's process group (those that arrive before it
    started are passed on when it has)."""

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.group = 0
        self.pending: list[int] = []
        self.previous: dict[int, Any] = {}
        for signum in FORWARDED_SIGNALS:
            if signal.getsignal(signum) == signal.SIG_IGN:
                continue  # ignored when we started (nohup, a background job): COMMAND ignores it too
            self.previous[signum] = signal.signal(signum, self.forward)

    def forward(self, signum: int, _frame: Any = None) -> None:
        """The signal handler."""
        if self.child is None:
            self.pending.append(signum)
            return
        try:
            os.killpg(self.group, signum)
        except ProcessLookupError:
            pass

    def started(self, child: subprocess.Popen[bytes], group: int) -> None:
        """COMMAND runs in process group `group`: pass on what came meanwhile."""
        self.child, self.group = child, group
        for signum in self.pending:
            self.forward(signum)

    def restore(self) -> None:
        """Put back the handlers replaced."""
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _wait(child: subprocess.Popen[bytes], lock: Any, group: int) -> int:
    """Wait for COMMAND; stop it (TERM, then KILL after a grace) when the lease is lost.
    Returns its status as a shell reports it (128+N when killed by signal N)."""
    while True:
        try:
            code = child.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            pass
        if lock.lost.is_set():
            _stop(child, group)
            code = child.wait()
            break
    return 128 - code if code < 0 else code


def _stop(child: subprocess.Popen[bytes], group: int) -> None:
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return
        time.sleep(0.05)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
