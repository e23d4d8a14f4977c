"""Read history files (CSV, gzip'd CSV or Parquet; wide or long) into RawBatch chunks, vectorised with pyarrow.

Wide: a timestamp column and one column per tag. Long: columns timestamp, tag, value. The timestamp column is named
timestamp, ts, time, datetime or date (any case), or is an unnamed first column (a pandas index). Rules:
- timestamps are ISO 8601; an offset is honoured, a naive timestamp is taken as UTC;
- an empty cell is a missing measurement: no sample is stored and nothing is reported (tags sampled at different
  rates leave empty cells in wide files);
- a cell that is not a number ('Bad', 'Scan Timeout', 'NaN', 'inf') is a bad-quality sample with that text as reason;
- a garbage row (unparseable timestamp, wrong number of columns) is reported and skipped; the other rows are stored;
- a wrong header, a file that is not UTF-8, or an unreadable Parquet file stops the import before anything is stored;
- so does a file that expands past the limits once decompressed (bytes, rows: `conf.ExpandLimits`) or holds a line
  longer than MAX_LINE_BYTES: a prepass streams through the whole file, decompressing 1 MiB at a time, before any
  row is converted, so a decompression bomb is refused with memory bounded.
Row numbers in reports are file line numbers counting the header as line 1 (Parquet: 1-based row index).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from twinops.telemetry import conf
from twinops.telemetry.batch import HistoryFileError, HistoryTooLargeError, RawBatch, Rejection, datetime_to_us
from twinops.telemetry.conf import ExpandLimits

TIMESTAMP_NAMES = {"timestamp", "ts", "time", "datetime", "date", "time_utc", "timestamp_utc"}
BLOCK_BYTES = 4 << 20  # CSV bytes parsed per chunk
MAX_LINE_BYTES = 1 << 20  # longest CSV line (a row must fit in one parse block; no plant row comes near this)
EXPAND_PIECE = 1 << 20  # most bytes decompressed at once
PARQUET_ROWS = 50_000  # Parquet rows per chunk
_NUMBER = (
    r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$"
    r"|^[-+]?(nan|NaN|NAN|inf|Inf|INF|infinity|Infinity|INFINITY)$"
)
_TS = "__ts__"  # internal name of the timestamp column


@dataclass(frozen=True)
class Layout:
    """How a file's columns map to the line: which is the timestamp, and wide tag columns or long tag/value."""

    columns: tuple[str, ...]  # as in the header
    ts_index: int
    long: bool
    tag_index: int = -1  # long format only
    value_index: int = -1


