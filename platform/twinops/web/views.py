"""Dashboard pages (placeholder until the lines and telemetry pages land)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from twinops.core.roles import require_capability


@require_GET
@require_capability("view_plant")
def line_list(request: HttpRequest) -> HttpResponse:
    """List production lines."""
    return render(request, "web/line_list.html", {"lines": []})
