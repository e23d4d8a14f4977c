"""One sanitiser makes data storable in jsonb: no NaN or infinity, no numpy types, no datetimes left."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest
from django.db import transaction

from twinops.audit.services import audit_record
from twinops.core.jsonable import json_plain


def test_non_finite_numbers_become_none_at_any_depth() -> None:
    data = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": np.float32("nan")}}
    assert json_plain(data) == {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": None}}


def test_numpy_values_keys_and_datetimes_become_plain_json() -> None:
    at = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    plain = json_plain({1: np.int64(3), "arr": np.array([0.5, np.nan]), "at": at})
    assert plain == {"1": 3, "arr": [0.5, None], "at": "2026-03-01T12:30:00+00:00"}
    assert type(plain["1"]) is int


@pytest.mark.django_db
def test_an_audit_event_with_a_non_finite_number_is_stored_with_null() -> None:
    # audit_record refuses NaN (tests/platform/audit/test_canonical.py); a caller that means null sanitises first
    with transaction.atomic():
        event = audit_record(
            actor="system:test",
            action="test.done",
            object_type="x",
            object_id="1",
            after=json_plain({"gain": math.nan, "ok": 1.0}),
        )
    event.refresh_from_db()
    assert event.after == {"gain": None, "ok": 1.0}
