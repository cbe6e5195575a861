"""Terminal output: plain bytes, terminal-safe text, progress bars (records and tables are in
`anystore_cli.cli.output`).

Data goes to stdout, everything else (summaries, progress, errors) to stderr. Tables and
colours are for humans only: they appear when the stream is a terminal, colours are dropped
under `NO_COLOR` or `TERM=dumb`, and progress bars are drawn on stderr only when stderr is a
terminal. `rich` and `orjson` are imported only on the paths that use them.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

from anystore_cli.cli.output.records import json_line  # noqa: F401  (command modules import it from here)

PROG = "anystore"


def is_terminal(stream: IO[Any] | None) -> bool:
    """Tell whether `stream` is attached to a terminal."""
    if stream is None:
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def stdout_is_terminal() -> bool:
    """Tell whether stdout is a terminal."""
    return is_terminal(sys.stdout)


def stderr_is_terminal() -> bool:
    """Tell whether stderr is a terminal."""
    return is_terminal(sys.stderr)


def dumb_terminal() -> bool:
    """Tell whether the terminal asked for no escape codes (`TERM=dumb`)."""
    return os.environ.get("TERM", "") == "dumb"


def color_wanted(stream: IO[Any]) -> bool:
    """Colours only on a terminal, and neither with `NO_COLOR` set nor with `TERM=dumb`."""
    return is_terminal(stream) and not os.environ.get("NO_COLOR") and not dumb_terminal()


class FullWriter(io.RawIOBase):
    """A raw writer on a file descriptor whose `write` writes everything it is given, or fails.

    `os.write` may write less than asked: on a non-blocking pipe (a descriptor shared with a
    parent that set O_NONBLOCK), over 2 GiB in one call, or after a signal. Python's unbuffered
    stdout (`PYTHONUNBUFFERED=1`) passes that count on and its callers drop the rest; this one
    writes the rest, waiting for the descriptor to take more.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        """Always true."""
        return True

    def fileno(self) -> int:
        """The descriptor written to."""
        return self._fd

    def isatty(self) -> bool:
        """Whether the descriptor is a terminal."""
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        """Write all of `data`; return its length (an `OSError` when the descriptor fails)."""
        return write_fully(self._fd, data)


def write_fully(fd: int, data: Any) -> int:
    """Write all of `data` to `fd`, retrying after short writes and waiting while it would block."""
    import select

    view = memoryview(data).cast("B")
    total = 0
    while total < len(view):
        try:
            total += os.write(fd, view[total : total + (1 << 30)])
        except BlockingIOError:
            select.select([], [fd], [])
    return total


def install_full_stdout() -> None:
    """Make `sys.stdout` (text and `.buffer`) write everything or fail, whatever its buffering.

    Only the process's real stdout is replaced (not a test runner's capture)."""
    stream = sys.stdout
    if stream is None or stream is not sys.__stdout__:
        return
    try:
        fd = stream.fileno()
        stream.flush()
    except (AttributeError, OSError, ValueError):
        return
    buffered = io.BufferedWriter(FullWriter(fd), buffer_size=128 * 1024)
    sys.stdout = io.TextIOWrapper(
        buffered,
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
    )


def stdout_bytes() -> IO[bytes]:
    """The binary stdout."""
    return sys.stdout.buffer


_UNSAFE = None


def terminal_safe(text: str) -> str:
    """`text` fit to show on a terminal: control characters (escape sequences, carriage returns,
    C1 codes), bidi overrides and undecodable bytes of a name shown as `\\x1b`-style escapes, so a
    key name cannot move the cursor, retitle the window or hide itself. Data that is piped is left
    as it is."""
    global _UNSAFE
    if _UNSAFE is None:
        import re

        _UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(match: Any) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte of a file name
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def message(text: str) -> None:
    """Write one line of information to stderr (escaped when stderr is a terminal)."""
    if stderr_is_terminal():
        text = terminal_safe(text)
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()


def error(text: str) -> None:
    """Write one error line, `anystore: error: ...`, to stderr."""
    message(f"{PROG}: error: {text}")


