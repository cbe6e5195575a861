"""Small helpers of the library (the names of anystore's `util` module).

Uri and checksum functions are those of `anystore_cli.util.uri` and `anystore_cli.util.checksum`;
this module gathers them under the original names and adds the few helpers that live only here.
Uris are never percent-decoded (the original unquotes them): a key or path holding `%20` stays
as it is, so that what is written is what is read.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from anystore_cli.errors import InvalidUri
from anystore_cli.util.checksum import (
    DEFAULT_HASH_ALGORITHM,
    make_checksum,
    make_data_checksum,
    make_signature_key,
)
from anystore_cli.util.uri import SCHEME_FILE, SCHEME_MEMORY, SCHEME_REDIS, clean_dict, get_scheme, join_uri
from anystore_cli.util.uri import ensure_uri as _ensure_uri

SCHEME_S3 = "s3"

__all__ = [
    "DEFAULT_HASH_ALGORITHM",
    "SCHEME_FILE",
    "SCHEME_MEMORY",
    "SCHEME_REDIS",
    "SCHEME_S3",
    "clean_dict",
    "ensure_uri",
    "get_extension",
    "join_relpaths",
    "join_uri",
    "make_checksum",
    "make_data_checksum",
    "make_signature_key",
    "model_dump",
    "name_from_uri",
    "path_from_uri",
    "rm_rf",
]


def ensure_uri(uri: Any, http_unquote: bool | None = True) -> str:
    """Normalize uri-like input to an absolute uri with a scheme.

    Example:
        ```python
        ensure_uri("s3://example.com") == "s3://example.com"
        ensure_uri("/foo") == "file:///foo"
        ensure_uri("-") == "-"
        ```

    Args:
        uri: A string, `pathlib.Path` or other path-like object
        http_unquote: Accepted for compatibility; uris are never percent-decoded here

    Returns:
        An absolute uri (`file:///...` for local paths), or "-" for stdin/stdout

    Raises:
        ValueError: For empty input and open file objects (`InvalidUri` is a `ValueError`)
    """
    return _ensure_uri(uri)


def path_from_uri(uri: Any) -> Path:
    """Return the path part of any uri as an absolute `pathlib.Path`.

    Example:
        ```python
        path_from_uri("/foo/bar") == Path("/foo/bar")
        path_from_uri("file:///foo/bar") == Path("/foo/bar")
        path_from_uri("s3://foo/bar") == Path("/foo/bar")
        path_from_uri("https://host/bar") == Path("/host/bar")
        ```

    For remote uris the host (or bucket) is the first path segment, as in the original.

    Args:
        uri: A uri or path

    Returns:
        The path
    """
    uri = ensure_uri(uri)
    scheme = get_scheme(uri)
    if not scheme:
        return Path("/" + uri.lstrip("/"))
    rest = uri[len(scheme) + 1 :]
    if rest.startswith("//"):
        rest = rest[2:]
    return Path("/" + rest.lstrip("/"))


def name_from_uri(uri: Any) -> str:
    """Return the file name (last path segment) of a uri: `name_from_uri("s3://a/b.txt") == "b.txt"`."""
    return path_from_uri(uri).name


def join_relpaths(*parts: str) -> str:
    """Join relative path segments, stripping leading and trailing `/`.

    Example:
        ```python
        join_relpaths("/a/b/c/", "d/e") == "a/b/c/d/e"
        ```
    """
    return "/".join(str(part).strip("/") for part in parts if part).strip("/")


def get_extension(uri: Any) -> str | None:
    """Return the lower-case file extension of a uri without the dot, or None.

    Example:
        ```python
        get_extension("foo/bar.TXT") == "txt"
        get_extension("foo/bar") is None
        ```
    """
    if not isinstance(uri, (str, os.PathLike)):
        return None
    path = urlsplit(str(uri)).path if get_scheme(str(uri)) else str(uri)
    ext = os.path.splitext(path)[1]
    return ext[1:].lower() or None


def rm_rf(uri: Any) -> None:
    """Remove a local file or folder tree like `rm -rf`, ignoring errors."""
    try:
        path = Path(uri[len("file://") :]) if isinstance(uri, str) and uri.startswith("file://") else Path(uri)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except (OSError, TypeError, ValueError, InvalidUri):
        pass


def model_dump(obj: Any) -> dict[str, Any]:
    """Dump a pydantic model to a JSON-ready dict, by alias."""
    return obj.model_dump(by_alias=True, mode="json")