class HistoryReader:
    """A validated history file: its SHA-256, row count and layout; `batches()` yields its rows as RawBatches."""

    def __init__(self, path: Path, *, filename: str, tag_names: set[str], line_key: str, limits: ExpandLimits) -> None:
        self.path, self.filename, self.line_key = Path(path), filename, line_key
        self.rows_done = 0  # data rows read so far (progress)
        with open(self.path, "rb") as fh:
            magic = fh.read(4)
        self.kind = "parquet" if magic == b"PAR1" else "csv"
        self.gzip = magic[:2] == b"\x1f\x8b"
        if self.kind == "parquet":
            self.sha256 = _sha256(self.path)
            try:
                self._parquet = pq.ParquetFile(self.path)
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise HistoryFileError(
                    f"{filename}: not a readable Parquet file ({e})",
                    [Rejection(0, "", f"not a readable Parquet file: {e}")],
                ) from None
            meta = self._parquet.metadata
            self.rows_total = meta.num_rows
            expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            _limits_check(filename, limits, expanded_bytes=expanded, rows=self.rows_total)
            header = list(self._parquet.schema_arrow.names)
            self.delimiter = ","
        else:
            self.sha256, lines, first = _csv_prepass(self.path, gzip=self.gzip, filename=filename, limits=limits)
            header, self.delimiter = _parse_header(first, filename)
            self.rows_total = max(0, lines - 1)
        self.layout = _layout(header, tag_names=tag_names, filename=filename, line_key=line_key)

    def batches(self) -> Iterator[RawBatch]:
        """Yield the file's samples chunk by chunk."""
        yield from (self._parquet_batches() if self.kind == "parquet" else self._csv_batches())

    # --- CSV --------------------------------------------------------------------------------------------------
    def _csv_batches(self) -> Iterator[RawBatch]:
        names = [(_TS if i == self.layout.ts_index else f"c{i}") for i in range(len(self.layout.columns))]
        skipped: list[int] = []  # physical line numbers of skipped rows, in order
        pending: list[Rejection] = []
        expected = len(names)

        def on_invalid(row: pacsv.InvalidRow) -> str:
            skipped.append(row.number)
            if row.text.strip():
                pending.append(
                    Rejection(
                        row.number,
                        "",
                        f"not stored: wrong number of columns ({row.actual_columns}, expected {expected})",
                    )
                )
            return "skip"

        source = pa.input_stream(str(self.path), compression="gzip" if self.gzip else None)
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=BLOCK_BYTES, skip_rows=1, column_names=names, encoding="utf8"
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
        done = 0
        for record in reader:
            n = record.num_rows
            first_skipped = np.asarray(skipped, np.int64) - 2 - np.arange(len(skipped))  # valid rows before each
            k = np.arange(done, done + n, dtype=np.int64)
            rows = 2 + k + np.searchsorted(first_skipped, k, side="right")
            done += n
            self.rows_done = done + len(skipped)
            batch = self._convert(record, rows, parse_text=True)
            extra, pending[:] = list(pending), []
            yield _with_rejections(batch, extra)  # a row with the wrong column count has no trustworthy values

    # --- Parquet ----------------------------------------------------------------------------------------------
    def _parquet_batches(self) -> Iterator[RawBatch]:
        done = 0
        try:
            for record in self._parquet.iter_batches(batch_size=PARQUET_ROWS):
                rows = np.arange(done + 1, done + record.num_rows + 1, dtype=np.int64)
                done += record.num_rows
                self.rows_done = done
                renamed = pa.RecordBatch.from_arrays(
                    record.columns,
                    names=[(_TS if i == self.layout.ts_index else f"c{i}") for i in range(record.num_columns)],
                )
                yield self._convert(renamed, rows, parse_text=False)
        except (OSError, pa.ArrowException) as e:
            raise HistoryFileError(
                f"{self.filename}: not a readable Parquet file ({e})",
                [Rejection(done + 1, "", f"not a readable Parquet file: {e}")],
            ) from None

    # --- both ---------------------------------------------------------------------------------------------------
    def _convert(self, record: pa.RecordBatch, rows: np.ndarray, *, parse_text: bool) -> RawBatch:
        layout = self.layout
        ts_name = layout.columns[layout.ts_index] or "timestamp"
        ts_us, ts_ok, ts_raw = timestamps_parse(record.column(_TS))
        others = [i for i in range(len(layout.columns)) if i != layout.ts_index]
        cells = {i: record.column(f"c{i}") for i in others}
        present_any = np.zeros(record.num_rows, bool)
        for col in cells.values():
            present_any |= ~np.asarray(col.is_null())
        rejections: list[Rejection] = []
        lost = 0
        bad_ts = np.nonzero(~ts_ok & (present_any | ~np.asarray(record.column(_TS).is_null())))[0]
        for k in bad_ts:
            raw = ts_raw[k]
            why = "missing timestamp" if raw is None else f"unparseable timestamp {raw!r}"
            rejections.append(Rejection(int(rows[k]), ts_name, f"not stored: {why}"))
        if layout.long:
            return self._long(cells, rows, ts_us, ts_ok, rejections, parse_text=parse_text)
        parts_tag: list[np.ndarray] = []
        parts_ts: list[np.ndarray] = []
        parts_val: list[np.ndarray] = []
        parts_row: list[np.ndarray] = []
        parts_text_at: list[np.ndarray] = []
        texts: list[str] = []
        offset = 0
        names = tuple(layout.columns[i] for i in others)
        for j, i in enumerate(others):
            values, present, text_pos, text = values_parse(cells[i], parse_text=parse_text)
            lost += int(np.count_nonzero(present & ~ts_ok))
            keep = np.nonzero(present & ts_ok)[0]
            parts_tag.append(np.full(keep.size, j, np.int32))
            parts_ts.append(ts_us[keep])
            parts_val.append(values[keep])
            parts_row.append(rows[keep])
            if text_pos.size:  # positions of text cells among the kept ones
                where = np.searchsorted(keep, text_pos)
                ok = (where < keep.size) & (keep[np.minimum(where, keep.size - 1)] == text_pos)
                parts_text_at.append(offset + where[ok])
                texts.extend(t for t, o in zip(text, ok, strict=True) if o)
            offset += keep.size
        return RawBatch(
            names=names,
            tag=np.concatenate(parts_tag),
            ts_us=np.concatenate(parts_ts),
            value=np.concatenate(parts_val),
            row=np.concatenate(parts_row),
            text_at=np.concatenate(parts_text_at) if parts_text_at else np.zeros(0, np.int64),
            text=tuple(texts),
            rejections=tuple(rejections),
            rejected_samples=lost,
        )

    def _long(
        self,
        cells: dict[int, pa.Array],
        rows: np.ndarray,
        ts_us: np.ndarray,
        ts_ok: np.ndarray,
        rejections: list[Rejection],
        *,
        parse_text: bool,
    ) -> RawBatch:
        layout = self.layout
        values, present, text_pos, text = values_parse(cells[layout.value_index], parse_text=parse_text)
        tag_col = pc.cast(cells[layout.tag_index], pa.string())
        tag_null = np.asarray(tag_col.is_null())
        for i in np.nonzero(present & ts_ok & tag_null)[0]:
            rejections.append(Rejection(int(rows[i]), layout.columns[layout.tag_index], "not stored: missing tag"))
        lost = int(np.count_nonzero(present & (~ts_ok | tag_null)))
        keep = np.nonzero(present & ts_ok & ~tag_null)[0]
        encoded = pc.dictionary_encode(pc.utf8_trim_whitespace(tag_col.take(pa.array(keep))))
        text_keep = np.isin(text_pos, keep)
        return RawBatch(
            names=tuple(encoded.dictionary.to_pylist()),
            tag=np.asarray(encoded.indices, np.int32),
            ts_us=ts_us[keep],
            value=values[keep],
            row=rows[keep],
            text_at=np.searchsorted(keep, text_pos[text_keep]),
            text=tuple(t for t, k in zip(text, text_keep, strict=True) if k),
            rejections=tuple(rejections),
            rejected_samples=lost,
        )


