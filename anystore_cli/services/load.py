"""The load pipeline: dump lines into a store, through its bulk path, a long line streamed.

Lines are parsed in blocks (`anystore_cli.services.jsonl`) and gathered into batches of one
ttl, written by `put_many` on `jobs` threads (`Loader`). A line over `STREAM_LINE_BYTES` is
parsed as it is read: its small fields (`key`, `ttl`) are read as usual, and its `value` or
`value_b64` string is decoded chunk by chunk (JSON string escapes, then base64) into the store's
streaming write (`put_stream`). What follows the value on the line is checked before the write
is committed, so a malformed line leaves the old value. A value that comes before its `key` is
decoded into a temporary file first.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from anystore_cli.errors import AlreadyExists, InvalidData, ReadOnlyError
from anystore_cli.services import jsonl
from anystore_cli.services.jsonl import (
    BACKSLASH,
    CLOSE,
    COMMA,
    QUOTE,
    LineFields,
    LineInput,
    LongLine,
    decode_segment,
    iter_dump_blocks,
    line_end,
    line_start,
    parse_dump_block,
    parse_dump_line,
    read_fields,
)
from anystore_cli.store.base import as_backend

LOAD_BATCH_KEYS = 1000
"""Keys a batch holds where the backend names no `bulk_batch_keys`"""
LOAD_BATCH_BYTES = 16 * 1024 * 1024
"""Bytes of values a batch holds at most"""
_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW_SURROGATE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class Loader:
    """Writes batches through `put_many`, on `jobs` threads, counting what it did."""

    def __init__(self, store: Any, no_clobber: bool, jobs: int, progress: Any) -> None:
        self.store = store
        self.no_clobber = no_clobber
        self.progress = progress
        self.loaded = 0
        self.skipped = 0
        self._lock = threading.Lock()
        self._pool: Any = None
        self._slots: Any = None
        self._errors: list[BaseException] = []
        self._pending: list[Any] = []
        backend = as_backend(store)
        self.batch_keys: int = backend.capabilities.bulk_batch_keys
        """Keys handed to one `put_many` (one transaction, pipeline or request)"""
        # even with one job, batches are written on a thread of their own (in order) when the
        # store's writes wait on a server or the disk: that wait overlaps with parsing the next lines
        if jobs > 1 or backend.capabilities.writes_wait:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=jobs)
        self._slots = threading.BoundedSemaphore(jobs * 2)

    def submit(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        if self._errors:
            raise self._errors[0]
        if self._pool is None:
            self._write(batch, ttl)
            return
        self._slots.acquire()
        self._pending = [f for f in self._pending if not f.done()]
        self._pending.append(self._pool.submit(self._run, batch, ttl))

    def wait(self) -> None:
        """Wait for the batches handed over so far (a later line may write the same key)."""
        from concurrent.futures import wait

        wait(self._pending)
        self._pending = []
        if self._errors:
            raise self._errors[0]

    def count(self, stored: bool) -> None:
        """Count one key written outside the batches (stored, or kept as it existed)."""
        with self._lock:
            if stored:
                self.loaded += 1
            else:
                self.skipped += 1
        self.progress.advance(1)

    def _run(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        try:
            if self._errors:  # a batch failed: the load stops, the batches queued after it are not written
                return
            self._write(batch, ttl)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            self._errors.append(exc)
        finally:
            self._slots.release()

    def _write(self, batch: list[tuple[str, bytes]], ttl: int | None) -> None:
        skipped = 0
        if self.no_clobber:
            # which keys exist, asked for the batch at once (one query, script call or archive
            # reading where the backend can; `exists` per key took a round trip each)
            found = self.store.info_many([key for key, _ in batch], batch_size=len(batch))
            kept = [item for item, (_, stats) in zip(batch, found, strict=True) if stats is None]
            skipped, batch = len(batch) - len(kept), kept
        if batch:
            try:
                self.store.put_many(batch, ttl=ttl, serialization_mode="raw", batch_size=len(batch))
            except BaseException as exc:
                # a batch may fail part-way (a full disk), but one the store refused (an
                # append-only store's existing key) wrote nothing: not a value to read back
                refused = isinstance(exc, (ReadOnlyError, AlreadyExists))
                stored = 0 if refused else self._count_stored(batch)
                with self._lock:
                    self.loaded += stored
                    self.skipped += skipped
                raise
        with self._lock:
            self.loaded += len(batch)
            self.skipped += skipped
        self.progress.advance(len(batch) + skipped)

    def _count_stored(self, batch: list[tuple[str, bytes]]) -> int:
        """How many keys of a failed batch hold their new value (0 when the store cannot say)."""
        wanted = dict(batch)
        try:
            found = self.store.get_many(list(wanted), serialization_mode="raw", batch_size=len(wanted))
            return sum(1 for key, value in found if value is not None and value == wanted[key])
        except Exception:  # noqa: BLE001 - the store is failing: report what is known for sure
            return 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=bool(self._errors))
            self._pool = None
        if self._errors:
            raise self._errors[0]


class Batcher:
    """Gathers parsed lines into batches of one ttl for the loader."""

    def __init__(self, loader: Loader) -> None:
        self.loader = loader
        self.items: list[tuple[str, bytes]] = []
        self.size = 0
        self.ttl: int | None = None

    def add(self, items: list[tuple[str, bytes]], size: int, ttl: int | None) -> None:
        """Add parsed `items` (values of `size` bytes in all) written with `ttl`."""
        if self.items and ttl != self.ttl:
            self.flush()
        self.ttl = ttl
        self.items += items
        self.size += size
        limit = self.loader.batch_keys
        if len(self.items) >= limit or self.size >= LOAD_BATCH_BYTES:
            items = self.items
            # whole batches go; short of the byte limit, a tail under `limit` keys waits for more
            end = len(items) if self.size >= LOAD_BATCH_BYTES else len(items) - len(items) % limit
            for start in range(0, end, limit):
                self.loader.submit(items[start : min(start + limit, end)], ttl)
            self.items = items[end:]
            self.size = sum(map(len, map(itemgetter(1), self.items)))  # the tail's values, in C

    def flush(self) -> None:
        """Hand what is gathered to the loader."""
        if self.items:
            items, self.items, self.size = self.items, [], 0
            self.loader.submit(items, self.ttl)


def load_lines(loader: Loader, open_source: Callable[[], Any], name: str, ttl: int | None) -> None:
    """Read dump lines and hand them to `loader` in batches of one ttl; store the values of long
    lines as streams, in their turn. The loader is closed at the end, whatever happened.

    Args:
        loader: Writes the batches
        open_source: Opens the input (a context manager giving a binary handle)
        name: The input's name in messages (`line N of NAME`)
        ttl: The ttl of a line without one

    Raises:
        InvalidData: For a malformed line (the lines before it are stored)
    """
    batcher = Batcher(loader)
    step = loader.batch_keys
    try:
        with open_source() as handle:
            for first, block in iter_dump_blocks(handle, name):
                if isinstance(block, LongLine):
                    batcher.flush()
                    loader.wait()
                    stored = load_long_line(block, loader.store, ttl, loader.no_clobber)
                    loader.count(stored)
                    continue
                for start in range(0, len(block), step):
                    lines = block[start : start + step]
                    items = parse_dump_block(lines)
                    if items is not None:
                        batcher.add(items, sum(map(len, lines)), ttl)
                        continue
                    for number, raw in enumerate(lines, first + start):
                        parsed = parse_dump_line(raw, number, name)
                        if parsed is not None:
                            key, data, line_ttl = parsed
                            if line_ttl:
                                check_line_ttl(loader.store, number, name)
                            batcher.add([(key, data)], len(data), line_ttl if line_ttl is not None else ttl)
        batcher.flush()
    except InvalidData:
        batcher.flush()  # the lines before a malformed one are kept
        raise
    finally:
        loader.close()


def check_line_ttl(store: Any, number: int, name: str) -> None:
    """Refuse a line's `ttl` on a store that cannot expire keys, naming the line."""
    try:
        store.check_ttl(1, "`ttl`")
    except InvalidData as exc:
        raise InvalidData(f"Malformed line {number} of `{name}`: {exc}") from None


