"""Text for people: sizes in their units."""

from __future__ import annotations


def human_size(size: int | None) -> str:
    """A size for people: `1.5 MiB`."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(size)  # pragma: no cover
