"""Twin pages: versions, live training progress, evaluation and charts; promote, roll back and train on POST."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from twinops.core.roles import require_capability, user_can
from twinops.lines.models import Line
from twinops.lines.shortcuts import line_or_404
from twinops.modeling import pages, selectors, services
from twinops.modeling.forms import ReasonForm, TrainForm
from twinops.modeling.models import TwinVersion


def _version_or_404(line: Line, number: int) -> TwinVersion:
    try:
        return selectors.twin_version_get(line=line, version=number)
    except TwinVersion.DoesNotExist:
        raise Http404(f"{line.key} has no twin version {number}") from None


@require_GET
@require_capability("view_plant")
def twin_page(request: HttpRequest, key: str) -> HttpResponse:
    """Show a line's twin versions, training jobs, and one version's evaluation table and charts."""
    line = line_or_404(key)
    shown = _version_or_404(line, int(request.GET["v"])) if request.GET.get("v", "").isdigit() else None
    context = pages.twin_context(line=line, shown=shown, can_train=user_can(request.user, "train_twin"))
    return render(request, "modeling/twin.html", context)


@require_GET
@require_capability("view_plant")
def twin_jobs(request: HttpRequest, key: str) -> HttpResponse:
    """Return the training-progress partial; when the watched jobs finish, tell htmx to reload the page."""
    line = line_or_404(key)
    context = pages.jobs_context(line=line)
    response = render(request, "modeling/partials/jobs.html", context)
    if request.htmx and not context["polling"]:
        response["HX-Refresh"] = "true"  # a new version or a refusal: the versions table changed
    return response


@require_POST
@require_capability("train_twin")
def twin_train(request: HttpRequest, key: str) -> HttpResponse:
    """Queue a training job for the line on the chosen window."""
    line = line_or_404(key)
    form = TrainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Training not started: " + "; ".join(m for e in form.errors.values() for m in e))
    else:
        try:
            job = services.training_job_create(
                line=line, actor=request.user, start=form.cleaned_data["start"], end=form.cleaned_data["end"]
            )
            messages.success(request, f"Training job {job.pk} queued.")
        except ValueError as exc:
            messages.error(request, f"Training not started: {exc}")
    return redirect(reverse("twin-page", args=[line.key]))


@require_POST
@require_capability("train_twin")
def twin_promote(request: HttpRequest, key: str, version: int) -> HttpResponse:
    """Promote a version to feed the optimizer, with a reason."""
    line = line_or_404(key)
    target = _version_or_404(line, version)
    form = ReasonForm(request.POST)
    try:
        if not form.is_valid():
            raise services.PromotionError("a reason is required: say why the optimizer should use this twin")
        services.twin_promote(version=target, actor=request.user, reason=form.cleaned_data["reason"])
        messages.success(request, f"Twin v{target.version} is now promoted: the optimizer uses it.")
    except services.PromotionError as exc:
        messages.error(request, f"Promotion refused: {exc}")
    return redirect(reverse("twin-page", args=[line.key]))


@require_POST
@require_capability("train_twin")
def twin_rollback(request: HttpRequest, key: str) -> HttpResponse:
    """Roll back to the previously promoted version, with a reason."""
    line = line_or_404(key)
    form = ReasonForm(request.POST)
    try:
        if not form.is_valid():
            raise services.PromotionError("a reason is required: say why the promoted twin is withdrawn")
        back = services.twin_rollback(line=line, actor=request.user, reason=form.cleaned_data["reason"])
        messages.success(request, f"Rolled back: twin v{back.version} is promoted again.")
    except services.PromotionError as exc:
        messages.error(request, f"Rollback refused: {exc}")
    return redirect(reverse("twin-page", args=[line.key]))


@require_GET
@require_capability("view_plant")
def twin_report_json(request: HttpRequest, key: str, version: int) -> JsonResponse:
    """Return a version's evaluation report as JSON."""
    target = _version_or_404(line_or_404(key), version)
    return JsonResponse({"line": key, "version": target.version, "status": target.status, "report": target.report})
