"""Fault injection for the reliability tests: a TCP proxy that can be cut or made to hang, a
private Redis server that can be killed and restarted, writers killed at random moments,
self-describing values that reveal a mixed or torn write, and the worker of the load test.

Nothing here touches the machine's shared servers: faults are injected on a proxy in front of
them, or on a private server started for the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---- a TCP proxy with faults ------------------------------------------------------------------


class TcpProxy:
    """A threaded TCP proxy on loopback in front of `upstream`, with three modes.

    - `forward`: bytes pass both ways (the default);
    - `cut`: every open connection is reset and new ones are reset on accept, as when a
      server or the network dies;
    - `blackhole`: connections are accepted and what the client sends is read, but nothing ever
      comes back, as with a server that hangs.

    Example:
        ```python
        with TcpProxy(("127.0.0.1", 5432)) as proxy:
            url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
            ...
            proxy.cut()
            ...
            proxy.restore()
        ```
    """

    def __init__(self, upstream: tuple[str, int], mode: str = "forward") -> None:
        self.upstream = upstream
        self.mode = mode
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self.connections = 0
        """Connections accepted so far"""
        self.frozen = False
        """Open connections drop what they get instead of passing it on"""
        self.forwarded = 0
        """Bytes passed on so far, both ways"""

    # -- control

    def start(self) -> TcpProxy:
        """Start accepting connections."""
        self._thread.start()
        return self

    def cut(self) -> None:
        """Reset every open connection and every new one until `restore()`."""
        with self._lock:
            self.mode = "cut"
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _reset(sock)

    def blackhole(self) -> None:
        """From now on, accept connections but never answer them."""
        with self._lock:
            self.mode = "blackhole"

    def freeze(self) -> None:
        """Stop answering on every connection, open or new: what the client sends is read and
        dropped, nothing comes back (a server stopped with SIGSTOP, a network partition)."""
        with self._lock:
            self.mode = "blackhole"
            self.frozen = True

    def restore(self) -> None:
        """Forward again (connections cut before stay cut)."""
        with self._lock:
            self.mode = "forward"
            self.frozen = False

    def stop(self) -> None:
        """Stop the proxy and close every connection."""
        self._stopped.set()
        self.cut()
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- plumbing

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.update(sockets)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            mode = self.mode
            if mode == "cut":
                _reset(client)
            elif mode == "blackhole":
                self._track(client)
                threading.Thread(target=_swallow, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        self._track(client, server)
        if self.mode != "forward":  # cut while connecting
            _reset(client)
            _reset(server)
            return
        pumps = [
            threading.Thread(target=_pump, args=(client, server, self), daemon=True),
            threading.Thread(target=_pump, args=(server, client, self), daemon=True),
        ]
        for pump in pumps:
            pump.start()


def _reset(sock: socket.socket) -> None:
    """Close `sock` with a TCP reset (SO_LINGER 0), so the peer fails at once."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _pump(source: socket.socket, target: socket.socket, proxy: TcpProxy) -> None:
    """Copy bytes from `source` to `target` until either side closes (dropping them while the
    proxy is frozen)."""
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if not proxy.frozen:
                target.sendall(data)
                with proxy._lock:
                    proxy.forwarded += len(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _swallow(sock: socket.socket) -> None:
    """Read and discard what a client sends, never answering, until it goes away."""
    try:
        while True:
            ready, _, _ = select.select([sock], [], [], 0.5)
            if ready and not sock.recv(65536):
                break
    except (OSError, ValueError):
        pass


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on loopback `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing answers on port {port} after {timeout} s")


# ---- a private Redis server ---------------------------------------------------------------------


class PrivateRedis:
    """A `redis-server` of the test's own, without persistence, that can be killed and restarted.

    Extra arguments (e.g. `["--requirepass", "s3cret"]`) are passed to every start.
    """

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.workdir = workdir
        self.extra = extra or []
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's url (without credentials)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        """Start the server (again, on the same port) and wait until it answers."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(self.workdir), *self.extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


# ---- self-describing values ---------------------------------------------------------------------


def make_value(key: str, writer: str, seq: int, size: int = 64) -> bytes:
    """A value that names its key, writer and sequence number, padded to about `size` bytes,
    and ends with the sha256 of the rest: any mix of two values fails `check_value`."""
    rng = random.Random(f"{key}|{writer}|{seq}")
    pad = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=max(0, size - 48)))
    body = json.dumps({"key": key, "writer": writer, "seq": seq, "pad": pad}, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f"{body}|{digest}".encode()


def check_value(data: bytes, key: str) -> dict[str, Any]:
    """Return the fields of a value made by `make_value` for `key`; raise `ValueError` if it is
    torn, mixed or belongs to another key."""
    body, sep, digest = data.decode().rpartition("|")
    if not sep or hashlib.sha256(body.encode()).hexdigest() != digest:
        raise ValueError(f"value of {key!r} is torn or mixed: {data[:80]!r}...")
    fields = json.loads(body)
    if fields["key"] != key:
        raise ValueError(f"value of {key!r} belongs to {fields['key']!r}")
    return fields


def pattern_value(tag: bytes, size: int) -> bytes:
    """`size` bytes made of `tag` repeated, after a header naming tag and size: two such values
    of different tags or sizes can never be confused, and a prefix of one is not the other."""
    header = b"%s:%d:" % (tag, size)
    body = (tag * (size // len(tag) + 1))[: size - len(header)]
    return header + body


# ---- killing a writer at a random moment --------------------------------------------------------


@dataclass
class KillResult:
    """How a writer killed at a random moment ended."""

    delay: float
    """Seconds after start when SIGKILL was sent"""
    returncode: int | None
    """-9 when killed, else the exit status of a writer that finished first"""


def run_and_kill(
    argv: list[str],
    data: bytes,
    delay: float,
    chunks: int = 16,
    feed_seconds: float = 0.2,
    env: dict[str, str] | None = None,
) -> KillResult:
    """Start `argv`, feed `data` to its stdin in `chunks` spread over `feed_seconds`, and send
    SIGKILL `delay` seconds after the start (unless it finished before).

    Returns:
        The delay and the writer's exit status
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None
    start = time.monotonic()

    def feed() -> None:
        size = max(1, len(data) // chunks + 1)
        try:
            for offset in range(0, len(data), size):
                proc.stdin.write(data[offset : offset + size])  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                time.sleep(feed_seconds / chunks)
            proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError, OSError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    remaining = delay - (time.monotonic() - start)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=max(0.0, remaining))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    returncode = proc.wait(timeout=60)
    feeder.join(timeout=5)
    with contextlib.suppress(OSError):
        proc.stdin.close()
    return KillResult(delay=delay, returncode=returncode)


def time_full_run(
    argv: list[str], data: bytes, chunks: int = 16, feed_seconds: float = 0.2, env: dict[str, str] | None = None
) -> float:
    """Seconds one uninterrupted run of `argv` takes with `data` fed as `run_and_kill` feeds it;
    raise `RuntimeError` if it fails."""
    start = time.monotonic()
    result = run_and_kill(argv, data, delay=120, chunks=chunks, feed_seconds=feed_seconds, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"writer failed on its own (exit {result.returncode}): {argv}")
    return time.monotonic() - start


CORE_WRITER = """
import json, sys
from anystore_cli.core import get_store
uri, config, key = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
store = get_store(uri=uri, backend_config=config or None)
store.put_stream(key, sys.stdin.buffer)
"""
"""A writer using the library: `python -c CORE_WRITER URI CONFIG_JSON KEY` streams stdin to KEY"""


def core_writer_argv(uri: str, config: dict[str, Any], key: str) -> list[str]:
    """The argv of a process that streams its stdin into `key` through the library's put_stream."""
    return [sys.executable, "-c", CORE_WRITER, uri, json.dumps(config), key]


# ---- disk limits --------------------------------------------------------------------------------


def limit_file_size(limit: int) -> Callable[[], None]:
    """A `preexec_fn` capping the size of any file the child writes (RLIMIT_FSIZE): a bigger
    write fails with EFBIG (Python ignores SIGXFSZ)."""

    def _apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return _apply


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str = "1m") -> Iterator[bool]:
    """Mount a tmpfs of `size` on `folder` for the block; yield False if mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        yield False
        return
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, check=False
    )
    if done.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


# ---- parsing summaries ---------------------------------------------------------------------------


def summary_count(stderr: bytes | str) -> int | None:
    """The number of values a `load` or `mirror` summary says were written, or None.

    Takes the number next to a word such as written/loaded/stored/put/imported (either side).
    """
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    words = r"(?:written|wrote|loaded|stored|put|imported|copied|ok)"
    for pattern in (rf"(\d+)\s+(?:\w+\s+)?{words}", rf"{words}\W{{0,3}}\s*(\d+)"):
        match = re.search(pattern, text, re.IGNORECASE)
        if match:
            return int(match.group(1))
    return None


# ---- the load test's worker ----------------------------------------------------------------------


@dataclass
class WorkerReport:
    """What one load worker did and what it expects its own keys to hold at the end."""

    worker: int
    ops: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    expected: dict[str, int | None] = field(default_factory=dict)
    """Own key -> seq of the value it last wrote (None: deleted or never written)"""


OWN_KEYS = 12
SHARED_KEYS = 6


def own_key(worker: int, index: int) -> str:
    """A key only `worker` writes (nested, so local stores create and prune folders)."""
    return f"own/w{worker}/d{index % 3}/k{index}"


def shared_key(index: int) -> str:
    """A key every worker writes, reads and deletes."""
    return f"shared/d{index % 2}/k{index}"


def load_worker(uri: str, config: dict[str, Any], worker: int, operations: int, seed: int) -> dict[str, Any]:
    """Run `operations` random put/get/rm operations on own and shared keys; check every value
    read; return a `WorkerReport` as a dict. Runs in its own process."""
    from anystore_cli.core import get_store

    store = get_store(uri=uri, backend_config=config or None, serialization_mode="raw")
    rng = random.Random(seed)
    report = WorkerReport(worker=worker, expected={own_key(worker, i): None for i in range(OWN_KEYS)})
    name = f"w{worker}"

    def count(op: str) -> None:
        report.ops[op] = report.ops.get(op, 0) + 1

    for seq in range(operations):
        shared = rng.random() < 0.4
        key = shared_key(rng.randrange(SHARED_KEYS)) if shared else own_key(worker, rng.randrange(OWN_KEYS))
        op = rng.choices(["put", "get", "rm"], weights=[5, 4, 1])[0]
        kind = f"{op}-{'shared' if shared else 'own'}"
        count(kind)
        try:
            if op == "put":
                store.put(key, make_value(key, name, seq, size=rng.choice([40, 300, 5000])))
                if not shared:
                    report.expected[key] = seq
            elif op == "get":
                data = store.get(key, raise_on_nonexist=False)
                if data is None:
                    if not shared and report.expected[key] is not None:
                        report.errors.append(f"{kind} {key}: lost (expected seq {report.expected[key]})")
                    continue
                fields = check_value(data, key)
                if not shared and (fields["writer"] != name or fields["seq"] != report.expected[key]):
                    report.errors.append(f"{kind} {key}: stale or foreign value {fields}")
            else:
                existed = store.delete(key)
                if not shared:
                    if existed != (report.expected[key] is not None):
                        report.errors.append(f"{kind} {key}: delete said {existed}, expected the opposite")
                    report.expected[key] = None
        except Exception as exc:  # noqa: BLE001 - every failure is a finding, keep going
            report.errors.append(f"{kind} {key}: {type(exc).__name__}: {exc}")
    return {"worker": report.worker, "ops": report.ops, "errors": report.errors, "expected": report.expected}


# ---- the tally behind the README's reliability table --------------------------------------------


def record(test: str, **counts: Any) -> None:
    """Print one line of counts (tried, lost, ...) for the README's reliability table, and append
    it as JSON to the file named by `ANYSTORE_TEST_RELIABILITY_REPORT` when that is set."""
    line = {"test": test, **counts}
    print(f"\nRELIABILITY {json.dumps(line)}")
    target = os.environ.get("ANYSTORE_TEST_RELIABILITY_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
