"""PostgreSQL advisory lock keys, all in one place so no two uses of a key collide.

Keys are 7_240_xxx (the project's own range): 0xx for audit, 1xx for telemetry. A new lock takes the next free
number of its app here, never a literal at the call site.
"""

from __future__ import annotations

AUDIT_CHAIN = 7_240_001  # transaction lock: serialises appends to the audit hash chain
TELEMETRY_PARTITIONS = 7_240_101  # transaction lock: serialises creating monthly sample partitions between processes
TELEMETRY_IMPORT_JOB = 7_240_102  # session lock, first key of two (the second is the job id): one worker per import job
