"""Dashboard pages: thin views over the lines and telemetry selectors and services; htmx swaps the partials."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from twinops.core.capabilities import CAPABILITIES
from twinops.core.clients import client_address
from twinops.core.roles import require_capability, user_can
from twinops.lines.models import Line
from twinops.lines.selectors import line_list as lines_all
from twinops.lines.selectors import line_tags, spec_versions
from twinops.lines.services import SpecError, line_mode_set, spec_parse
from twinops.lines.shortcuts import line_or_404
from twinops.recommendations.services import SigningError, proposal_sign
from twinops.releases.selectors import release_alarm, release_no_plc
from twinops.releases.services import release_stop
from twinops.web import drafts, pages
from twinops.web.forms import ChartForm, ModeForm, OnboardConfirmForm, SignForm, SpecUploadForm


# --- lines ------------------------------------------------------------------------------------------------------
@require_GET
@require_capability("view_plant")
def line_list(request: HttpRequest) -> HttpResponse:
    """List production lines with their tag counts by role and how fresh their data is."""
    return render(request, "web/line_list.html", {"rows": pages.line_rows(lines=lines_all())})


@require_GET
@require_capability("view_plant")
def line_detail(request: HttpRequest, key: str) -> HttpResponse:
    """Show a line: a chart of chosen tags over a chosen range, and its data-quality summary."""
    line = line_or_404(key)
    quality = pages.quality_context(line=line, now=timezone.now())
    chart = pages.chart_context(
        line=line, form=_chart_form(request, line), now=timezone.now(), latest=quality["latest"]
    )
    modes = Line.Mode.choices
    alarm = release_alarm(line=line)  # a release the PLC refused, changed or lost: setpoints held
    no_plc = release_no_plc(line=line)  # nothing can ever be released: say who can change that
    context = {"line": line, "modes": modes, "release_alarm": alarm, "no_plc": no_plc, **quality, **chart}
    return render(request, "web/line_detail.html", context)


@require_GET
@require_capability("view_plant")
def line_chart(request: HttpRequest, key: str) -> HttpResponse:
    """Return the chart partial for the chosen tags and range (htmx swaps it into the line page)."""
    line = line_or_404(key)
    chart = pages.chart_context(line=line, form=_chart_form(request, line), now=timezone.now())
    # htmx swaps only 2xx answers: a bad range comes back as 200 with its message shown in place of the chart.
    status = 200 if chart["chart_form"].is_valid() or request.htmx else 400
    response = render(request, "web/partials/chart.html", {"line": line, **chart}, status=status)
    if request.htmx:  # the address bar shows the chosen tags and range, so the view can be bookmarked and shared
        push_url(response, f"{reverse('line-detail', args=[line.key])}?{request.GET.urlencode()}")
    return response


@require_GET
@require_capability("view_plant")
def line_versions(request: HttpRequest, key: str) -> HttpResponse:
    """List the versions of a line's spec: who changed it, when and why."""
    line = line_or_404(key)
    versions = list(spec_versions(line=line))
    return render(request, "web/line_versions.html", {"line": line, "versions": pages.version_rows(versions)})


def _chart_form(request: HttpRequest, line: Line) -> ChartForm:
    names = [t.name for t in line_tags(line=line)]
    return ChartForm(request.GET if "range" in request.GET or "tags" in request.GET else None, tag_names=names)


# --- onboarding (data role) -------------------------------------------------------------------------------------
@require_GET
@require_capability("onboard_line")
def onboard_start(request: HttpRequest) -> HttpResponse:
    """Show the spec upload form."""
    return render(request, "web/onboard_upload.html", {"form": SpecUploadForm()})


@require_POST
@require_capability("onboard_line")
def onboard_preview(request: HttpRequest) -> HttpResponse:
    """Validate an uploaded spec and preview it, or list its problems precisely; nothing is created here."""
    form = SpecUploadForm(request.POST, request.FILES)
    text = form.spec_text() if form.is_valid() else ""
    if not form.is_valid():
        return render(request, "web/onboard_upload.html", {"form": form}, status=400)
    filename = form.cleaned_data["spec"].name
    try:
        parsed = spec_parse(text=text, filename=filename)
    except SpecError as exc:
        context = {"form": SpecUploadForm(), "problems": exc.problems, "filename": filename}
        return render(request, "web/onboard_upload.html", context, status=422)
    draft_id = drafts.draft_save(session=request.session, text=text, filename=filename)
    context = {
        "spec": pages.spec_preview(parsed),
        "filename": filename,
        "form": OnboardConfirmForm(initial={"draft": draft_id}),
    }
    return render(request, "web/onboard_preview.html", context)


