"""The auditor's pages (read-only): the event log, one event, a proposal's decision chain (HTML or JSON), exports."""

from __future__ import annotations

import tempfile

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from twinops.audit.anchors import AnchorKeyError
from twinops.audit.models import AuditEvent
from twinops.auditing import pages
from twinops.auditing.services import ExportRefused, audit_export
from twinops.core.roles import require_capability
from twinops.recommendations.models import Recommendation


@require_GET
@require_capability("view_audit")
def event_log(request: HttpRequest) -> HttpResponse:
    """Show the audit log, newest first, filtered by line, time range, actor, action and object."""
    context = pages.log_context(request.GET) | pages.chain_status_context()
    return render(request, "auditing/log.html", context, status=400 if context.get("error") else 200)


@require_GET
@require_capability("view_audit")
def event_detail(request: HttpRequest, event_id: int) -> HttpResponse:
    """Show one event: who, when, what, its hashes and its before → after diff."""
    try:
        context = pages.event_context(event_id=event_id)
    except AuditEvent.DoesNotExist:
        raise Http404(f"There is no audit event {event_id}.") from None
    return render(request, "auditing/event.html", context | pages.chain_status_context())


@require_GET
@require_capability("view_audit")
def decision_chain(request: HttpRequest, recommendation_id: int) -> HttpResponse:
    """Show a proposal's decision chain with each link checked; JSON when the client asks for application/json."""
    try:
        chain, context = pages.decision_context(recommendation_id=recommendation_id)
    except Recommendation.DoesNotExist:
        raise Http404(f"There is no proposal {recommendation_id}.") from None
    status = pages.chain_status_context()
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        return JsonResponse(chain.to_json() | {"audit_chain": status["chain_summary"]})
    return render(request, "auditing/decision.html", context | status)


@require_POST
@require_capability("export_audit")
def export(request: HttpRequest) -> HttpResponse:
    """Download an export bundle (zip) of the events in the chosen time range, of one line's decisions if given."""
    try:
        start, end = pages.when(request.POST, "from"), pages.when(request.POST, "to")
    except pages.FilterError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    line_key = (request.POST.get("line") or "").strip() or None
    bundle = tempfile.TemporaryFile()  # noqa: SIM115 -- FileResponse closes it once sent
    try:
        audit_export(actor=request.user, start=start, end=end, out=bundle, line_key=line_key)
    except (ExportRefused, AnchorKeyError) as exc:
        bundle.close()
        return HttpResponse(str(exc), status=409, content_type="text/plain; charset=utf-8")
    bundle.seek(0)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    return FileResponse(
        bundle, as_attachment=True, filename=f"twinops-audit-{stamp}.zip", content_type="application/zip"
    )
