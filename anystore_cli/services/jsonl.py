"""The JSON lines of `dump` and `load`: reading and checking them, so that a large value never
sits whole in memory.

A dump line is `{"key": K, "value": TEXT}` (or `"value_b64"` for bytes that are not UTF-8,
`"key_b64"` for a name that is not, and an optional `"ttl"`). The common line is parsed in
bulk (`parse_dump_block`, `parse_dump_line`); any other goes through one walker over its fields
(`LineFields`), which checks each field as it comes: a line gives the same answer whether it is
read whole (`parse_line`) or streamed (`anystore_cli.services.load`). No field is held whole
beyond a bound: a field name longer than any known one is refused at once, as are a `key`
longer than `MAX_KEY_TEXT` and a `value` that is not a string (kept as compact JSON, so read
whole) longer than `MAX_JSON_VALUE`.

The input is split into lines in chunks (`iter_dump_blocks`): a line up to `STREAM_LINE_BYTES`
is handed over whole, a longer one as a `LongLine`, read as it is parsed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

import orjson

from anystore_cli.config.settings import MAX_TTL
from anystore_cli.errors import InvalidData, InvalidKey
from anystore_cli.util.keys import all_canonical, normalize_key

CHUNK = 1024 * 1024
"""Bytes read (and written) at a time"""
STREAM_LINE_BYTES = 4 * 1024 * 1024
"""`load`: a line longer than this is stored as a stream (shorter ones go through `put_many`)"""
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

QUOTE, BACKSLASH, COMMA, _COLON, _OPEN, CLOSE, _NEWLINE = b'"\\,:{}\n'
_SPACE = b" \t\r"
_SCALAR = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")
_NESTED_SPECIAL = re.compile(rb'["{}\[\]\n]')


class _TooLong(Exception):
    """A JSON token over the bound its reader was given (it was not read whole)."""

    def __init__(self, head: bytes) -> None:
        super().__init__()
        self.head = head


class LongLine:
    """A dump line longer than `STREAM_LINE_BYTES`, to be parsed and stored as it is read.

    It must be consumed (`load`) before the next line is read.
    """

    def __init__(self, source: LineInput, number: int, name: str) -> None:
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
            source = LineInput(read, leftover)
            yield number, LongLine(source, number, name)
            leftover = source.rest()
            if source.eof and not leftover:
                return


class LineInput:
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
        if self.peek() != QUOTE:
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
            while self.buf[end - 1 - slashes] == BACKSLASH:
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
        if byte == QUOTE:
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
            if byte == QUOTE:
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
        from anystore_cli.util.keys import decode_key_b64, ensure_relative_key

        malformed = self.line.malformed
        if name in VALUE_FIELDS and token[:1] == b'"':  # decoded as a streamed value is
            text = decode_segment(token[1:-1], self.line)
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


def _field_name(source: LineInput, line: LongLine) -> str:
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


def _field_value(source: LineInput, line: LongLine, name: str) -> bytes:
    if name == "key_b64" and source.peek() != QUOTE:
        raise line.malformed("`key_b64` must be a string")
    if name == "key" and source.peek() != QUOTE:
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


def read_fields(source: LineInput, line: LongLine, fields: LineFields, stream: bool, first: bool) -> str | None:
    """Read `"name": value` pairs into `fields` up to the closing brace (consumed). With `stream`,
    return at the start of the first string `value`/`value_b64` (its opening quote), leaving it
    to be streamed; otherwise return None."""
    source.skip_space()
    if first and source.peek() == CLOSE:
        source.pos += 1
        return None
    while True:
        source.skip_space()
        if source.peek() != QUOTE:
            raise line.malformed("expected a field name")
        name = _field_name(source, line)
        fields.name(name)
        source.skip_space()
        if source.take() != _COLON:
            raise line.malformed("expected `:`")
        source.skip_space()
        if stream and name in VALUE_FIELDS and source.peek() == QUOTE:
            return name
        fields.value(name, _field_value(source, line, name))
        source.skip_space()
        byte = source.take()
        if byte == COMMA:
            continue
        if byte == CLOSE:
            return None
        raise line.malformed("expected `,` or `}`")


def line_start(source: LineInput, line: LongLine) -> None:
    source.skip_space()
    if source.take() != _OPEN:
        raise line.malformed("expected an object with a string `key` (or `key_b64`)")


def parse_line(raw: bytes, number: int, name: str) -> tuple[str, bytes, int | None]:
    """Parse one dump line held whole into `(key, bytes, ttl)`, with the checks and messages of
    a streamed line.

    Raises:
        InvalidData: For a malformed line, naming it by `number`
    """
    source = LineInput(lambda size: b"", raw)
    line = LongLine(source, number, name)
    fields = LineFields(line)
    line_start(source, line)
    read_fields(source, line, fields, stream=False, first=True)
    line_end(source, line)
    key, data, ttl = fields.result()
    assert data is not None  # result() refuses a line without a value
    return key, data, ttl


def line_end(source: LineInput, line: LongLine) -> None:
    source.skip_space()
    byte = source.take()
    if byte not in (None, _NEWLINE):
        raise line.malformed("more text after the object")


def decode_segment(segment: bytes, line: LongLine) -> bytes:
    try:
        return orjson.loads(b'"' + segment + b'"').encode("utf-8")
    except (orjson.JSONDecodeError, UnicodeEncodeError) as exc:
        why = str(exc).split(": line ", 1)[0]  # its position is within the piece, not the line
        raise line.malformed(f"invalid string ({why})") from None


def parse_dump_line(raw: bytes, number: int, source: str) -> tuple[str, bytes, int | None] | None:
    """Parse one `dump` line into `(key, bytes, ttl)`; None for a blank line; `InvalidData` naming the line."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        if not raw.strip():
            return None
        record = None
    # the common line, `{"key": K, "value": TEXT}` with a canonical key, checked inline: this
    # runs once per key of a load, and the field by field checks cost several times the JSON
    # parse. Its bytes must be what orjson writes for it: a repeated field, which the parse
    # drops, then shows as a difference
    if type(record) is dict and len(record) == 2:
        key = record.get("key")
        value = record.get("value")
        if type(key) is str and type(value) is str and key and key[0] != "/":
            try:
                canonical = normalize_key(key) is key
            except InvalidKey:
                canonical = False  # the full checks say what is wrong
            if canonical and orjson.dumps(record) == raw:
                return key, value.encode("utf-8"), None
    return parse_line(raw, number, source)