def timestamps_parse(col: pa.Array) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """Parse a timestamp column to UTC microseconds; return (ts_us, ok mask, raw texts for the report)."""
    n = len(col)
    if pa.types.is_timestamp(col.type):
        unit_col = col if col.type.tz is not None else pc.assume_timezone(col, "UTC")
        us = pc.cast(unit_col, pa.timestamp("us", tz="UTC"))
        ok = ~np.asarray(us.is_null())
        return np.asarray(us.fill_null(0).cast(pa.int64())), ok, [None] * n
    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            us = pc.cast(text, target)
        except pa.ArrowInvalid:
            continue
        ok = ~np.asarray(us.is_null())
        return np.asarray(us.fill_null(0).cast(pa.int64())), ok, text.to_pylist()
    raw = text.to_pylist()  # mixed or odd formats: one by one (rare; garbage rows land here)
    out, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    for i, s in enumerate(raw):
        parsed = _parse_one(s)
        if parsed is not None:
            out[i], ok[i] = parsed, True
    return out, ok, raw


def _parse_one(s: str | None) -> int | None:
    if not s:
        return None
    try:
        when = datetime.fromisoformat(s.replace("z", "Z"))
    except ValueError:
        return None
    return datetime_to_us(when if when.tzinfo else when.replace(tzinfo=UTC))


