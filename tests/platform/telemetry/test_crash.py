"""`kill -9` of an ingest process mid-import, then a replay of the same file: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from urllib.parse import urlparse

import numpy as np
import pytest
from django.db import connection

from twinops.telemetry.services import history_import

from .conftest import T0, line_make

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]  # slow: an ingest process killed -9, replayed  # the ingest process must see the line, we its rows
ROWS = 300_000

IMPORT = textwrap.dedent("""
    import sys, django
    django.setup()
    from pathlib import Path
    from twinops.lines.models import Line
    from twinops.telemetry.services import history_import
    line = Line.objects.get(key="crash")
    def progress(done, total):
        print(f"progress {done} {total}", flush=True)
    history_import(line=line, path=Path(sys.argv[1]), filename="big.csv", actor=None, on_progress=progress)
    print("finished", flush=True)
""")


def _write(path, start: int, stop: int) -> None:
    seconds = np.arange(start, stop)
    stamps = (np.datetime64(T0.replace(tzinfo=None), "s") + seconds).astype(str)
    with path.open("w") as fh:
        fh.write("timestamp,T,F\n")
        fh.writelines(f"{s}Z,{i % 1000},{i % 37}\n" for s, i in zip(stamps, seconds, strict=True))


def _stored() -> tuple:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT t.name, count(*), count(DISTINCT s.ts), sum(s.value), min(s.ts), max(s.ts) "
            "FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id GROUP BY 1 ORDER BY 1"
        )
        return tuple(cur.fetchall())


def test_a_killed_import_replayed_loses_and_duplicates_nothing(tmp_path) -> None:
    line = line_make("crash", {"T": ("CV", 0, 2000), "F": ("MV", 0, 2000)})
    first_half, full = tmp_path / "first_half.csv", tmp_path / "big.csv"
    _write(first_half, 0, ROWS // 2)
    _write(full, 0, ROWS)
    history_import(line=line, path=first_half, filename=first_half.name, actor=None)  # yesterday's partial copy

    test_db = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "twinops.config.settings", "DATABASE_URL": test_db}
    proc = subprocess.Popen([sys.executable, "-c", IMPORT, str(full)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        for out in proc.stdout:  # kill once rows are flowing into the open transaction
            if out.startswith("progress") and 0 < int(out.split()[1]) < ROWS:
                os.kill(proc.pid, signal.SIGKILL)
                break
        else:
            pytest.fail("the import ended before it could be killed")
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    result = history_import(line=line, path=full, filename=full.name, actor=None)  # the replay
    assert (result.samples_inserted, result.samples_duplicate) == (ROWS, ROWS)  # second half new, first half known
    seconds = np.arange(ROWS)
    assert _stored() == (
        ("F", ROWS, ROWS, float((seconds % 37).sum()), T0, T0 + timedelta(seconds=ROWS - 1)),
        ("T", ROWS, ROWS, float((seconds % 1000).sum()), T0, T0 + timedelta(seconds=ROWS - 1)),
    )
