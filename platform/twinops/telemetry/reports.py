"""The rejection report of an import, as CSV (row, column, reason), safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import TextIO

from twinops.core.spreadsheets import csv_cell
from twinops.telemetry.batch import Rejection

REPORT_COLUMNS = ("row", "column", "reason")


def rejections_csv_write(*, rejections: Iterable[Rejection], out: TextIO) -> None:
    """Write a rejection report to `out`; a tag name or reason a spreadsheet would run as a formula is quoted."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(REPORT_COLUMNS)
    writer.writerows([csv_cell(r.row), csv_cell(r.column), csv_cell(r.reason)] for r in rejections)
