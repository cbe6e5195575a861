"""Key validation and matching, in one place for every backend.

A key is a `/`-separated path relative to the store. Keys are literal: no percent-decoding,
so `%`, `_`, `*`, `?` and `[` are ordinary characters in a key. Prefixes are plain string
prefixes; globs use path semantics (`*` and `?` stay within one segment, `**` crosses
segments, `[...]` is a character class) and are matched against the whole key, or, given with a
prefix, against the key relative to the prefix taken as a folder (as the original library does:
`prefix="data", glob="*.json"` matches `data/a.json`, not `data/sub/b.json`).

Filter rules (`--include GLOB` / `--exclude GLOB`) work as rclone's: the rules are tried in
order and the first whose glob matches decides; a key that matches no rule is kept when every
rule is an exclude, and left out when any rule is an include. A rule's glob that starts with
`/` is matched against the whole key; otherwise against the whole key or any tail of it that
starts after a `/` (so `*.tmp` matches `a/b.tmp`); a glob that ends with `/` matches everything
below that folder (`cache/` is `cache/**`).

A shard `(I, N)` keeps the keys whose stable hash is I modulo N: the first 8 bytes of the
SHA-1 of the key's UTF-8 bytes, read as a big-endian number (`printf %s KEY | sha1sum | cut
-c1-16` in a shell). N processes that each take one shard cover every key exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from anystore_cli.errors import InvalidData, InvalidKey

GLOB_CHARS = "*?["
_SURROGATES = re.compile("[\udc80-\udcff]")


def normalize_key(key: object) -> str:
    """Return the canonical form of `key`, or raise `InvalidKey`.

    Leading and trailing slashes, empty and `.` segments are dropped (a key is relative to its
    store). A key that is empty afterwards, holds a `..` segment or a NUL byte is refused, so
    no key can reach outside its store.

    Args:
        key: The key as given by the caller (str or path-like)

    Returns:
        The normalised key

    Raises:
        InvalidKey: If the key is empty, contains `..` or a NUL byte
    """
    text = key if type(key) is str else str(key)
    if (  # the common case, already canonical: no empty, `.` or `..` segment, no NUL
        text
        and text[0] not in "/."
        and text[-1] != "/"
        and "//" not in text
        and "/." not in text
        and "\x00" not in text
    ):
        return text
    if "\x00" in text:
        raise InvalidKey(f"Invalid key `{text!r}`: NUL byte")
    segments = [s for s in text.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidKey(f"Invalid key `{text}`: `..` segment")
    if not segments:
        raise InvalidKey(f"Invalid key `{text}`: empty")
    return "/".join(segments)


def all_canonical(keys: list[Any]) -> bool:
    """Tell, in a few C-level string scans, whether every item of `keys` is a `str` already in
    the canonical form `normalize_key` returns it unchanged (the bulk paths' common case). A
    False says only that some key needs the per-key checks, not that one is invalid.

    The keys are joined on NUL, which no valid key holds: a separator count that is off means a
    NUL inside a key, and an empty, `/`-led, `.`-led or `/`-ended key, or an empty or `.`-led
    segment, shows as a pair of characters in the joined text."""
    if not keys:
        return True
    try:
        text = "\x00" + "\x00".join(keys) + "\x00"
    except TypeError:  # not all str
        return False
    return (
        text.count("\x00") == len(keys) + 1
        and "\x00\x00" not in text
        and "\x00/" not in text
        and "\x00." not in text
        and "/\x00" not in text
        and "//" not in text
        and "/." not in text
    )


def is_canonical_key(key: str) -> bool:
    """Tell whether `key` is a valid key in its canonical form, as listings must yield it: a
    name such as `../x`, `a//b` or `/a` in an archive or an index page cannot be read back by
    that name."""
    try:
        return normalize_key(key) == key
    except InvalidKey:
        return False


def ensure_relative_key(key: str) -> str:
    """Validate a key given on the command line: like `normalize_key`, but absolute keys are refused.

    Raises:
        InvalidKey: If the key is absolute, empty, contains `..` or a NUL byte
    """
    if key.startswith("/"):
        raise InvalidKey(f"Invalid key `{key}`: absolute")
    return normalize_key(key)


def normalize_prefix(prefix: str | None) -> str:
    """Return the canonical form of a key prefix, the same on every backend.

    A prefix is a literal start of keys, so only its complete segments are normalised as keys
    are: leading and repeated slashes and `.` segments go (`/`, `./` and `''` all become `''`,
    the whole store; `./a//b/` becomes `a/b/`), the last, partial segment stays as given
    (`a/.` matches `a/.hidden`). `..` segments stay, and match no key.
    """
    if not prefix:
        return ""
    head, sep, last = prefix.rpartition("/")
    if not sep:
        return prefix
    segments = [s for s in head.split("/") if s not in ("", ".")]
    return "/".join(segments) + "/" + last if segments else last


def has_glob(pattern: str) -> bool:
    """Tell whether `pattern` holds glob syntax."""
    return any(c in pattern for c in GLOB_CHARS)


def glob_literal_prefix(pattern: str) -> str:
    """The literal start of a glob (up to its first glob character), for server-side narrowing."""
    for index, char in enumerate(pattern):
        if char in GLOB_CHARS:
            return pattern[:index]
    return pattern


Token = tuple[str, str]
"""One element of a glob: `(kind, text)`; kinds `lit` (one character), `one` (`?`), `cls` (a
`[...]` class, as regex text), `star` (`*`), `any` (`**`), `dirs` (`**/`)"""

_QUANTIFIERS = ("star", "any", "dirs")
_TOKEN_REGEX = {"one": "[^/]", "star": "[^/]*", "any": ".*", "dirs": "(?:.*/)?"}


@lru_cache(maxsize=256)
def glob_tokens(pattern: str) -> tuple[Token, ...]:
    """Split a path glob into its elements (see `Token`)."""
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append(("dirs", ""))
                    i += 1
                else:
                    out.append(("any", ""))
                continue
            out.append(("star", ""))
        elif c == "?":
            out.append(("one", ""))
        elif c == "[":
            end = i + 1
            if end < n and pattern[end] in "!^":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 1
            if end >= n:
                out.append(("lit", c))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = "".join(f"\\{ch}" if ch in "\\[]^&~|" else ch for ch in body)
                out.append(("cls", f"(?!/)[^{body}]" if negate else f"[{body}]"))
                i = end
        else:
            out.append(("lit", c))
        i += 1
    return tuple(out)


@lru_cache(maxsize=64)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob to a regular expression matching whole keys.

    `*` matches within one segment, `**` across segments (`**/` also matches no segment),
    `?` one character other than `/`, `[...]`/`[!...]` a character class. Everything else
    matches literally. A backtracking engine takes time polynomial in the key's length to the
    power of the number of `*`s on a key that almost matches: `glob_matcher` is the safe face.
    """
    parts = [
        re.escape(text) if kind == "lit" else text if kind == "cls" else _TOKEN_REGEX[kind]
        for kind, text in glob_tokens(pattern)
    ]
    try:
        return re.compile("".join(parts) + r"\Z", re.DOTALL)
    except re.error as exc:  # a class such as `[z-a]`
        raise InvalidData(f"Invalid glob `{pattern}`: {exc}") from None


@lru_cache(maxsize=64)
def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """A predicate telling whether a whole key matches the path glob `pattern` (the semantics
    of `glob_to_regex`), in time linear in the key's length for any pattern.

    A pattern with at most two `*`/`**` runs goes to the regular expression (at worst quadratic
    backtracking, fast in C); one with more runs through a set-of-states automaton that reads
    each character of the key once, so `*?*?*?...` cannot stall a listing.
    """
    tokens = glob_tokens(pattern)
    regex = glob_to_regex(pattern)  # also checks the pattern
    if sum(kind in _QUANTIFIERS for kind, _ in tokens) <= 2:
        return lambda key: regex.match(key) is not None
    return _Automaton(tokens).matches


class _Automaton:
    """A Thompson automaton over glob tokens: state `i` stands before token `i`; state
    `len(tokens) + 1 + i` inside the `.*` of a `**/` token `i`, waiting for its `/`."""

    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens
        self.end = len(tokens)
        self.classes = {i: re.compile(text, re.DOTALL) for i, (kind, text) in enumerate(tokens) if kind == "cls"}
        self.start = self._closure({0})
        self._steps: dict[tuple[frozenset[int], str], frozenset[int]] = {}

    def _closure(self, states: set[int]) -> frozenset[int]:
        todo = list(states)
        seen = set(states)
        while todo:
            state = todo.pop()
            if state < self.end and self.tokens[state][0] in _QUANTIFIERS and state + 1 not in seen:
                seen.add(state + 1)
                todo.append(state + 1)
        return frozenset(seen)

    def _step(self, states: frozenset[int], char: str) -> frozenset[int]:
        after: set[int] = set()
        inside = self.end + 1
        for state in states:
            if state >= inside:  # within the `.*` of `**/`
                after.add(state)
                if char == "/":
                    after.add(state - inside + 1)
                continue
            if state == self.end:
                continue
            kind, text = self.tokens[state]
            if kind == "lit":
                if char == text:
                    after.add(state + 1)
            elif kind == "one":
                if char != "/":
                    after.add(state + 1)
            elif kind == "cls":
                if self.classes[state].match(char):
                    after.add(state + 1)
            elif kind == "star":
                if char != "/":
                    after.add(state)
            elif kind == "any":
                after.add(state)
            else:  # dirs
                after.add(inside + state)
                if char == "/":
                    after.add(state + 1)
        return self._closure(after)

    def matches(self, key: str) -> bool:
        """Tell whether the whole of `key` matches."""
        steps = self._steps
        if len(steps) > 65536:  # the remembered steps are a cache, never a way to grow without end
            steps.clear()
        states = self.start
        for char in key:
            after = steps.get((states, char))
            if after is None:
                after = steps[(states, char)] = self._step(states, char)
            states = after
            if not states:
                return False
        return self.end in states


def effective_glob(prefix: str | None, glob: str | None) -> str | None:
    """The glob matched against whole keys: `glob` relative to `prefix` (a folder) when both are given."""
    if not glob:
        return None
    glob = glob.lstrip("/")
    prefix = (prefix or "").strip("/")
    return f"{prefix}/{glob}" if prefix else glob


Shard = tuple[int, int]
"""`(index, count)`: shard `index` (0-based) of `count`"""


def parse_shard(value: str | Shard | None) -> Shard | None:
    """Parse a shard given as `"I/N"` (or an `(I, N)` pair) and check that 0 <= I < N.

    Raises:
        InvalidData: If the shard is malformed or out of range
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        index_text, sep, count_text = value.partition("/")
        try:
            if not sep:
                raise ValueError
            index, count = int(index_text.strip()), int(count_text.strip())
        except ValueError:
            raise InvalidData(f"Invalid shard `{value}`: expected I/N, as 0/4") from None
    else:
        try:
            index, count = (int(part) for part in value)
        except (TypeError, ValueError):
            raise InvalidData(f"Invalid shard `{value!r}`: expected (index, count)") from None
    if count < 1 or not 0 <= index < count:
        raise InvalidData(f"Invalid shard `{index}/{count}`: need 0 <= I < N")
    return index, count


def shard_of(key: str, count: int) -> int:
    """The shard (0-based, of `count`) that `key` belongs to: stable across machines and runs."""
    import hashlib

    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count


def rule_glob(pattern: str) -> str:
    """An include/exclude glob as rclone anchors it, as a glob on whole keys (see the module's docstring)."""
    if pattern.endswith("/"):
        pattern += "**"
    if pattern.startswith("/"):
        return pattern.lstrip("/")
    return "**/" + pattern


def rule_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile an include/exclude glob as rclone anchors it (see the module's docstring)."""
    return glob_to_regex(rule_glob(pattern))


def filter_rules(
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    filters: Iterable[str] | None = None,
) -> list[tuple[bool, str]]:
    """The ordered `(keep, glob)` rules: `filters` first (`"+ GLOB"` keeps, `"- GLOB"` leaves out,
    as rclone's `--filter`), then the includes, then the excludes (rclone's order for its
    separate flags).

    Raises:
        InvalidData: If a filter rule does not start with `+ ` or `- `
    """
    rules: list[tuple[bool, str]] = []
    for rule in filters or ():
        sign, _, glob = rule.partition(" ")
        if sign not in ("+", "-") or not glob:
            raise InvalidData(f"Invalid filter rule `{rule}`: expected `+ GLOB` or `- GLOB`")
        rules.append((sign == "+", glob))
    rules += [(True, glob) for glob in ([include] if isinstance(include, str) else include or ())]
    rules += [(False, glob) for glob in ([exclude] if isinstance(exclude, str) else exclude or ())]
    return rules


def make_key_filter(
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    glob: str | None = None,
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    shard: str | Shard | None = None,
    filters: Iterable[str] | None = None,
) -> Callable[[str], bool]:
    """Return a predicate that is true for keys matching all given criteria.

    Args:
        prefix: Only keys starting with this string
        exclude_prefix: Leave out keys starting with this string
        glob: Only keys matching this path glob (relative to `prefix` when both are given)
        include: Globs of keys to keep (rclone's `--include`)
        exclude: Globs of keys to leave out (rclone's `--exclude`)
        shard: Only the keys of shard `"I/N"` (or `(I, N)`)
        filters: Ordered rules `"+ GLOB"` / `"- GLOB"`, tried before `include` and `exclude`

    Raises:
        InvalidData: If the shard or a filter rule is malformed
    """
    prefix = normalize_prefix(prefix)
    exclude_prefix = normalize_prefix(exclude_prefix)
    glob = effective_glob(prefix, glob)
    matcher = glob_matcher(glob) if glob else None
    rules = [(keep, glob_matcher(rule_glob(pattern))) for keep, pattern in filter_rules(include, exclude, filters)]
    unmatched = not any(keep for keep, _ in rules)  # only excludes: keep what none matched
    sharded = parse_shard(shard)

    def _match(key: str) -> bool:
        if prefix and not key.startswith(prefix):
            return False
        if exclude_prefix and key.startswith(exclude_prefix):
            return False
        if matcher is not None and not matcher(key):
            return False
        if rules:
            for keep, rule in rules:
                if rule(key):
                    if not keep:
                        return False
                    break
            else:
                if not unmatched:
                    return False
        return sharded is None or shard_of(key, sharded[1]) == sharded[0]

    return _match


def has_extra_filters(
    include: Iterable[str] | str | None = None,
    exclude: Iterable[str] | str | None = None,
    shard: str | Shard | None = None,
    filters: Iterable[str] | None = None,
) -> bool:
    """Tell whether any of the filters beyond prefix/exclude_prefix/glob is given."""
    return bool(include or exclude or filters or (shard is not None and shard != ""))


def filter_keys(
    keys: Iterable[str],
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    glob: str | None = None,
    **filters: Any,
) -> Iterator[str]:
    """Yield the keys of `keys` that match prefix, exclude_prefix and glob (and the
    `include`, `exclude`, `shard`, `filters` of `make_key_filter`)."""
    match = make_key_filter(prefix, exclude_prefix, glob, **filters)
    return (key for key in keys if match(key))


def listing_prefix(prefix: str | None = None, glob: str | None = None) -> str:
    """The longest literal string every matching key starts with (for server-side listing)."""
    glob = effective_glob(prefix, glob)
    prefix = (prefix or "").lstrip("/")
    if glob:
        literal = glob_literal_prefix(glob)
        if literal.startswith(prefix):
            return literal
        if prefix.startswith(literal):
            return prefix
        return prefix if len(prefix) > len(literal) else literal
    return prefix


def is_text_key(key: str) -> bool:
    """Tell whether a key's name is UTF-8 (names that are not hold surrogate escapes, as
    Python decodes file names: `os.fsdecode`)."""
    return _SURROGATES.search(key) is None


def key_b64(key: str) -> str:
    """The exact bytes of a key's name, base64-encoded."""
    import base64

    return base64.b64encode(key.encode("utf-8", "surrogateescape")).decode("ascii")


def decode_key_b64(encoded: Any) -> str:
    """The key named by base64 bytes (`key_b64`), undecodable bytes as surrogate escapes.

    Raises:
        ValueError: If `encoded` is not a base64 string
    """
    import base64
    import binascii

    if not isinstance(encoded, str):
        raise ValueError("`key_b64` must be a string")
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bad base64 in `key_b64` ({exc})") from None
