"""Key validation and matching, in one place for every backend.

A key is a `/`-separated path relative to the store. Keys are literal: no percent-decoding,
so `%`, `_`, `*`, `?` and `[` are ordinary characters in a key. Prefixes are plain string
prefixes; globs use path semantics (`*` and `?` stay within one segment, `**` crosses
segments, `[...]` is a character class) and are matched against the whole key, or, given with a
prefix, against the key relative to the prefix taken as a folder (as the original library does:
`prefix="data", glob="*.json"` matches `data/a.json`, not `data/sub/b.json`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache

from anystore_cli.core.exceptions import InvalidKey

GLOB_CHARS = "*?["


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


@lru_cache(maxsize=64)
def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path glob to a regular expression matching whole keys.

    `*` matches within one segment, `**` across segments (`**/` also matches no segment),
    `?` one character other than `/`, `[...]`/`[!...]` a character class. Everything else
    matches literally.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = i + 1
            if end < n and pattern[end] in "!^":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 1
            if end >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                negate = body[:1] in ("!", "^")
                if negate:
                    body = body[1:]
                body = "".join(f"\\{ch}" if ch in "\\[]^&~|" else ch for ch in body)
                out.append(f"[{'^' if negate else ''}{body}]" if not negate else f"(?!/)[^{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def effective_glob(prefix: str | None, glob: str | None) -> str | None:
    """The glob matched against whole keys: `glob` relative to `prefix` (a folder) when both are given."""
    if not glob:
        return None
    glob = glob.lstrip("/")
    prefix = (prefix or "").strip("/")
    return f"{prefix}/{glob}" if prefix else glob


def make_key_filter(
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    glob: str | None = None,
) -> Callable[[str], bool]:
    """Return a predicate that is true for keys matching all given criteria."""
    prefix = normalize_prefix(prefix)
    exclude_prefix = normalize_prefix(exclude_prefix)
    glob = effective_glob(prefix, glob)
    matcher = glob_to_regex(glob).match if glob else None

    def _match(key: str) -> bool:
        if prefix and not key.startswith(prefix):
            return False
        if exclude_prefix and key.startswith(exclude_prefix):
            return False
        return matcher is None or matcher(key) is not None

    return _match


def filter_keys(
    keys: Iterable[str],
    prefix: str | None = None,
    exclude_prefix: str | None = None,
    glob: str | None = None,
) -> Iterator[str]:
    """Yield the keys of `keys` that match prefix, exclude_prefix and glob."""
    match = make_key_filter(prefix, exclude_prefix, glob)
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
