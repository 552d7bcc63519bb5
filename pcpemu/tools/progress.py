"""The one progress-bar line every long-running verb draws on stderr."""

from __future__ import annotations

__all__ = ["bar"]

WIDTH = 30


def bar(fraction: float | None, text: str) -> str:
    """``[#####-----] text``; just ``text`` when the fraction is unknown."""
    if fraction is None:
        return text
    fill = int(WIDTH * min(max(fraction, 0.0), 1.0))
    return f"[{'#' * fill}{'-' * (WIDTH - fill)}] {text}"