class _DecodingReader:
    """A binary reader over bytes decoded piece by piece: subclasses say when the input ended
    (`ended`) and decode the next piece into `_pending` (`_fill`)."""

    ended = False
    _pending = b""

    def _fill(self, size: int) -> None:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` decoded bytes (all that is left for a negative size); b"" at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(jsonl.CHUNK), b""))
        while not self._pending and not self.ended:
            self._fill(size)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    read1 = read

    def drain(self) -> None:
        """Read (and drop) the rest of the value and line."""
        while self.read(jsonl.CHUNK):
            pass


class _StringReader(_DecodingReader):
    """The decoded bytes of a JSON string being read from a long line, as a binary reader.

    At the closing quote it calls `on_end` (which reads the rest of the line) before it reports
    the end, so an error there fails the write that reads from it.
    """

    def __init__(self, source: LineInput, line: LongLine, on_end: Callable[[], None]) -> None:
        self.source = source
        self.line = line
        self.on_end = on_end
        if source.take() != QUOTE:
            raise line.malformed("expected a string")

    def _fill(self, size: int) -> None:
        self._pending = self._decode(max(size, 65536))

    def _decode(self, want: int) -> bytes:
        """Decode the next piece of the string (at most `want` raw bytes); b"" at its end."""
        source, line = self.source, self.line
        while True:
            buf, pos = source.buf, source.pos
            limit = min(len(buf), pos + want)
            window = bytes(buf[pos:limit])
            # mask escaped backslashes, then escaped quotes: the first quote left closes the string
            closing = window.replace(b"\\\\", b"\0\0").replace(b'\\"', b"\0\0").find(b'"')
            if closing >= 0:
                end = closing
            elif limit == len(buf) and source.eof:
                raise line.malformed("a string runs to the end of the input")
            else:
                end = _safe_end(window)
            if b"\n" in window[:end] or (closing < 0 and b"\n" in window):
                raise line.malformed("a string is not closed on its line")
            if end:
                source.pos = pos + end
                return decode_segment(window[:end], line)
            if closing == 0:
                source.pos = pos + 1
                self.ended = True
                self.on_end()
                return b""
            if limit < len(buf):
                want *= 2  # the window holds only part of an escape or character
            elif not source.more():
                raise line.malformed("a string runs to the end of the input")


def _safe_end(window: bytes) -> int:
    """Where to cut a piece of a string's content so that it ends neither inside an escape nor
    inside a UTF-8 character: before the escapes of its last 12 bytes (a surrogate pair is 12),
    else before a character cut at the end."""
    end = len(window)
    escape = window.find(b"\\", max(0, end - 12))
    if escape >= 0:
        while escape > 0 and window[escape - 1] == BACKSLASH:  # the start of a run of backslashes
            escape -= 1
        if escape >= 6 and _LOW_SURROGATE.match(window, escape) and _HIGH_SURROGATE.match(window, escape - 6):
            escape -= 6  # the second half of a surrogate pair: keep the pair together
            while escape > 0 and window[escape - 1] == BACKSLASH:
                escape -= 1
        return escape
    index = end
    while index > 0 and end - index < 3 and window[index - 1] & 0xC0 == 0x80:
        index -= 1
    if index > 0 and window[index - 1] >= 0xC0:
        lead = window[index - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if end - (index - 1) < need:
            return index - 1
    return end


class _Base64Reader(_DecodingReader):
    """The bytes of a base64 text read from another reader (a `_StringReader`), chunk by chunk."""

    def __init__(self, text: _StringReader, line: LongLine, on_end: Callable[[], None]) -> None:
        self.text = text
        self.line = line
        self.on_end = on_end
        self._rest = b""

    def _fill(self, size: int) -> None:
        chunk = self.text.read(jsonl.CHUNK)
        data = self._rest + chunk
        if not chunk:
            self.ended = True
            cut = len(data)
        else:
            cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if cut:
            part = data[:cut]
            if not self.ended and b"=" in part[-4:]:
                self._rest, part = part[-4:] + self._rest, part[:-4]  # padding only at the very end
            self._pending = self._decode(part)
        if self.ended:  # the value's last bytes decoded: now the rest of the line, as a whole line is read
            self.on_end()

    def _decode(self, part: bytes) -> bytes:
        try:
            if not self.ended and b"=" in part:
                raise binascii.Error("padding before the end")
            return base64.b64decode(part, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.line.malformed(f"bad base64 in `value_b64` ({exc})") from None


def load_long_line(line: LongLine, store: Any, default_ttl: int | None, no_clobber: bool) -> bool:
    """Parse a long dump line as it is read and store its value through `put_stream`.

    Args:
        line: The line (its input is consumed to the end of the line)
        store: The target store
        default_ttl: The ttl of a line without one (`load --ttl`)
        no_clobber: Keep an existing key (the line is read and dropped)

    Returns:
        True if the value was stored, False if an existing key was kept (`no_clobber`)

    Raises:
        InvalidData: For a malformed line (a value being written is then not committed)
    """
    source = line.source
    fields = LineFields(line)
    line_start(source, line)
    streamed = read_fields(source, line, fields, stream=True, first=True)
    _check_ttl(store, fields)
    if streamed is None:  # nothing to stream: an ordinary line, only long
        line_end(source, line)
        key, data, ttl = fields.result()
        assert data is not None
        return _store_small(store, key, data, default_ttl if ttl is None else ttl, no_clobber)
    known = fields.key is not None
    ttl_before = fields.ttl

    def rest_of_line() -> None:
        source.skip_space()
        byte = source.take()
        if byte == COMMA:
            read_fields(source, line, fields, stream=False, first=False)
        elif byte != CLOSE:
            raise line.malformed("expected `,` or `}`")
        line_end(source, line)
        _check_ttl(store, fields)
        if known and fields.ttl != ttl_before and store.capabilities.ttl:
            raise line.malformed(
                "`ttl` after a value over 4 MiB, which is streamed: put `ttl` before the value, or use `load --ttl`"
            )

    if streamed == "value_b64":
        reader: Any = _Base64Reader(_StringReader(source, line, lambda: None), line, rest_of_line)
    else:
        reader = _StringReader(source, line, rest_of_line)
    if known:
        key, _, ttl = fields.result(streamed=True)
        return _store_stream(store, key, reader, default_ttl if ttl is None else ttl, no_clobber)
    import tempfile

    from anystore_cli.store.io import copy_stream

    with tempfile.TemporaryFile(prefix="anystore-load-") as spool:  # the key comes after the value
        copy_stream(reader, spool)
        key, _, ttl = fields.result(streamed=True)
        spool.seek(0)
        return _store_stream(store, key, spool, default_ttl if ttl is None else ttl, no_clobber)


def _check_ttl(store: Any, fields: LineFields) -> None:
    """Refuse a line's `ttl` on a store that cannot expire keys, naming the line."""
    if fields.ttl:
        try:
            store.check_ttl(fields.ttl, "`ttl`")
        except InvalidData as exc:
            raise fields.line.malformed(str(exc)) from None


def _store_stream(store: Any, key: str, reader: Any, ttl: int | None, no_clobber: bool) -> bool:
    drain = getattr(reader, "drain", None)
    if no_clobber and store.exists(key):
        if drain is not None:
            drain()
        return False
    try:
        store.put_stream(key, reader, ttl=ttl, no_clobber=no_clobber)
    except AlreadyExists:
        if drain is not None:
            drain()
        return False
    if drain is not None:
        drain()  # a backend that stopped reading early: the line must still end where it should
    return True


def _store_small(store: Any, key: str, data: bytes, ttl: int | None, no_clobber: bool) -> bool:
    if no_clobber and store.exists(key):
        return False
    try:
        store.put(key, data, serialization_mode="raw", ttl=ttl, no_clobber=no_clobber)
    except AlreadyExists:
        return False
    return True
