"""Forms of the twin page: a reason for promotion and rollback, a window for training."""

from __future__ import annotations

from typing import Any

from django import forms


class ReasonForm(forms.Form):
    """Why a twin is promoted or rolled back; kept in the audit log."""

    reason = forms.CharField(max_length=500, strip=True, widget=forms.TextInput(attrs={"placeholder": "reason"}))


class TrainForm(forms.Form):
    """An optional window of history to train on (default: all of it)."""

    start = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    end = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["start"] >= data["end"]:
            raise forms.ValidationError("the start must be before the end")
        return data
