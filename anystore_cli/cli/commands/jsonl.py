"""Streaming the JSON lines of `dump` and `load`, so that large values never sit whole in memory.

`dump` writes a large value's line in pieces: the value is read twice in chunks, once to learn
whether it is UTF-8 text (`"value"`) or not (`"value_b64"`), and once to write it, JSON-escaped
or base64-encoded piece by piece.

`load` splits its input into lines in chunks. A line up to `STREAM_LINE_BYTES` is handed over
whole (the bulk path); a longer one is parsed as it is read: its small fields (`key`, `ttl`)
are read as usual, and its `value` or `value_b64` string is decoded chunk by chunk (JSON string
escapes, then base64) into the store's streaming write (`put_stream`). What follows the value
on the line is checked before the write is committed, so a malformed line leaves the old value.
A value that comes before its `key` is decoded into a temporary file first.

Both kinds of line are read by one walker over their fields (`LineFields`), which checks each
field as it comes: a line gives the same answer whether it is read whole or streamed. No field
is held whole beyond a bound: a field name longer than any known one is refused at once, as are
a `key` longer than `MAX_KEY_TEXT` and a `value` that is not a string (kept as compact JSON, so
read whole) longer than `MAX_JSON_VALUE`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from anystore_cli.errors import AlreadyExists, InvalidData, InvalidKey, StoreError

CHUNK = 1024 * 1024
"""Bytes read (and written) at a time"""
STREAM_LINE_BYTES = 4 * 1024 * 1024
"""`load`: a line longer than this is stored as a stream (shorter ones go through `put_many`)"""
DUMP_INLINE_BYTES = 4 * 1024 * 1024
"""`dump`: a value larger than this is read and written in chunks (smaller ones in batches)"""
VALUE_FIELDS = ("value", "value_b64")
KEY_FIELDS = ("key", "key_b64")
KNOWN_FIELDS = (*KEY_FIELDS, *VALUE_FIELDS, "ttl")
MAX_KEY_TEXT = 64 * 1024
"""`load`: the longest `key` or `key_b64` taken, in bytes of its JSON text (far over what any
file-like store or database keeps as a key)"""
MAX_JSON_VALUE = STREAM_LINE_BYTES
"""`load`: the longest `value` that is not a string (an object, array or number, stored as
compact JSON and so parsed whole), in bytes of its JSON text"""
_MAX_NAME_TEXT = 64
"""A field name longer than this in JSON text is none of `KNOWN_FIELDS`"""
_MAX_SCALAR_TEXT = 400

_QUOTE, _BACKSLASH, _COMMA, _COLON, _OPEN, _CLOSE, _NEWLINE = b'"\\,:{}\n'
_SPACE = b" \t\r"
_HIGH_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW_SURROGATE = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SCALAR = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")
_NESTED_SPECIAL = re.compile(rb'["{}\[\]\n]')


class _TooLong(Exception):
    """A JSON token over the bound its reader was given (it was not read whole)."""

    def __init__(self, head: bytes) -> None:
        super().__init__()
        self.head = head


# ---- dump ---------------------------------------------------------------------------------------


def write_value_line(out: IO[bytes], record: dict[str, Any], open_value: Callable[[], Any]) -> None:
    """Write the dump line of a large value to `out` in pieces.

    Args:
        out: The binary output
        record: The line's fields before the value (`dump_record(key, b"")` without its `value`)
        open_value: Opens the value for reading (called twice: a context manager giving a binary handle)

    Raises:
        StoreError: If the value changed between the two readings so that its line broke
    """
    import orjson

    text = _is_utf8(open_value)
    field = "value" if text else "value_b64"
    head = orjson.dumps({**record, field: ""})
    out.write(head[:-2])  # up to the value's opening quote
    with open_value() as handle:
        if text:
            decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                while chunk := handle.read(CHUNK):
                    if piece := decoder.decode(chunk):
                        out.write(orjson.dumps(piece)[1:-1])  # escaping is per character
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise StoreError(f"Key `{record.get('key')}`: the value changed while it was dumped") from None
        else:
            rest = b""
            while chunk := handle.read(CHUNK):
                data = rest + chunk
                cut = len(data) - len(data) % 3
                out.write(base64.b64encode(data[:cut]))
                rest = data[cut:]
            out.write(base64.b64encode(rest))
    out.write(b'"}\n')


def _is_utf8(open_value: Callable[[], Any]) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open_value() as handle:
        try:
            while chunk := handle.read(CHUNK):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


# ---- load: splitting the input into lines --------------------------------------------------------


class LongLine:
    """A dump line longer than `STREAM_LINE_BYTES`, to be parsed and stored as it is read.

    It must be consumed (`load`) before the next line is read.
    """

    def __init__(self, source: _Input, number: int, name: str) -> None:
        self.source = source
        self.number = number
        self.where = f"line {number} of `{name}`"

    def malformed(self, why: str) -> InvalidData:
        """The error for this line."""
        return InvalidData(f"Malformed {self.where}: {why}")


def iter_dump_lines(handle: IO[bytes], name: str, limit: int = STREAM_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """The lines of a dump, numbered from 1: `bytes` (without the newline) for a line up to
    `limit` bytes, a `LongLine` for a longer one (read in chunks, never held whole)."""
    for number, block in iter_dump_blocks(handle, name, limit):
        if isinstance(block, LongLine):
            yield number, block
        else:
            yield from enumerate(block, number)


def iter_dump_blocks(handle: IO[bytes], name: str, limit: int = STREAM_LINE_BYTES) -> Iterator[tuple[int, Any]]:
    """The lines of a dump a read at a time: `(number of the first line, lines)`, the lines as
    `bytes` without their newlines, numbered from 1; a line over `limit` bytes comes alone as
    `(number, LongLine)` (read in chunks, never held whole)."""
    read = getattr(handle, "read1", None) or handle.read
    leftover = b""
    number = 0
    while True:
        chunk = read(CHUNK)
        if not chunk:
            if leftover:
                yield number + 1, [leftover]
            return
        lines = (leftover + chunk if leftover else chunk).split(b"\n")
        leftover = lines.pop()
        if lines:
            yield number + 1, lines
            number += len(lines)
        if len(leftover) > limit:
            number += 1
            source = _Input(read, leftover)
            yield number, LongLine(source, number, name)
            leftover = source.rest()
            if source.eof and not leftover:
                return


class _Input:
    """The input of a long line: what was read ahead, then more in chunks as it is needed."""

    def __init__(self, read: Callable[[int], bytes], head: bytes) -> None:
        self._read = read
        self.buf = bytearray(head)
        self.pos = 0
        self.eof = False

    def more(self) -> bool:
        """Read another chunk (dropping what was consumed); False at the end of the input."""
        if self.eof:
            return False
        if self.pos >= CHUNK:
            del self.buf[: self.pos]
            self.pos = 0
        data = self._read(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def rest(self) -> bytes:
        """What was read past the line (the start of the next lines)."""
        return bytes(self.buf[self.pos :])

    def peek(self) -> int | None:
        """The next byte, or None at the end of the input."""
        while self.pos >= len(self.buf):
            if not self.more():
                return None
        return self.buf[self.pos]

    def skip_space(self) -> None:
        """Skip blanks within the line (a newline ends the line: it is not skipped)."""
        while (byte := self.peek()) is not None and byte in _SPACE:
            self.pos += 1

    def take(self) -> int | None:
        """The next byte, consumed."""
        byte = self.peek()
        if byte is not None:
            self.pos += 1
        return byte

    def string_token(self, line: LongLine, cap: int | None = None) -> bytes:
        """The raw bytes of the JSON string that starts here, quotes included.

        Raises:
            _TooLong: If the string is longer than `cap` bytes (read no further than that)
        """
        if self.peek() != _QUOTE:
            raise line.malformed("expected a string")
        scan = 1  # offsets from `pos`, which reading on may move (dropping what was consumed)
        while True:
            end = self.buf.find(b'"', self.pos + scan)
            if end < 0:
                scan = len(self.buf) - self.pos
                if cap is not None and scan > cap:
                    raise _TooLong(bytes(self.buf[self.pos : self.pos + cap]))
                if not self.more():
                    raise line.malformed("a string runs to the end of the input")
                continue
            slashes = 0
            while self.buf[end - 1 - slashes] == _BACKSLASH:
                slashes += 1
            if slashes % 2:
                scan = end + 1 - self.pos
                continue
            if cap is not None and end + 1 - self.pos > cap:
                raise _TooLong(bytes(self.buf[self.pos : self.pos + cap]))
            token = bytes(self.buf[self.pos : end + 1])
            if b"\n" in token:
                raise line.malformed("a string is not closed on its line")
            self.pos = end + 1
            return token

    def value_token(self, line: LongLine, cap: int) -> bytes:
        """The raw bytes of the JSON value that starts here (string, number, literal, object, array).

        Raises:
            _TooLong: If the value is longer than `cap` bytes (read no further than that)
        """
        byte = self.peek()
        if byte == _QUOTE:
            return self.string_token(line, cap)
        if byte in (ord("{"), ord("[")):
            return self._nested_token(line, cap)
        while len(self.buf) - self.pos < _MAX_SCALAR_TEXT and self.more():
            pass
        match = _SCALAR.match(self.buf, self.pos, self.pos + _MAX_SCALAR_TEXT)
        if match is None:
            raise line.malformed("invalid JSON")
        self.pos = match.end()
        return match.group()

    def _nested_token(self, line: LongLine, cap: int) -> bytes:
        start, depth, size = self.pos, 0, 0
        parts: list[bytes] = []
        while True:
            if size + self.pos - start > cap:
                raise _TooLong(b"".join(parts)[:cap])
            found = _NESTED_SPECIAL.search(self.buf, self.pos)
            if found is None:  # keep what was scanned before reading on
                self.pos = len(self.buf)
                parts.append(bytes(self.buf[start : self.pos]))
                size += self.pos - start
                if not self.more():
                    raise line.malformed("an object or array is not closed on its line")
                start = self.pos
                continue
            self.pos = found.start()
            byte = self.buf[self.pos]
            if byte == _NEWLINE:
                raise line.malformed("an object or array is not closed on its line")
            if byte == _QUOTE:
                parts.append(bytes(self.buf[start : self.pos]))
                size += self.pos - start
                parts.append(self.string_token(line, max(cap - size, 0)))
                size += len(parts[-1])
                start = self.pos
                continue
            depth += 1 if byte in (ord("{"), ord("[")) else -1
            self.pos += 1
            if depth == 0:
                parts.append(bytes(self.buf[start : self.pos]))
                if size + len(parts[-1]) > cap:
                    raise _TooLong(b"".join(parts)[:cap])
                return b"".join(parts)


# ---- load: the fields of a line, long or not ------------------------------------------------------


class LineFields:
    """The fields of one dump line, checked one at a time in the order they come.

    A name is checked before its value is read (an unknown or repeated field is refused without
    reading it), a value as soon as it is read; a line read whole and a line streamed go
    through the same checks in the same order, so they fail alike.
    """

    def __init__(self, line: LongLine) -> None:
        self.line = line
        self.seen: list[str] = []
        self.key: str | None = None
        self.data: bytes | None = None
        self.ttl: int | None = None

    def name(self, name: str) -> None:
        """Check a field's name, before its value is read."""
        if name not in KNOWN_FIELDS:
            raise self.line.malformed(_unknown(name))
        if name in self.seen:
            raise self.line.malformed(f"`{name}` twice")
        for pair in (KEY_FIELDS, VALUE_FIELDS):
            if name in pair and any(other in self.seen for other in pair):
                raise self.line.malformed(f"both `{pair[0]}` and `{pair[1]}`")
        self.seen.append(name)

    def value(self, name: str, token: bytes) -> None:
        """Check and keep the value of field `name`, given as its JSON text."""
        import orjson

        from anystore_cli.cli.commands.common import MAX_TTL, decode_key_b64
        from anystore_cli.util.keys import ensure_relative_key

        malformed = self.line.malformed
        if name in VALUE_FIELDS and token[:1] == b'"':  # decoded as a streamed value is
            text = _decode_segment(token[1:-1], self.line)
            self.data = text if name == "value" else self._base64(text)
            return
        try:
            value = orjson.loads(token)
        except orjson.JSONDecodeError as exc:
            raise malformed(f"invalid JSON ({exc})") from None
        if name == "key":
            if not isinstance(value, str):
                raise malformed("expected an object with a string `key` (or `key_b64`)")
            try:
                self.key = ensure_relative_key(value)
            except InvalidKey as exc:
                raise malformed(str(exc)) from None
        elif name == "key_b64":
            try:
                self.key = ensure_relative_key(decode_key_b64(value))
            except (ValueError, InvalidKey) as exc:
                raise malformed(str(exc)) from None
        elif name == "value":
            self.data = orjson.dumps(value)
        elif name == "value_b64":
            raise malformed("`value_b64` must be a string")
        elif value is not None:  # ttl
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TTL:
                raise malformed(f"`ttl` must be a whole number of seconds, at most {MAX_TTL}")
            self.ttl = value

    def _base64(self, text: bytes) -> bytes:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise self.line.malformed(f"bad base64 in `value_b64` ({exc})") from None

    def result(self, streamed: bool = False) -> tuple[str, bytes | None, int | None]:
        """`(key, bytes, ttl)`, the bytes None when the value is being streamed (`streamed`)."""
        if self.key is None:
            raise self.line.malformed("expected an object with a string `key` (or `key_b64`)")
        if self.data is None and not streamed:
            raise self.line.malformed("needs `value` or `value_b64`")
        return self.key, self.data, self.ttl


