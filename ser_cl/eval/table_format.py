"""How the report's tables write values: swept values as in TOML, ``mean +- std`` cells, aligned
Markdown tables and file-name-safe names. Shared by ``report``, ``plots`` and ``compare``; imports
nothing of the package."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence


def format_value(value: Any) -> str:
    """Swept values as written in TOML: 0.1 -> "0.1", 1e-05 -> "1e-05", True -> "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def format_sweep(sweep: Dict[str, Any]) -> str:
    return "; ".join(f"{key}={format_value(sweep[key])}" for key in sorted(sweep))


def pm(mean: Optional[float], std: Optional[float], digits: int) -> str:
    """``mean +- std`` with ``digits`` decimals; "-" when there is no mean."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def pm_folds(mean: Optional[float], std: Optional[float], n_folds: int) -> str:
    """Like ``pm`` with 2 digits, but a single fold's value alone (its std is 0 by definition)."""
    if mean is None:
        return "-"
    return f"{mean:.2f}" if n_folds <= 1 else pm(mean, std, 2)


def md_table(header: List[str], body: List[List[str]], right: Sequence[bool]) -> List[str]:
    """Aligned GitHub Markdown table (also readable as plain text)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body)]
    widths = [max(width, 3) for width in widths]

    def line(cells: List[str]) -> str:
        padded = [cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"
    return [line(header), rule] + [line(cells) for cells in body]


def safe_name(text: str) -> str:
    """A file-name-safe version of an experiment/variant/key name."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "_"
