"""A watchdog for PostgreSQL calls that wait forever: libpq has no read timeout."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Generator
from typing import Any


class AnswerWatchdog:
    """Closes the socket of a PostgreSQL call that waits too long for the server's answer.

    libpq has no read timeout: a server that stops answering (stopped, or partitioned behind a
    proxy that keeps the connection open) hangs a call forever. Each thread arms the watchdog
    with its connection before a call that waits for the server and disarms it after. A call
    armed for longer than its timeout with nothing left in the socket's send queue (a big value
    still going up is progress, not a hang) has its socket shut down: libpq then fails the call
    as a lost connection, and `timed_out()` tells the thread why.
    """

    TICK = 0.2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: dict[int, tuple[int, float, float]] = {}  # thread -> (fd, deadline, timeout)
        self._fired: dict[int, float] = {}  # thread -> timeout that ran out
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any, timeout: float) -> None:
        """Start the clock for a call of this thread on `dbapi_connection`."""
        try:
            fd = dbapi_connection.fileno()
        except Exception:  # noqa: BLE001 - closed or broken: nothing to watch
            return
        thread = threading.get_ident()
        with self._lock:
            self._fired.pop(thread, None)
            self._armed[thread] = (fd, time.monotonic() + timeout, timeout)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="anystore-sql-watchdog", daemon=True)
                self._thread.start()

    def disarm(self, *_: Any) -> None:
        """The call of this thread got its answer (or failed)."""
        with self._lock:
            self._armed.pop(threading.get_ident(), None)

    def timed_out(self) -> float | None:
        """The timeout that ran out for this thread's last call, if one did (asked once)."""
        with self._lock:
            return self._fired.pop(threading.get_ident(), None)

    @contextlib.contextmanager
    def watching(self, dbapi_connection: Any, timeout: float) -> Generator[None, None, None]:
        """Arm around a block (a fetch from a server-side cursor)."""
        self.arm(dbapi_connection, timeout)
        try:
            yield
        finally:
            self.disarm()

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK)
            now = time.monotonic()
            with self._lock:
                for thread, (fd, deadline, timeout) in list(self._armed.items()):
                    if now < deadline:
                        continue
                    if _unsent(fd):  # still sending: the server is taking data, wait on
                        self._armed[thread] = (fd, now + timeout, timeout)
                        continue
                    del self._armed[thread]
                    self._fired[thread] = timeout
                    _shut_down(fd)


def _unsent(fd: int) -> int:
    """Bytes in a socket's send queue not yet acknowledged by the peer (0 where unknown)."""
    import fcntl
    import struct
    import termios

    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, AttributeError):
        return 0


def _shut_down(fd: int) -> None:
    """Shut down the socket behind `fd` both ways (the owner's blocked call wakes and fails)."""
    import os
    import socket

    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


WATCHDOG = AnswerWatchdog()
