"""What flows into the ingest service (RawBatch) and what comes out of it (ImportResult, Rejection)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

MAX_REJECTIONS = 10_000  # entries kept in a result (the counts stay exact); a report beyond this helps nobody
NO_VALUE = "no value"  # reason for a sample sent explicitly without a value (JSON null)


@dataclass(frozen=True)
class Rejection:
    """One row-level problem, for the downloadable rejection report."""

    row: int  # 1-based row in the source (file line number incl. header, or index in an API batch)
    column: str  # column/tag/field name
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """What an ingest did: counts of samples and the report of every value not stored or stored flagged.

    samples_received = samples_inserted + samples_duplicate + samples_rejected; bad-quality and out-of-range samples
    are stored (inserted or duplicate), and each also has an entry in `rejections` saying why it is flagged.
    """

    samples_received: int
    samples_inserted: int
    samples_duplicate: int
    samples_bad_quality: int
    samples_out_of_range: int
    rejections: list[Rejection]  # rows/values not stored or stored flagged, each with why (at most MAX_REJECTIONS)
    samples_rejected: int = 0  # values not stored at all (unknown tag, unparseable timestamp, garbage row)
    rejections_total: int = 0  # entries before truncation to MAX_REJECTIONS

    def as_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


class HistoryFileError(ValueError):
    """A structural problem with a history file or batch: nothing was stored. `problems` says what and where."""

    def __init__(self, message: str, problems: Sequence[Rejection] = ()) -> None:
        super().__init__(message)
        self.problems: list[Rejection] = list(problems)


class HistoryTooLargeError(HistoryFileError):
    """A history file or batch expands beyond the configured size or row limit: nothing was stored."""


@dataclass(frozen=True)
class RawBatch:
    """Samples in long form as a source delivered them, before tag lookup and quality checks (columnar, numpy).

    A value is numeric (`value`), or text (`text` at the positions `text_at`: a historian string such as 'Bad',
    an OPC UA status name, or NO_VALUE), in which case it is stored as bad quality with that text as the reason.
    """

    names: tuple[str, ...]  # tag names as received; `tag` indexes into it
    tag: np.ndarray  # (N,) int32
    ts_us: np.ndarray  # (N,) int64, microseconds since 1970-01-01 UTC
    value: np.ndarray  # (N,) float64; NaN and inf are kept as received (they become bad samples)
    row: np.ndarray  # (N,) int64, 1-based source row of each sample (for the report)
    text_at: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # (K,) positions holding text
    text: tuple[str, ...] = ()  # (K,) the text at those positions
    rejections: tuple[Rejection, ...] = ()  # problems the parser found; those values are not in the batch
    rejected_samples: int = 0  # values lost with those rejections

    def __len__(self) -> int:
        return int(self.tag.shape[0])

    @classmethod
    def from_records(cls, records: Iterable[tuple[str, datetime, float | str | None]]) -> RawBatch:
        """Build a batch from (tag, timestamp, value) tuples; naive timestamps are UTC, text/None become bad."""
        names: dict[str, int] = {}
        tags, ts, values, text_at, texts = [], [], [], [], []
        for i, (name, when, value) in enumerate(records):
            tags.append(names.setdefault(name, len(names)))
            ts.append(datetime_to_us(when))
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.append(float(value))
            else:
                values.append(np.nan)
                text_at.append(i)
                texts.append(NO_VALUE if value is None else str(value))
        n = len(tags)
        return cls(
            names=tuple(names),
            tag=np.asarray(tags, np.int32),
            ts_us=np.asarray(ts, np.int64),
            value=np.asarray(values, np.float64),
            row=np.arange(1, n + 1, dtype=np.int64),
            text_at=np.asarray(text_at, np.int64),
            text=tuple(texts),
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_to_us(when: datetime) -> int:
    """Return microseconds since the Unix epoch; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    """Return the UTC datetime of microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=int(us))