def parse_dump_block(lines: list[bytes]) -> list[tuple[str, bytes]] | None:
    """Parse lines that are all the common dump line, `{"key": K, "value": TEXT}` with a
    canonical key and nothing around the braces, in one JSON parse and a few C-level scans;
    None when any line is not (those lines take `parse_dump_line`, which says what is wrong).

    The lines are parsed as one JSON array joined on `,` and a newline. A raw newline cannot
    stand inside a JSON string, so no string runs from one line into the next; every line but
    the last ending in `}` then means no object runs across lines either (the common line's
    values are strings: its only `}` is its own last byte), and as many objects as lines means
    one a line."""
    text = b",\n".join(lines)
    if text[-1:] != b"}" or text.count(b"},\n") != len(lines) - 1:
        return None
    try:
        records = orjson.loads(b"[" + text + b"]")
        if len(records) != len(lines) or sum(map(len, records)) != 2 * len(records):
            return None
        keys = [record["key"] for record in records]
        values = [record["value"] for record in records]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    if set(map(type, values)) != {str} or not all_canonical(keys):
        return None
    if orjson.dumps(records) != b"[" + b",".join(lines) + b"]":
        return None  # a repeated field (which the parse drops), or written otherwise than orjson does
    return list(zip(keys, [value.encode("utf-8") for value in values], strict=True))
