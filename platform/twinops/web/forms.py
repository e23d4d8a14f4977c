"""Forms for the dashboard: every uploaded file and query parameter is checked here, with messages a user can act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

SPEC_MAX_BYTES = 1024 * 1024  # a spec of a few hundred tags is tens of kB; anything larger is not a spec
SPEC_EXTENSIONS = (".yaml", ".yml", ".json")
HISTORY_EXTENSIONS = (".csv", ".parquet")
CHART_MAX_TAGS = 8  # more than this on one screen is unreadable and slow

RANGE_PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB"


def _check_file(upload: UploadedFile, *, extensions: tuple[str, ...], max_bytes: int, what: str) -> UploadedFile:
    """Refuse a file with the wrong extension, no content, or too many bytes."""
    suffix = PurePath(upload.name or "").suffix.lower()
    if suffix not in extensions:
        raise forms.ValidationError(
            f"{what} must be a {', '.join(extensions[:-1])} or {extensions[-1]} file; {upload.name!r} is not."
        )
    if upload.size == 0:
        raise forms.ValidationError(f"{upload.name!r} is empty.")
    if upload.size is not None and upload.size > max_bytes:
        raise forms.ValidationError(
            f"{upload.name!r} is {_megabytes(upload.size)}; {what.lower()} files may be at most {_megabytes(max_bytes)}."
        )
    return upload


class SpecUploadForm(forms.Form):
    """Step 1 of onboarding: the line spec file."""

    spec = forms.FileField(
        label="Line spec",
        help_text=f"YAML or JSON, at most {_megabytes(SPEC_MAX_BYTES)}. See docs/line-spec.md for the format.",
    )

    def clean_spec(self) -> UploadedFile:
        upload = _check_file(
            self.cleaned_data["spec"], extensions=SPEC_EXTENSIONS, max_bytes=SPEC_MAX_BYTES, what="A spec"
        )
        return upload

    def spec_text(self) -> str:
        """Return the uploaded spec as text (UTF-8), or add a form error and return ''."""
        raw = self.cleaned_data["spec"].read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            self.add_error("spec", f"The spec is not UTF-8 text (undecodable byte at position {exc.start}).")
            return ""


class OnboardConfirmForm(forms.Form):
    """Step 2 of onboarding: confirm the previewed spec, optionally with a history file to import."""

    draft = forms.CharField(widget=forms.HiddenInput)  # the previewed spec, kept in the session under this id
    history = forms.FileField(
        label="History file (optional)",
        required=False,
        help_text=(
            "CSV or Parquet: wide (timestamp + one column per tag) or long (timestamp, tag, value), "
            f"at most {_megabytes(settings.HISTORY_UPLOAD_MAX_BYTES)}."
        ),
    )
    reason = forms.CharField(
        label="Why (recorded in the audit log)",
        required=False,
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "e.g. commissioning of line 3"}),
    )

    def clean_history(self) -> UploadedFile | None:
        upload = self.cleaned_data.get("history")
        if not upload:
            return None
        return _check_file(
            upload, extensions=HISTORY_EXTENSIONS, max_bytes=settings.HISTORY_UPLOAD_MAX_BYTES, what="A history"
        )


_LOCAL_INPUT: dict[str, Any] = {"attrs": {"type": "datetime-local", "step": 60}, "format": "%Y-%m-%dT%H:%M"}


class ChartForm(forms.Form):
    """Which tags to chart over which time range (query string of the line page and its chart partial)."""

    tags = forms.MultipleChoiceField(required=False)
    range = forms.ChoiceField(
        choices=[("1h", "1 h"), ("24h", "24 h"), ("7d", "7 d"), ("custom", "Custom")], required=False
    )
    start = forms.DateTimeField(required=False, label="From (UTC)", widget=forms.DateTimeInput(**_LOCAL_INPUT))
    end = forms.DateTimeField(required=False, label="To (UTC)", widget=forms.DateTimeInput(**_LOCAL_INPUT))
    # Presets end here: the newest sample when the page was drawn, so imported (old) history shows at once.
    anchor = forms.DateTimeField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, tag_names: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["tags"].choices = [(n, n) for n in tag_names]

    def clean_tags(self) -> list[str]:
        tags: list[str] = self.cleaned_data.get("tags") or []
        if len(tags) > CHART_MAX_TAGS:
            raise forms.ValidationError(f"Pick at most {CHART_MAX_TAGS} tags at once ({len(tags)} picked).")
        return tags

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        preset = data.get("range") or "24h"
        data["range"] = preset
        if preset == "custom":
            start, end = data.get("start"), data.get("end")
            if not start or not end:
                raise forms.ValidationError("A custom range needs both a start and an end.")
            if end <= start:
                raise forms.ValidationError("The end of the range must come after its start.")
            if end - start > timedelta(days=366):
                raise forms.ValidationError("A custom range may span at most one year.")
        return data

    def window(self, *, now: datetime, latest: datetime | None) -> tuple[datetime, datetime]:
        """Return the chosen (start, end) in UTC; presets end at the latest sample (or now when there is none)."""
        preset = self.cleaned_data["range"]
        if preset == "custom":
            start, end = self.cleaned_data["start"], self.cleaned_data["end"]
            return (_utc(start), _utc(end))
        end = latest or now
        return (end - RANGE_PRESETS[preset], end)


def _utc(value: datetime) -> datetime:
    """Read a naive datetime-local value as UTC (the dashboard's time zone)."""
    if timezone.is_naive(value):
        return timezone.make_aware(value, UTC)
    return value.astimezone(UTC)


class SignForm(forms.Form):
    """An engineer's signature on a proposal: the decision, the password re-entered, a reason, the share of the moves."""

    decision = forms.ChoiceField(choices=[("approve", "approve"), ("reject", "reject")])
    password = forms.CharField(strip=False, widget=forms.PasswordInput, max_length=4096)
    reason = forms.CharField(required=False, max_length=2000)
    scale_percent = forms.IntegerField(required=False, min_value=1, max_value=100)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("decision") == "reject" and not (data.get("reason") or "").strip():
            self.add_error("reason", "Give a reason for rejecting the proposal.")
        return data


class ModeForm(forms.Form):
    """A line's new mode and why."""

    mode = forms.ChoiceField(choices=[("off", "off"), ("shadow", "shadow"), ("advisory", "advisory")])
    reason = forms.CharField(max_length=2000, error_messages={"required": "Give a reason for changing the mode."})
