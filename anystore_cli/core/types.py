"""Type aliases of the library (the names of anystore's `types` module)."""

from __future__ import annotations

from collections.abc import Generator
from os import PathLike
from pathlib import Path
from typing import Any, AnyStr, TypeAlias

Uri: TypeAlias = PathLike | Path | str
"""A path or uri"""
Value: TypeAlias = str | bytes
"""A value as a backend stores it"""
SDict: TypeAlias = dict[str, Any]
"""A dict with string keys"""

StrGenerator: TypeAlias = Generator[str, None, None]
BytesGenerator: TypeAlias = Generator[bytes, None, None]
AnyStrGenerator: TypeAlias = Generator[AnyStr, None, None]
SDictGenerator: TypeAlias = Generator[SDict, None, None]


def __getattr__(name: str) -> Any:
    # `Model` (a pydantic model class) imports pydantic only when it is asked for
    if name == "Model":
        from pydantic import BaseModel

        model: Any = type[BaseModel]
        globals()["Model"] = model
        return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [  # noqa: F822 - `Model` comes from __getattr__
    "AnyStrGenerator",
    "BytesGenerator",
    "Model",
    "SDict",
    "SDictGenerator",
    "StrGenerator",
    "Uri",
    "Value",
]