def rich_console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr), colored only where color is wanted."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    colored = color_wanted(stream)
    return Console(
        file=stream,
        force_terminal=False if dumb_terminal() else None,
        no_color=not colored,
        color_system="auto" if colored else None,
        highlight=False,
        soft_wrap=False,
        emoji=False,
    )


class Progress:
    """A progress bar on stderr when stderr is a terminal; otherwise it draws nothing.

    Use as a context manager; `advance()` is safe to call from worker threads.
    """

    def __init__(self, description: str, total: int | None = None, enabled: bool = True, unit: str = "keys") -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.enabled = enabled and stderr_is_terminal() and not dumb_terminal()
        self._progress: Any = None
        self._task: Any = None
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            if self.unit == "bytes":
                from rich.progress import DownloadColumn, TransferSpeedColumn

                columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), DownloadColumn()]
                columns.append(TransferSpeedColumn())
            elif self.total is None:
                columns = [SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed}")]
            else:
                columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
            columns.append(TimeElapsedColumn())
            self._progress = RichProgress(*columns, console=rich_console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, amount: int = 1) -> None:
        """Count `amount` more items done."""
        if self._progress is not None:
            with self._lock:
                self._progress.advance(self._task, amount)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)
            self._progress = None


class LineWriter:
    """Buffered writer of output records to a binary stream, flushed in batches.

    Keeps the number of write calls low when millions of short lines go out.
    """

    def __init__(self, stream: IO[bytes], batch: int = 4096) -> None:
        self.stream = stream
        self.batch = batch
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue `data` for writing."""
        self._pending.append(data)
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        """Write what is queued."""
        if self._pending:
            self.stream.write(b"".join(self._pending))
            self._pending = []
        self.stream.flush()


def encode_text(text: str) -> bytes:
    """UTF-8 bytes of `text`, keeping undecodable file-name bytes (surrogate escapes) as they were."""
    return text.encode("utf-8", "surrogateescape")


ProgressCallback = Callable[[str, str], None]

LARGE_VALUE = 16 * 1024 * 1024
"""Values at least this big get a progress bar (on a terminal's stderr)."""


def known_size(handle: Any) -> int | None:
    """The size of what `handle` will yield, where that is cheap to know (regular files, buffers)."""
    import stat

    try:
        info = os.fstat(handle.fileno())
    except (AttributeError, OSError, ValueError):
        size = getattr(handle, "size", None)  # fsspec files (S3, http, ...) know their size
        if size is None:  # a buffered reader over a raw stream that knows it (an S3 GetObject body)
            size = getattr(getattr(handle, "raw", None), "size", None)
        if isinstance(size, int) and not isinstance(size, bool):
            try:
                return size - handle.tell()
            except (AttributeError, OSError, ValueError):
                return size
        getbuffer = getattr(handle, "getbuffer", None)
        if getbuffer is None:
            return None
        try:
            return len(getbuffer()) - handle.tell()
        except (OSError, ValueError):
            return None
    if not stat.S_ISREG(info.st_mode):
        return None
    try:
        return info.st_size - handle.tell()
    except (OSError, ValueError):
        return info.st_size


class CountingReader:
    """A binary reader that reports every chunk read to a `Progress`."""

    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self.handle = handle
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes and count them."""
        data = self.handle.read(size)
        self.progress.advance(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        """Read at most one buffer's worth and count it."""
        reader = getattr(self.handle, "read1", self.handle.read)
        data = reader(size)
        self.progress.advance(len(data))
        return data


def with_progress(handle: IO[bytes], description: str, quiet: bool = False) -> tuple[Any, Progress | None]:
    """Wrap `handle` in a byte-counting reader with a progress bar, when stderr is a terminal and
    the value is large; otherwise return it unchanged (keeping the kernel-copy fast path)."""
    if quiet or not stderr_is_terminal() or dumb_terminal():
        return handle, None
    size = known_size(handle)
    if size is None or size < LARGE_VALUE:
        return handle, None
    progress = Progress(description, total=size, unit="bytes")
    return CountingReader(handle, progress), progress
