"""URI helpers: normalise, join and mask store URIs."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from anystore_cli.errors import InvalidUri
from anystore_cli.util.secrets import looks_secret, text_name_pattern

SCHEME_FILE = "file"
SCHEME_MEMORY = "memory"
SCHEME_REDIS = "redis"
SCHEME_REDISS = "rediss"

BUCKET_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "r2", "cos"})
"""Object stores: the first segment after `scheme://` is a bucket (container) and must be there;
writes are atomic per object."""

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_NETLOC_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<netloc>[^/?#\s]*@)")
"""A uri's `scheme://` and its user info up to the last `@` before the path, as clients parse
it (`urlsplit` takes the netloc to the first `/`, `?` or `#`, then the user info up to its last
`@`): `redis://:p@ss@host` holds the password `p@ss`."""
_QUERY_SECRET_RE = re.compile(
    rf"(?P<head>(?:^|(?<=[?&;\s\"',({{]))(?:{text_name_pattern()})\s*[=:]\s*)(?P<pw>\"[^\"]*\"|'[^']*'|[^&#;,\s\"'`)}}]+)",
    re.IGNORECASE,
)
"""`name=value` (and `name: value`) pairs whose name says secret: query strings, connection
strings (`AccountKey=...;`), `key=value` options and JSON-ish text."""
_AUTH_SCHEME_RE = re.compile(r"(?P<head>\b(?:Bearer|Basic|Digest|Token)\s+)(?P<pw>[A-Za-z0-9._~+/=-]{4,})")
"""The credentials of an HTTP Authorization header value."""
_KNOWN_SECRETS: set[str] = set()
"""Secret values met in this process (see `register_secret`), masked wherever they appear."""


def register_secret(value: Any) -> None:
    """Remember a secret value (a password, a token) so that `mask_uri` masks it in any text,
    in whatever form it shows: as given, percent-decoded or percent-encoded."""
    if not isinstance(value, str) or len(value) < 3:
        return
    # a parser that stops the password at the first `@` (SQLAlchemy's) shows the rest as host
    parts = value.split("@") if "@" in value else []
    for form in (value, unquote(value), quote(value, safe=""), *parts):
        if len(form) >= 3:
            _KNOWN_SECRETS.add(form)


_UNUSUAL = re.compile(r"[@\s/?#]")
"""Characters that end a password early for some parser (or for the patterns of `mask_uri`)"""


def register_uri_secrets(uri: Any) -> None:
    """Remember the passwords of `uri` that `mask_uri`'s patterns alone could miss in some
    message: those holding `@`, spaces, `/`, `?` or `#`, raw or percent-decoded (see
    `register_secret`). Plain passwords are left to the patterns, so that a password equal to
    the user name or the database name does not mask those everywhere."""
    text = str(uri)
    passwords = []
    if get_scheme(text):  # the whole text is a uri: parse it as its client does (spaces and all)
        try:
            netloc = urlsplit(text).netloc
        except ValueError:
            netloc = ""
        _user, sep, password = netloc.rpartition("@")[0].partition(":")
        if sep:
            passwords.append(password)
    for match in _NETLOC_RE.finditer(text):
        userinfo = match.group("netloc")[:-1]  # the match ends at the last `@`
        _user, sep, password = userinfo.partition(":")
        if sep:
            passwords.append(password)
    if get_scheme(text) and "`" in text:
        from urllib.parse import parse_qsl

        # the patterns stop a `?password=` value at a backquote (messages quote uris in them)
        try:
            pairs = parse_qsl(urlsplit(text).query, keep_blank_values=True)
        except ValueError:
            pairs = []
        for name, value in pairs:
            if "`" in value and looks_secret(name):
                register_secret(value)
    for password in passwords:
        if _UNUSUAL.search(password) or _UNUSUAL.search(unquote(password)):
            register_secret(password)


def _mask_netloc(match: re.Match[str]) -> str:
    userinfo = match.group("netloc")[:-1]
    user, sep, _password = userinfo.partition(":")
    return match.group("head") + (f"{user}:***@" if sep else f"{userinfo}@")


def get_scheme(uri: str) -> str:
    """Return the scheme of `uri` (lower case), or "" for a plain path."""
    match = _SCHEME_RE.match(uri)
    if match is None or len(match.group(1)) == 1:  # "C:" is a drive, not a scheme
        return ""
    return match.group(1).lower()


def ensure_uri(uri: Any) -> str:
    """Normalise uri-like input to an absolute uri with a scheme.

    Example:
        ```python
        ensure_uri("s3://bucket") == "s3://bucket"
        ensure_uri("/tmp/foo") == "file:///tmp/foo"
        ensure_uri("-") == "-"
        ```

    Args:
        uri: A string, `pathlib.Path` or other path-like object

    Returns:
        An absolute uri (`file:///...` for local paths), or "-" for stdin/stdout

    Raises:
        InvalidUri: For empty input and open file objects (`io.BytesIO`, ...)
    """
    if isinstance(uri, PurePath) or hasattr(uri, "__fspath__"):
        uri = os.fspath(uri)
    elif not isinstance(uri, str) and (hasattr(uri, "read") or hasattr(uri, "write")):
        raise InvalidUri(f"An open file object is not a uri: `{uri!r}`")
    if uri is None or (isinstance(uri, str) and not uri.strip()):
        raise InvalidUri(f"Invalid uri: `{uri}`")
    uri = str(uri)
    if uri == "-":
        return uri
    if get_scheme(uri):
        return uri
    return "file://" + os.path.abspath(os.path.expanduser(uri))


def path_from_uri(uri: Any) -> Path:
    """Return the local `Path` of a `file://` uri or plain path."""
    uri = ensure_uri(uri)
    if not uri.startswith("file://"):
        raise InvalidUri(f"Not a local uri: `{mask_uri(uri)}`")
    return Path(uri[len("file://") :])


def join_uri(uri: Any, path: str) -> str:
    """Join a relative `path` onto a base `uri`.

    Example:
        ```python
        join_uri("s3://bucket/prefix", "foo/bar") == "s3://bucket/prefix/foo/bar"
        join_uri("/tmp", "foo") == "file:///tmp/foo"
        join_uri("s3://foo/bar.pdf", "../baz.txt") == "s3://foo/baz.txt"
        ```

    Args:
        uri: Base uri
        path: Relative path to join on

    Returns:
        The joined absolute uri
    """
    uri = ensure_uri(uri)
    if uri == "-":
        raise InvalidUri("Invalid uri: `-`")
    scheme, netloc, base, query, fragment = urlsplit(uri)
    segments = [s for s in base.split("/") if s]
    for part in str(path).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    joined = "/" + "/".join(segments)
    if not netloc:
        return f"{scheme}://{joined}"
    return urlunsplit((scheme, netloc, joined, query, fragment))


def mask_uri(uri: Any) -> str:
    """Replace any secret in `uri` (or in any text holding uris) with `***`: the password of a
    `user:password@` part (up to the last `@` of the host part, as clients parse it), the values
    of secret-named pairs (`?password=`, `AccountKey=...;`, `token: ...`), HTTP credentials
    (`Bearer ...`), and every secret value registered with `register_secret`."""
    text = str(uri)
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    text = _NETLOC_RE.sub(_mask_netloc, text)
    text = _QUERY_SECRET_RE.sub(lambda m: m.group("head") + "***", text)
    return _AUTH_SCHEME_RE.sub(lambda m: m.group("head") + "***", text)


def quote_key(key: str) -> str:
    """Percent-quote a key for use in an http(s) url path."""
    return quote(key, safe="/")


def unquote_key(key: str) -> str:
    """Reverse `quote_key`."""
    return unquote(key)


def clean_dict(data: Any) -> dict[str, Any]:
    """Return a dict with str keys and without `None` or empty values (recursively).

    `False` and `0` are kept. Non-mappings give an empty dict.
    """
    if not isinstance(data, dict):
        return {}
    result: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = clean_dict(value) or None
        elif value is not False and value != 0 and not value:
            value = None
        if value is not None:
            result[str(key)] = value
    return result