def _unknown(name: str) -> str:
    shown = name if len(name) <= 40 else name[:40] + "..."
    return f"unknown field `{shown}` (a line holds `key` or `key_b64`, `value` or `value_b64`, and `ttl`)"


def _field_name(source: _Input, line: LongLine) -> str:
    import orjson

    try:
        token = source.string_token(line, _MAX_NAME_TEXT)
    except _TooLong as exc:  # no known name is this long: say which without reading it all
        head = exc.head[1:].decode("utf-8", "replace")
        raise line.malformed(_unknown(head + "...")) from None
    try:
        return orjson.loads(token)
    except orjson.JSONDecodeError as exc:
        raise line.malformed(f"invalid JSON ({exc})") from None


_CAPS = {"key": MAX_KEY_TEXT, "key_b64": MAX_KEY_TEXT, "ttl": _MAX_SCALAR_TEXT}


def _field_value(source: _Input, line: LongLine, name: str) -> bytes:
    if name == "key_b64" and source.peek() != _QUOTE:
        raise line.malformed("`key_b64` must be a string")
    if name == "key" and source.peek() != _QUOTE:
        raise line.malformed("expected an object with a string `key` (or `key_b64`)")
    cap = _CAPS.get(name, MAX_JSON_VALUE)
    try:
        return source.value_token(line, cap)
    except _TooLong:
        if name in KEY_FIELDS:
            raise line.malformed(f"`{name}` longer than {cap} bytes") from None
        if name == "ttl":
            raise line.malformed("`ttl` must be a whole number of seconds") from None
        raise line.malformed(
            f"`{name}` is JSON over {cap} bytes that is not a string: store it as a string or as `value_b64`"
        ) from None


