"""Parse HTTP batch bodies (JSON or CSV) into RawBatches; type errors become a list of problems (index, field)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from twinops.telemetry import conf
from twinops.telemetry.batch import NO_VALUE, HistoryFileError, HistoryTooLargeError, RawBatch, Rejection
from twinops.telemetry.files import history_reader_open, timestamps_parse


class BatchFormatError(ValueError):
    """The request body is malformed or has values of the wrong type: nothing was stored."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.problems = problems


class BatchTooLargeError(BatchFormatError):
    """The body holds more rows or expands to more bytes than the API accepts: nothing was stored."""


def _number(text: str) -> float:
    """Read a JSON number as a double; one no double can hold (1e400, a 400-digit integer) is an error."""
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 24 else f"{text[:12]}…({len(text)} characters)"
        raise ValueError(f"number {shown} is out of range: a sample value must fit a double (about ±1.8e308)")
    return value


def json_batch_parse(body: bytes) -> RawBatch:
    """Parse `{"samples": [{"tag": str, "ts": ISO-8601 str, "value": number|string|null}, ...]}` (index 1-based)."""
    try:
        payload = json.loads(body, parse_int=_number, parse_float=_number)
    except RecursionError:
        raise BatchFormatError(
            "malformed JSON: nested too deeply", [{"index": None, "field": None, "reason": "nested too deeply"}]
        ) from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, a number out of range
        raise BatchFormatError(f"malformed JSON: {e}", [{"index": None, "field": None, "reason": str(e)}]) from None
    samples = payload.get("samples") if isinstance(payload, dict) else None
    if not isinstance(samples, list):
        raise BatchFormatError(
            "expected an object with a list 'samples'",
            [{"index": None, "field": "samples", "reason": "missing or not a list"}],
        )
    limits = conf.api_limits()
    if len(samples) > limits.max_rows:
        reason = f"more than {limits.max_rows} samples (the limit, {limits.rows_variable}); send smaller batches"
        raise BatchTooLargeError(f"batch too large: {reason}", [{"index": None, "field": "samples", "reason": reason}])
    problems: list[dict[str, Any]] = []
    records: list[tuple[Any, Any, Any]] = []
    for i, item in enumerate(samples, start=1):
        if not isinstance(item, dict):
            problems.append({"index": i, "field": None, "reason": "not an object"})
            continue
        tag, ts, value = item.get("tag"), item.get("ts"), item.get("value")
        if not isinstance(tag, str) or not tag:
            problems.append({"index": i, "field": "tag", "reason": "must be a non-empty string"})
        if not isinstance(ts, str):
            problems.append({"index": i, "field": "ts", "reason": "must be an ISO-8601 string"})
        if "value" not in item:
            problems.append({"index": i, "field": "value", "reason": "missing (send null for a sample without value)"})
        elif isinstance(value, bool) or not (value is None or isinstance(value, int | float | str)):
            problems.append({"index": i, "field": "value", "reason": "must be a number, a string or null"})
        extra = set(item) - {"tag", "ts", "value"}
        if extra:
            problems.append({"index": i, "field": sorted(extra)[0], "reason": "unknown field"})
        records.append((tag, ts, value))
    if problems:
        raise BatchFormatError(f"{len(problems)} problem(s) in the batch", problems)
    import pyarrow as pa

    ts_us, ok, _ = timestamps_parse(pa.array([r[1] for r in records], pa.string()))
    bad = [
        {"index": int(i) + 1, "field": "ts", "reason": f"not an ISO-8601 timestamp: {records[i][1]!r}"}
        for i in np.nonzero(~ok)[0]
    ]
    if bad:
        raise BatchFormatError(f"{len(bad)} unparseable timestamp(s)", bad)
    names: dict[str, int] = {}
    values = np.empty(len(records))
    text_at, texts = [], []
    for i, (_, _, value) in enumerate(records):
        if isinstance(value, int | float):
            values[i] = float(value)
        else:
            values[i] = np.nan
            text_at.append(i)
            texts.append(NO_VALUE if value is None else value.strip()[:200] or NO_VALUE)
    tag = np.asarray([names.setdefault(r[0], len(names)) for r in records], np.int32)
    return RawBatch(
        names=tuple(names),
        tag=tag,
        ts_us=ts_us,
        value=values,
        row=np.arange(1, len(records) + 1, dtype=np.int64),
        text_at=np.asarray(text_at, np.int64),
        text=tuple(texts),
    )


def csv_body_read(path: Path, *, tag_names: set[str], line_key: str) -> Iterator[RawBatch]:
    """Validate a CSV body saved at `path` (long or wide, gzip'd or not) within the API limits; return its batches.

    The whole body is checked (header, encoding, decompressed size, rows) before the first batch is returned, so a
    bad body stores nothing; the batches are then parsed one block at a time.
    """
    try:
        reader = history_reader_open(
            path=path, filename="request body", tag_names=tag_names, line_key=line_key, limits=conf.api_limits()
        )
    except HistoryTooLargeError as e:
        raise BatchTooLargeError(str(e), [_problem(p) for p in e.problems]) from None
    except HistoryFileError as e:
        raise BatchFormatError(str(e), [_problem(p) for p in e.problems]) from None
    return reader.batches()


def _problem(p: Rejection) -> dict[str, Any]:
    return {"index": p.row, "field": p.column, "reason": p.reason}
