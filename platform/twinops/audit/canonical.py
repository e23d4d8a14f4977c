"""The canonical byte encoding of an audit event: what is stored is exactly what is hashed.

Canonical JSON: sorted keys, no whitespace, UTF-8 (non-ASCII kept as is), floats as Python's shortest round-trip
repr (so -0.0, 1e+20 and 1.0000000000000002e+16 come back bit for bit). A value that cannot be stored this way
(NaN, infinity, NUL characters, which PostgreSQL refuses in text and jsonb, unpaired surrogates) is refused with a
ValueError naming the field, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.utils.duration import duration_iso_string

GENESIS_SHA256 = "0" * 64
SCHEME = 2  # hash scheme of new events: sha256(prev_sha256 + canonical text); scheme 1 (legacy) hashed the columns


def canonical_dumps(value: Any) -> str:
    """Return the canonical JSON text of plain JSON data (see the module docstring)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_around_id(fields: dict[str, Any]) -> tuple[str, str]:
    """Return the canonical text of `fields` plus an "id" as the two parts around the id's digits.

    `prefix + str(id) + suffix == canonical_dumps({**fields, "id": id})` for every int id: the id is given only
    once the chain lock is held, and the text around it can be made before.
    """
    low = {k: v for k, v in fields.items() if k < "id"}
    high = {k: v for k, v in fields.items() if k > "id"}
    head = canonical_dumps(low)[1:-1]
    tail = canonical_dumps(high)[1:-1]
    return "{" + head + ("," if head else "") + '"id":', ("," if tail else "") + tail + "}"


def storable(value: Any, *, field: str) -> Any:
    """Return value as plain JSON data (dates as ISO text, numpy as Python); raise ValueError naming a bad part."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, np.generic):
        return storable(value.item(), field=field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit field {field} is {value!r}, which cannot be stored; give a finite number or None")
        return value
    if isinstance(value, str):
        return _text(value, field=field)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = _text(k if isinstance(k, str) else str(storable(k, field=field)), field=f"{field} key")
            if key in out:
                raise ValueError(f"audit field {field} has the key {key!r} twice once keys are made text")
            out[key] = storable(v, field=f"{field}.{key}")
        return out
    if isinstance(value, list | tuple | np.ndarray):
        return [storable(v, field=f"{field}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, date | time):  # datetimes too
        return value.isoformat()
    if isinstance(value, timedelta):
        return duration_iso_string(value)
    if isinstance(value, Decimal | uuid.UUID):  # as text, like Django's JSON encoder: a Decimal keeps its digits
        return _text(str(value), field=field)
    raise ValueError(f"audit field {field} holds a {type(value).__name__}, which is not JSON data")


def _text(value: str, *, field: str) -> str:
    if "\x00" in value:
        raise ValueError(f"audit field {field} contains a NUL character, which PostgreSQL cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"audit field {field} contains an unpaired surrogate, which is not UTF-8 text") from None
    return value


def event_sha256(*, prev_sha256: str, canonical: str) -> str:
    """Return the SHA-256 (hex) of a scheme-2 event: previous hash + the event's canonical JSON, in UTF-8."""
    return hashlib.sha256((prev_sha256 + canonical).encode("utf-8")).hexdigest()
