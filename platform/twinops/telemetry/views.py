"""HTTP: the batch ingest API (token auth, JSON or CSV) and the rejection report of an import job (session auth)."""

from __future__ import annotations

import csv
import io

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from twinops.accounts.services import token_authenticate
from twinops.core.roles import require_capability, user_can
from twinops.lines.models import Line
from twinops.lines.selectors import line_get, line_tags
from twinops.telemetry.api import BatchFormatError, csv_body_parse, json_batch_parse
from twinops.telemetry.models import HistoryImportJob
from twinops.telemetry.selectors import import_job_get, import_job_rejections
from twinops.telemetry.services import samples_ingest


def _error(status: int, message: str, problems: list | None = None) -> JsonResponse:
    body: dict[str, object] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return JsonResponse(body, status=status)


@login_not_required  # machine clients authenticate with a bearer token, not a session
@csrf_exempt  # no cookies are honoured here, so there is nothing to forge
@require_POST
def samples_post(request: HttpRequest, key: str) -> HttpResponse:
    """Store a batch of samples for a line: JSON or long-format CSV; the user needs `import_telemetry`."""
    user = token_authenticate(header=request.headers.get("Authorization"))
    if user is None:
        response = _error(401, "authentication required: send 'Authorization: Bearer <API token>'")
        response["WWW-Authenticate"] = "Bearer"
        return response
    if not user_can(user, "import_telemetry"):
        return _error(403, "this token's user may not import telemetry (needs the data or admin role)")
    limit = settings.INGEST_API_MAX_BYTES
    declared = int(request.headers.get("Content-Length") or 0)
    body = request.read(limit + 1) if declared <= limit else b""
    if declared > limit or len(body) > limit:
        return _error(413, f"batch too large: the limit is {limit} bytes; send smaller batches")
    try:
        line = line_get(key=key)
    except Line.DoesNotExist:
        return _error(404, f"no line {key!r}")
    content_type = request.content_type or ""
    try:
        if content_type == "application/json":
            batch = json_batch_parse(body)
        elif content_type == "text/csv":
            names = set(line_tags(line=line, include_inactive=True).values_list("name", flat=True))
            batch = csv_body_parse(body, tag_names=names, line_key=line.key)
        else:
            return _error(415, f"unsupported content type {content_type!r}: send application/json or text/csv")
    except BatchFormatError as e:
        return _error(400, str(e), e.problems)
    result = samples_ingest(line=line, batch=batch, source="api", actor=user)
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
    writer = csv.writer(out)
    writer.writerow(["row", "column", "reason"])
    writer.writerows((r.row, r.column, r.reason) for r in import_job_rejections(job=job))
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-rejections.csv"'
    return response