def values_parse(col: pa.Array, *, parse_text: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Return (float values, present mask, positions of text cells, their text); empty cells are not present."""
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        if not (
            pa.types.is_integer(col.type)
            or pa.types.is_floating(col.type)
            or pa.types.is_boolean(col.type)
            or pa.types.is_decimal(col.type)
            or pa.types.is_null(col.type)
        ):
            col = pc.cast(col, pa.string())  # anything else is read as its text
        else:
            present = ~np.asarray(col.is_null())
            values = np.asarray(pc.cast(col, pa.float64()).fill_null(np.nan), np.float64)
            return values, present, np.zeros(0, np.int64), []
    try:
        values = np.asarray(pc.cast(col, pa.float64()).fill_null(np.nan), np.float64)
        return values, ~np.asarray(col.is_null()), np.zeros(0, np.int64), []
    except pa.ArrowInvalid:
        pass
    trimmed = pc.utf8_trim_whitespace(col)
    blank = np.asarray(pc.fill_null(pc.equal(trimmed, ""), True))  # null or whitespace only: missing
    numeric = np.asarray(pc.fill_null(pc.match_substring_regex(trimmed, _NUMBER), False))
    as_number = pc.if_else(pa.array(numeric), trimmed, pa.scalar(None, pa.string()))
    values = np.asarray(pc.cast(as_number, pa.float64()).fill_null(np.nan), np.float64)
    text_pos = np.nonzero(~numeric & ~blank)[0]
    text = trimmed.take(pa.array(text_pos)).to_pylist() if text_pos.size else []
    return values, ~blank, text_pos.astype(np.int64), [t[:200] for t in text]


def _with_rejections(batch: RawBatch, extra: list[Rejection]) -> RawBatch:
    if not extra:
        return batch
    from dataclasses import replace

    return replace(batch, rejections=tuple(sorted((*batch.rejections, *extra), key=lambda r: r.row)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _csv_prepass(path: Path, *, gzip: bool, filename: str, limits: ExpandLimits) -> tuple[str, int, bytes]:
    """Hash the file, check it is UTF-8, within the limits, and count its lines; return (sha256, lines, first line)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    gunzip = _Gunzip(filename) if gzip else None
    lines, first, tail, expanded = 0, b"", b"", 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            for data in gunzip.feed(block) if gunzip else (block,):
                expanded += len(data)
                if expanded > limits.max_bytes:
                    _limits_check(filename, limits, expanded_bytes=expanded, rows=0)
                if len(first) < 1 << 16 and b"\n" not in first:
                    first += data[: 1 << 16]
                try:
                    decoder.decode(data)
                except UnicodeDecodeError as e:
                    _raise_encoding(filename, tail + data, len(tail) + e.start, lines - tail.count(b"\n"), first)
                lines += data.count(b"\n")
                if lines > limits.max_rows + 1:  # + the header
                    _limits_check(filename, limits, expanded_bytes=0, rows=lines - 1)
                tail = data[data.rfind(b"\n") + 1 :] if b"\n" in data else tail + data
                if len(tail) > MAX_LINE_BYTES:
                    reason = f"line {lines + 1} is longer than {MAX_LINE_BYTES} bytes; is this a CSV file?"
                    raise HistoryFileError(f"{filename}: {reason}", [Rejection(lines + 1, "", reason)])
    if gunzip:
        gunzip.finish()
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as e:
        _raise_encoding(filename, tail, e.start, lines, first)
    if tail.strip():
        lines += 1  # last line without a newline
    _limits_check(filename, limits, expanded_bytes=expanded, rows=max(0, lines - 1))
    return digest.hexdigest(), lines, first.split(b"\n", 1)[0]


class _Gunzip:
    """Decompress gzip (concatenated members too) at most EXPAND_PIECE bytes at a time, so a bomb never sits whole
    in memory."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._z = zlib.decompressobj(wbits=47)  # 47: gzip or zlib header, auto-detected
        self._inside = False  # within a member whose end has not been seen

    def feed(self, block: bytes) -> Iterator[bytes]:
        """Yield the decompressed pieces of the next compressed block."""
        data = block
        try:
            while data:
                self._inside = True
                piece = self._z.decompress(data, EXPAND_PIECE)
                if piece:
                    yield piece
                if self._z.eof:
                    data, self._z, self._inside = self._z.unused_data, zlib.decompressobj(wbits=47), False
                else:
                    data = self._z.unconsumed_tail
        except zlib.error as e:
            self._unreadable(f"not a readable gzip file ({e})")

    def finish(self) -> None:
        """Raise HistoryFileError if the file ends inside a gzip member."""
        if self._inside:
            self._unreadable("the gzip file is truncated")

    def _unreadable(self, reason: str) -> None:
        raise HistoryFileError(f"{self.filename}: {reason}", [Rejection(0, "", reason)])


def _limits_check(filename: str, limits: ExpandLimits, *, expanded_bytes: int, rows: int) -> None:
    """Raise HistoryTooLargeError if a file expands past the limits."""
    if expanded_bytes > limits.max_bytes:
        reason = (
            f"more than {limits.max_bytes} bytes once decompressed (the limit, {limits.bytes_variable}); "
            f"split it into smaller parts"
        )
    elif rows > limits.max_rows:
        reason = f"more than {limits.max_rows} rows (the limit, {limits.rows_variable}); split it into smaller parts"
    else:
        return
    raise HistoryTooLargeError(f"{filename}: too large: {reason}", [Rejection(0, "", f"too large: {reason}")])


def _raise_encoding(filename: str, data: bytes, pos: int, lines_before: int, first: bytes) -> None:
    line_start = data.rfind(b"\n", 0, pos) + 1
    line_no = lines_before + data.count(b"\n", 0, line_start) + 1
    field = data[line_start:pos].count(b",")
    header = first.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r\ufeff").split(",")
    column = header[field] if line_no > 1 and field < len(header) else ""
    reason = (
        f"not UTF-8: byte 0x{data[pos]:02x} at line {line_no}; save the file as UTF-8 "
        f"(it looks like Latin-1 or Windows-1252)"
    )
    raise HistoryFileError(f"{filename}: {reason}", [Rejection(line_no, column, reason)])


def _parse_header(first: bytes, filename: str) -> tuple[list[str], str]:
    text = first.decode("utf-8").lstrip("\ufeff").rstrip("\r")
    if not text.strip():
        raise HistoryFileError(
            f"{filename}: the file is empty or its first line is blank; expected a header",
            [Rejection(1, "", "no header line")],
        )
    delimiter = max((",", ";", "\t"), key=text.count)
    return [c.strip() for c in next(csv.reader([text], delimiter=delimiter))], delimiter


def _layout(header: list[str], *, tag_names: set[str], filename: str, line_key: str) -> Layout:
    problems: list[Rejection] = []
    lowered = [c.lower() for c in header]
    seen: set[str] = set()
    for c in header:
        if c in seen:
            problems.append(Rejection(1, c, "column appears twice in the header"))
        seen.add(c)
    ts = [i for i, c in enumerate(lowered) if c in TIMESTAMP_NAMES and c not in tag_names]
    if not ts and header and header[0] == "":
        ts = [0]
    if len(ts) != 1:
        why = (
            "no timestamp column: name one timestamp, ts or time (or leave the first column unnamed)"
            if not ts
            else "more than one timestamp column"
        )
        problems.append(Rejection(1, ",".join(header[i] for i in ts), why))
        raise HistoryFileError(f"{filename}: {why}", problems)
    rest = [i for i in range(len(header)) if i != ts[0]]
    rest_names = {lowered[i] for i in rest}
    if rest_names == {"tag", "value"} and not ({"tag", "value"} & tag_names):
        if problems:
            raise HistoryFileError(f"{filename}: wrong header", problems)
        return Layout(
            tuple(header), ts[0], long=True, tag_index=lowered.index("tag"), value_index=lowered.index("value")
        )
    by_lower = {t.lower(): t for t in tag_names}
    for i in rest:
        if header[i] not in tag_names:
            hint = f" (did you mean {by_lower[lowered[i]]!r}?)" if lowered[i] in by_lower else ""
            problems.append(Rejection(1, header[i], f"not a tag of line {line_key!r} and not the timestamp{hint}"))
    if not rest:
        problems.append(
            Rejection(
                1,
                "",
                "no tag columns: a wide file needs one column per tag, a long file the columns timestamp, tag, value",
            )
        )
    if problems:
        raise HistoryFileError(f"{filename}: wrong header ({len(problems)} problem(s))", problems)
    return Layout(tuple(header), ts[0], long=False)


def history_reader_open(
    *, path: Path, filename: str, tag_names: set[str], line_key: str, limits: ExpandLimits | None = None
) -> HistoryReader:
    """Open and validate a history file (structure, encoding, header, size); raise HistoryFileError if unusable.

    `limits` defaults to those of history files (`conf.history_limits`); beyond them HistoryTooLargeError.
    """
    return HistoryReader(
        path, filename=filename, tag_names=tag_names, line_key=line_key, limits=limits or conf.history_limits()
    )
