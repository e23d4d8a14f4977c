"""HTTP: the batch ingest API (token auth, JSON or CSV) and the rejection report of an import job (session auth)."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from twinops.accounts.services import token_resolve
from twinops.core.roles import require_capability, user_can
from twinops.lines.models import Line
from twinops.lines.selectors import line_get, line_tags
from twinops.telemetry.api import BatchFormatError, BatchTooLargeError, csv_body_read, json_batch_parse
from twinops.telemetry.batch import RawBatch
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.reports import rejections_csv_write
from twinops.telemetry.selectors import import_job_get, import_job_rejections
from twinops.telemetry.services import FutureTimestampError, samples_ingest

READ_BYTES = 1 << 20  # request body bytes read at a time


def _error(status: int, message: str, problems: list | None = None) -> JsonResponse:
    body: dict[str, object] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return JsonResponse(body, status=status)


@login_not_required  # machine clients authenticate with a bearer token, not a session
@csrf_exempt  # no cookies are honoured here, so there is nothing to forge
@require_POST
def samples_post(request: HttpRequest, key: str) -> HttpResponse:
    """Store a batch of samples for a line: JSON or CSV (gzip'd or not); the token must be allowed the line."""
    token = token_resolve(header=request.headers.get("Authorization"))
    if token is None:
        response = _error(401, "authentication required: send 'Authorization: Bearer <API token>'")
        response["WWW-Authenticate"] = "Bearer"
        return response
    if not user_can(token.user, "import_telemetry"):
        return _error(403, "this token's user may not import telemetry (needs the data or admin role)")
    if not token.may_write(key):
        return _error(403, f"this token may not write line {key!r}; it may write {token.scope()}")
    limit = settings.INGEST_API_MAX_BYTES
    raw_length = request.headers.get("Content-Length") or "0"
    if not raw_length.isascii() or not raw_length.isdigit():
        return _error(400, f"malformed Content-Length header {raw_length[:40]!r}: expected a number of bytes")
    if int(raw_length) > limit:
        return _error(413, f"batch too large: the limit is {limit} bytes; send smaller batches")
    try:
        line = line_get(key=key)
    except Line.DoesNotExist:
        return _error(404, f"no line {key!r}")
    content_type = request.content_type or ""
    if content_type not in ("application/json", "text/csv"):
        return _error(415, f"unsupported content type {content_type!r}: send application/json or text/csv")
    with tempfile.NamedTemporaryFile(prefix="twinops-batch-", suffix=".body") as spool:
        size = 0
        while chunk := request.read(READ_BYTES):  # to disk, never whole in memory: CSV bodies are read from there
            size += len(chunk)
            if size > limit:
                return _error(413, f"batch too large: the limit is {limit} bytes; send smaller batches")
            spool.write(chunk)
        spool.flush()
        try:
            batch: RawBatch | Iterator[RawBatch]
            if content_type == "application/json":
                batch = json_batch_parse(Path(spool.name).read_bytes())
            else:
                names = set(line_tags(line=line, include_inactive=True).values_list("name", flat=True))
                batch = csv_body_read(Path(spool.name), tag_names=names, line_key=line.key)
            result = samples_ingest(line=line, batch=batch, source="api", actor=token.user, refuse_future=True)
        except BatchTooLargeError as e:
            return _error(413, str(e), e.problems)
        except BatchFormatError as e:
            return _error(400, str(e), e.problems)
        except FutureTimestampError as e:
            problems = [{"index": p.row, "field": p.column, "reason": p.reason} for p in e.problems]
            return _error(400, str(e), problems)
    return JsonResponse(result.as_json())


@require_GET
@require_capability("view_plant")
def rejections_csv(request: HttpRequest, job_id: int) -> HttpResponse:
    """Download an import job's rejection report as CSV (row, column, reason)."""
    try:
        job = import_job_get(job_id=job_id)
    except HistoryImportJob.DoesNotExist:
        raise Http404(f"No import job {job_id}.") from None
    out = io.StringIO()
    rejections_csv_write(rejections=import_job_rejections(job=job), out=out)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejections.csv"'
    return response