@require_POST
@require_capability("onboard_line")
def onboard_confirm(request: HttpRequest) -> HttpResponse:
    """Create the line from the previewed spec, then start importing its history file if one came with it."""
    form = OnboardConfirmForm(request.POST, request.FILES)
    draft = drafts.draft_get(session=request.session, draft_id=request.POST.get("draft", ""))
    if draft is None:
        messages.error(request, "That preview has expired or was already used. Upload the spec again.")
        return redirect("line-onboard")
    if not form.is_valid():
        parsed = spec_parse(text=draft.text, filename=draft.filename)
        context = {"spec": pages.spec_preview(parsed), "filename": draft.filename, "form": form}
        return render(request, "web/onboard_preview.html", context, status=400)
    if form.cleaned_data["history"] is not None and not user_can(request.user, "import_telemetry"):
        raise PermissionDenied(
            f"Onboarding with a history file needs the permission to: {CAPABILITIES['import_telemetry'].lower()}; "
            "onboard the line without the file, or ask someone in the data role to import it."
        )
    try:
        outcome = drafts.draft_onboard(
            draft=draft, actor=request.user, history=form.cleaned_data["history"], reason=form.cleaned_data["reason"]
        )
    except SpecError as exc:  # e.g. someone onboarded the same line id since the preview
        context = {"form": SpecUploadForm(), "problems": exc.problems, "filename": draft.filename}
        return render(request, "web/onboard_upload.html", context, status=422)
    drafts.draft_drop(session=request.session, draft_id=form.cleaned_data["draft"])
    if outcome.history_job is not None:
        return redirect("import-detail", job_id=outcome.history_job.pk)
    tag_count = sum(outcome.tags_by_role.values())
    messages.success(request, f"Line {outcome.line.name} onboarded with {tag_count} tags.")
    return redirect("line-detail", key=outcome.line.key)


# --- history imports --------------------------------------------------------------------------------------------
@require_GET
@require_capability("view_plant")
def import_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    """Show a history import: a progress bar while it runs, its counts and rejection report when done."""
    return render(request, "web/import_detail.html", pages.import_context(job_id=job_id))


@require_GET
@require_capability("view_plant")
def import_progress(request: HttpRequest, job_id: int) -> HttpResponse:
    """Return the progress partial; it polls itself (htmx) until the import has finished."""
    return render(request, "web/partials/import_progress.html", pages.import_context(job_id=job_id))


# --- line mode and proposal review ---------------------------------------------------------------------------------
@require_POST
@require_capability("approve_proposal")
def line_mode(request: HttpRequest, key: str) -> HttpResponse:
    """Switch the line off, to shadow or to advisory, with a reason (engineer or admin)."""
    line = line_or_404(key)
    form = ModeForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
    else:
        try:
            line_mode_set(
                line=line, mode=form.cleaned_data["mode"], actor=request.user, reason=form.cleaned_data["reason"]
            )
        except ValueError as e:
            messages.error(request, str(e))
        else:
            messages.success(request, f"{line.name} is now in {line.mode} mode.")
    return redirect("line-detail", key)


@require_GET
@require_capability("view_plant")
def proposal_review(request: HttpRequest, key: str, rec_id: int) -> HttpResponse:
    """Show one proposal for review: moves and limits, predictions against holding, trust, expiry, signatures."""
    line = line_or_404(key)
    return render(
        request, "web/proposal_review.html", pages.review_context(line=line, rec_id=rec_id, user=request.user)
    )


@require_POST
@require_capability("approve_proposal")
def proposal_signature(request: HttpRequest, key: str, rec_id: int) -> HttpResponse:
    """Sign a proposal approved (all or smaller moves) or rejected, with the password re-entered."""
    line = line_or_404(key)
    pages.proposal_or_404(line, rec_id)
    form = SignForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(e for errors in form.errors.values() for e in errors))
        return redirect("proposal-review", key, rec_id)
    data = form.cleaned_data
    try:
        rec = proposal_sign(
            recommendation_id=rec_id,
            actor=request.user,
            password=data["password"],
            decision=data["decision"],
            reason=data["reason"] or "",
            scale=(data["scale_percent"] or 100) / 100,
            client=client_address(request),
        )
    except SigningError as e:
        messages.error(request, str(e))
    else:
        if rec.status == "pending":
            messages.success(request, f"Signed. Proposal {rec.pk} needs a second engineer's signature before release.")
        else:
            messages.success(request, f"Proposal {rec.pk} is {rec.get_status_display()}; your signature is recorded.")
    return redirect("proposal-review", key, rec_id)


@require_GET
@require_capability("view_plant")
def proposal_release(request: HttpRequest, key: str, rec_id: int) -> HttpResponse:
    """Return the release partial of a proposal (htmx polls it while the release runs)."""
    line = line_or_404(key)
    return render(request, "web/partials/release.html", pages.release_partial_context(line=line, rec_id=rec_id))


@require_POST
@require_capability("approve_proposal")
def release_stop_view(request: HttpRequest, key: str, rec_id: int) -> HttpResponse:
    """Stop the line's running release (setpoints held), with a reason."""
    line = line_or_404(key)
    try:
        release_stop(line=line, actor=request.user, reason=request.POST.get("reason", ""))
    except ValueError as e:
        messages.error(request, str(e).capitalize() + ".")
    else:
        messages.success(request, "Release stopped: nothing more is written; the PLC holds the current setpoints.")
    return redirect("proposal-review", key, rec_id)