# ---- load: a long line -----------------------------------------------------------------------------


def _fields(source: _Input, line: LongLine, fields: LineFields, stream: bool, first: bool) -> str | None:
    """Read `"name": value` pairs into `fields` up to the closing brace (consumed). With `stream`,
    return at the start of the first string `value`/`value_b64` (its opening quote), leaving it
    to be streamed; otherwise return None."""
    source.skip_space()
    if first and source.peek() == _CLOSE:
        source.pos += 1
        return None
    while True:
        source.skip_space()
        if source.peek() != _QUOTE:
            raise line.malformed("expected a field name")
        name = _field_name(source, line)
        fields.name(name)
        source.skip_space()
        if source.take() != _COLON:
            raise line.malformed("expected `:`")
        source.skip_space()
        if stream and name in VALUE_FIELDS and source.peek() == _QUOTE:
            return name
        fields.value(name, _field_value(source, line, name))
        source.skip_space()
        byte = source.take()
        if byte == _COMMA:
            continue
        if byte == _CLOSE:
            return None
        raise line.malformed("expected `,` or `}`")


def _line_start(source: _Input, line: LongLine) -> None:
    source.skip_space()
    if source.take() != _OPEN:
        raise line.malformed("expected an object with a string `key` (or `key_b64`)")


def parse_line(raw: bytes, number: int, name: str) -> tuple[str, bytes, int | None]:
    """Parse one dump line held whole into `(key, bytes, ttl)`, with the checks and messages of
    a streamed line.

    Raises:
        InvalidData: For a malformed line, naming it by `number`
    """
    source = _Input(lambda size: b"", raw)
    line = LongLine(source, number, name)
    fields = LineFields(line)
    _line_start(source, line)
    _fields(source, line, fields, stream=False, first=True)
    _line_end(source, line)
    key, data, ttl = fields.result()
    assert data is not None  # result() refuses a line without a value
    return key, data, ttl


