"""CSV cells a spreadsheet shows as text: a cell it would run as a formula gets a quote in front."""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting with these as a formula


def csv_cell(value: Any) -> str:
    """Return a value as CSV text; text starting with = + - @ tab or CR gets a quote in front (never a formula)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)  # a number, never a formula: -1.5 stays a number
    text = str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text
