"""Onboarding creates the line, spec v1 and tags with their audit events, or nothing at all."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied

from twinops.audit.models import AuditEvent
from twinops.audit.services import audit_chain_verify
from twinops.lines.models import Line, Tag
from twinops.lines.selectors import line_get, line_list, spec_versions
from twinops.lines.services import LineExistsError, SpecError
from twinops.onboarding.services import line_onboard

pytestmark = pytest.mark.django_db


def test_onboarding_creates_the_line_its_first_spec_version_and_tags(small_spec, data_user) -> None:
    result = line_onboard(text=small_spec, filename="demo.yaml", actor=data_user, reason="new reactor")
    line = line_get(key="demo-reactor")
    assert result.line == line and (line.name, line.site, line.sample_period_s) == ("Demo reactor", "Test site", 10.0)
    assert result.tags_by_role == {"CV": 1, "MV": 1, "DV": 1}
    assert result.history is None
    [v1] = spec_versions(line=line)
    assert (v1.version, v1.created_by, v1.created_by_label, v1.reason, v1.filename) == (
        1,
        data_user,
        "dana",
        "new reactor",
        "demo.yaml",
    )
    assert v1.source_text == small_spec and v1.document["line"]["id"] == "demo-reactor"
    f = Tag.objects.get(line=line, name="F")
    assert (f.role, f.unit, f.limit_low, f.limit_high, f.max_move_per_step, f.ramp_rate_per_min) == (
        "MV",
        "m3/h",
        5,
        40,
        2,
        6,
    )
    assert Tag.objects.get(line=line, name="T").safety_high == 120


def test_onboarding_writes_line_created_and_spec_version_created_audit_events(small_spec, data_user) -> None:
    before = AuditEvent.objects.count()
    result = line_onboard(text=small_spec, filename="demo.yaml", actor=data_user, reason="new reactor")
    events = list(AuditEvent.objects.order_by("id")[before:])
    assert [e.action for e in events] == ["line.created", "spec.version_created"]
    assert all(e.actor == data_user and e.reason == "new reactor" for e in events)
    assert events[0].object_id == str(result.line.pk) and events[0].after["key"] == "demo-reactor"
    assert events[1].after["version"] == 1 and events[1].after["tags"]["F"]["limits.high"] == 40
    assert audit_chain_verify().ok


@pytest.mark.parametrize(
    "old,new,field,line",
    [
        ("    unit: m3/h\n", "    unit: m3/h\n  bad: [\n", "(syntax)", 18),  # YAML syntax error
        ("role: DV", "role: dv", "tags[2].role", 23),  # schema violation
        ("limits: {low: 5, high: 40}", "limits: {low: 45, high: 40}", "tags[1].limits.low", 19),  # across fields
    ],
)
def test_a_malformed_spec_creates_nothing(small_spec, data_user, row_counts, old, new, field, line) -> None:
    line_onboard(text=small_spec.replace("demo-reactor", "other-line"), filename="o.yaml", actor=data_user)
    before = row_counts()
    with pytest.raises(SpecError) as caught:
        line_onboard(text=small_spec.replace(old, new), filename="demo.yaml", actor=data_user)
    assert [(p.file, p.field, p.line) for p in caught.value.problems] == [("demo.yaml", field, line)]
    assert row_counts() == before


def test_onboarding_an_existing_line_id_is_refused_and_changes_nothing(small_spec, data_user, row_counts) -> None:
    line_onboard(text=small_spec, filename="demo.yaml", actor=data_user)
    before = row_counts()
    renamed = small_spec.replace("name: Demo reactor", "name: Another reactor")
    with pytest.raises(LineExistsError) as caught:
        line_onboard(text=renamed, filename="again.yaml", actor=data_user)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("again.yaml", 3, "line.id")
    assert "already exists" in problem.reason and "twinops line update demo-reactor" in problem.reason
    assert row_counts() == before
    assert line_get(key="demo-reactor").name == "Demo reactor"


def test_a_user_without_the_onboarding_capability_is_refused(small_spec, make_user, row_counts) -> None:
    before = row_counts()
    with pytest.raises(PermissionDenied, match="may not onboard production lines"):
        line_onboard(text=small_spec, filename="demo.yaml", actor=make_user("engineer"))
    assert row_counts() == before


def test_a_shell_onboarding_is_recorded_under_its_label(small_spec) -> None:
    result = line_onboard(text=small_spec, filename="demo.yaml", actor="cli:root")
    assert result.spec_version.created_by is None and result.spec_version.created_by_label == "cli:root"
    assert AuditEvent.objects.filter(action="line.created").last().actor_label == "cli:root"


def test_the_line_list_counts_active_tags_by_role(small_spec, data_user) -> None:
    line_onboard(text=small_spec, filename="demo.yaml", actor=data_user)
    line_onboard(text=small_spec.replace("demo-reactor", "demo-reactor-2"), filename="b.yaml", actor=data_user)
    Tag.objects.filter(line__key="demo-reactor-2", name="T_in").update(active=False)
    rows = {ln.key: (ln.tags_cv, ln.tags_mv, ln.tags_dv, ln.spec_version) for ln in line_list()}
    assert rows == {"demo-reactor": (1, 1, 1, 1), "demo-reactor-2": (1, 1, 0, 1)}
    with pytest.raises(Line.DoesNotExist):
        line_get(key="nope")
