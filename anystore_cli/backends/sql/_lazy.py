"""A module imported when one of its names is first used, so that SQLAlchemy loads only on the
paths that run a statement through it."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module `name` and imports it on first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # a module's names do not change: look each up once
        return value
