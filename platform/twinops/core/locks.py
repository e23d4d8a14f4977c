"""PostgreSQL advisory lock keys, all in one place so no two uses of a key collide.

Keys are 7_240_xxx (the project's own range): 0xx for audit, 1xx for telemetry, 2xx for recommendations. A new lock
takes the next free number of its app here, never a literal at the call site.
"""

from __future__ import annotations

from django.db import connection

AUDIT_CHAIN = 7_240_001  # transaction lock: serialises appends to the audit hash chain
TELEMETRY_PARTITIONS = 7_240_101  # transaction lock: serialises creating monthly sample partitions between processes
TELEMETRY_IMPORT_JOB = 7_240_102  # session lock, first key of two (the second is the job id): one worker per import job
# Session lock, first key of two (the second is the attempt row's id): the worker making a line's slot holds it while
# it works; the session's end (a kill -9 too) releases it, which is how beat tells a dead worker's slot.
RECOMMENDATION_ATTEMPT = 7_240_201


def held_ids(key: int) -> set[int]:
    """Return the second keys held under `key` (a two-key advisory lock) by any session of this database.

    How a job's claim tells a live worker from a dead one: the worker holds (key, job id) for its session while it
    works, and PostgreSQL releases it when the session ends, however the worker died.
    """
    with connection.cursor() as cur:
        cur.execute(
            "SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND classid = %s::oid "
            "AND objsubid = 2 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = "
            "current_database())",
            [key],
        )
        return {int(r[0]) for r in cur.fetchall()}
