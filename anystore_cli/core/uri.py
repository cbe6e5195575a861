"""URI helpers: normalise, join and mask store URIs."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from anystore_cli.core.exceptions import InvalidUri

SCHEME_FILE = "file"
SCHEME_MEMORY = "memory"
SCHEME_REDIS = "redis"
SCHEME_REDISS = "rediss"

_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
_QUERY_SECRET_RE = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|secret|token|access_token|sslpassword|aws_secret_access_key)=)"
    r"(?P<pw>[^&#;\s]*)",
    re.IGNORECASE,
)


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
    """Replace any password in `uri` (and in text holding uris) with `***`: the `user:password@`
    part and secret query parameters such as `?password=`."""
    text = _PASSWORD_RE.sub(lambda m: m.group("head") + "***", str(uri))
    return _QUERY_SECRET_RE.sub(lambda m: m.group("head") + "***", text)


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
