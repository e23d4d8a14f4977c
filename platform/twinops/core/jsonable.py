"""Make data storable in a PostgreSQL jsonb column, which refuses NaN and infinities."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np


def json_plain(value: Any) -> Any:
    """Return value as plain JSON data: text keys, lists, Python numbers, ISO dates; NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_plain(v) for v in value]
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
