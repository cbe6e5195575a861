#!/usr/bin/env python
"""Kept for old habits: `python bench/run.py ARGS` is `python -m bench ARGS` (see bench/README.md)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
