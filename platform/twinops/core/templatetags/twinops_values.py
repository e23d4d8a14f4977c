"""Stored values shown as people read them: `{{ value|shown }}` for facts whose type a page does not know in advance.

Times in the site's time zone with the zone, to the second; dicts and lists as indented JSON inside a collapsed
`<details>` (auditors open what they need); everything else as text. The page shows; the JSON view keeps exact values.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from django import template
from django.template.defaultfilters import date as date_filter
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

MOMENT = "Y-m-d H:i:s T"  # as the other pages show times


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return _moment(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _moment(value: datetime) -> str:
    return str(date_filter(value, MOMENT))  # Django's `date` filter: the site's zone, as the templates show times


@register.filter
def shown(value: Any) -> SafeString | str:
    """Return a stored value as a page shows it (an en dash for None)."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return _moment(value)
    if isinstance(value, dict | list | tuple):
        size = f"{len(value):,} {'field' if isinstance(value, dict) else 'item'}{'' if len(value) == 1 else 's'}"
        text = json.dumps(value, indent=2, default=_json_default, ensure_ascii=False)
        return format_html('<details class="value"><summary>{}</summary><pre>{}</pre></details>', size, text)
    return str(value)