def _line_end(source: _Input, line: LongLine) -> None:
    source.skip_space()
    byte = source.take()
    if byte not in (None, _NEWLINE):
        raise line.malformed("more text after the object")


class _StringReader:
    """The decoded bytes of a JSON string being read from a long line, as a binary reader.

    At the closing quote it calls `on_end` (which reads the rest of the line) before it reports
    the end, so an error there fails the write that reads from it.
    """

    def __init__(self, source: _Input, line: LongLine, on_end: Callable[[], None]) -> None:
        self.source = source
        self.line = line
        self.on_end = on_end
        self.done = False
        self._pending = b""
        if source.take() != _QUOTE:
            raise line.malformed("expected a string")

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` decoded bytes (all that is left for a negative size); b"" at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        while not self._pending and not self.done:
            self._pending = self._decode(max(size, 65536))
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    read1 = read

    def drain(self) -> None:
        """Read (and drop) the rest of the string and line."""
        while self.read(CHUNK):
            pass

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
                return _decode_segment(window[:end], line)
            if closing == 0:
                source.pos = pos + 1
                self.done = True
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
        while escape > 0 and window[escape - 1] == _BACKSLASH:  # the start of a run of backslashes
            escape -= 1
        if escape >= 6 and _LOW_SURROGATE.match(window, escape) and _HIGH_SURROGATE.match(window, escape - 6):
            escape -= 6  # the second half of a surrogate pair: keep the pair together
            while escape > 0 and window[escape - 1] == _BACKSLASH:
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


def _decode_segment(segment: bytes, line: LongLine) -> bytes:
    import orjson

    try:
        return orjson.loads(b'"' + segment + b'"').encode("utf-8")
    except (orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        why = str(exc).split(": line ", 1)[0]  # its position is within the piece, not the line
        raise line.malformed(f"invalid string ({why})") from None


class _Base64Reader:
    """The bytes of a base64 text read from another reader (a `_StringReader`), chunk by chunk."""

    def __init__(self, text: _StringReader, line: LongLine, on_end: Callable[[], None]) -> None:
        self.text = text
        self.line = line
        self.on_end = on_end
        self._rest = b""
        self._pending = b""
        self._ended = False

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` decoded bytes (all that is left for a negative size); b"" at the end."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        while not self._pending and not self._ended:
            chunk = self.text.read(CHUNK)
            data = self._rest + chunk
            if not chunk:
                self._ended = True
                cut = len(data)
            else:
                cut = len(data) - len(data) % 4
            self._rest = data[cut:]
            if cut:
                part = data[:cut]
                if not self._ended and b"=" in part[-4:]:
                    self._rest, part = part[-4:] + self._rest, part[:-4]  # padding only at the very end
                self._pending = self._decode(part)
            if self._ended:  # the value's last bytes decoded: now the rest of the line, as a whole line is read
                self.on_end()
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    read1 = read

    def drain(self) -> None:
        """Read (and drop) the rest of the value and line."""
        while self.read(CHUNK):
            pass

    def _decode(self, part: bytes) -> bytes:
        try:
            if not self._ended and b"=" in part:
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
    _line_start(source, line)
    streamed = _fields(source, line, fields, stream=True, first=True)
    _check_ttl(store, fields)
    if streamed is None:  # nothing to stream: an ordinary line, only long
        _line_end(source, line)
        key, data, ttl = fields.result()
        assert data is not None
        return _store_small(store, key, data, default_ttl if ttl is None else ttl, no_clobber)
    known = fields.key is not None
    ttl_before = fields.ttl

    def rest_of_line() -> None:
        source.skip_space()
        byte = source.take()
        if byte == _COMMA:
            _fields(source, line, fields, stream=False, first=False)
        elif byte != _CLOSE:
            raise line.malformed("expected `,` or `}`")
        _line_end(source, line)
        _check_ttl(store, fields)
        if known and fields.ttl != ttl_before and store.supports_ttl:
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


__all__ = [
    "DUMP_INLINE_BYTES",
    "STREAM_LINE_BYTES",
    "LineFields",
    "LongLine",
    "iter_dump_blocks",
    "iter_dump_lines",
    "load_long_line",
    "parse_line",
    "write_value_line",
]
