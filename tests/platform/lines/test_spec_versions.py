"""A changed spec makes a new version with who/when/why; tags keep their ids; dropped tags stay, inactive."""

from __future__ import annotations

import pytest

from twinops.audit.models import AuditEvent
from twinops.lines.models import SpecVersion, Tag
from twinops.lines.selectors import line_tags, spec_diff, spec_versions
from twinops.lines.services import SpecError, SpecUnchangedError, spec_version_create
from twinops.onboarding.services import line_onboard

pytestmark = pytest.mark.django_db


@pytest.fixture
def line(small_spec, data_user):  # noqa: ANN001, ANN201
    return line_onboard(text=small_spec, filename="demo.yaml", actor=data_user).line


def test_a_change_of_limits_makes_a_new_version_with_who_and_why(line, small_spec, make_user) -> None:
    erin = make_user("data", username="erin")
    changed = small_spec.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 35}")
    v2 = spec_version_create(line=line, text=changed, filename="demo-v2.yaml", actor=erin, reason="pump derated")
    assert (v2.version, v2.created_by, v2.reason, v2.filename) == (2, erin, "pump derated", "demo-v2.yaml")
    assert [v.version for v in spec_versions(line=line)] == [1, 2]
    assert Tag.objects.get(line=line, name="F").limit_high == 35


def test_the_audit_event_holds_the_limits_before_and_after(line, small_spec, data_user) -> None:
    changed = small_spec.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 35}").replace(
        "safety_limits: {high: 120}", "safety_limits: {high: 110}"
    )
    v2 = spec_version_create(line=line, text=changed, filename="demo.yaml", actor=data_user, reason="pump derated")
    event = AuditEvent.objects.filter(action="spec.version_created").order_by("-id").first()
    assert (event.object_id, event.actor, event.reason) == (str(v2.pk), data_user, "pump derated")
    assert event.before == {"version": 1, "tags": {"F": {"limits.high": 40}, "T": {"safety_limits.high": 120}}}
    assert event.after["version"] == 2
    assert event.after["tags"] == {"F": {"limits.high": 35}, "T": {"safety_limits.high": 110}}


def test_a_dropped_tag_is_kept_inactive_and_returns_with_its_id(line, small_spec, data_user) -> None:
    ids = {t.name: t.pk for t in Tag.objects.filter(line=line)}
    without_dv = small_spec.split("  - name: T_in")[0] + small_spec.split("physical_range: [-20, 60]\n")[1]
    spec_version_create(line=line, text=without_dv, filename="demo.yaml", actor=data_user, reason="sensor removed")
    t_in = Tag.objects.get(line=line, name="T_in")
    assert not t_in.active and t_in.pk == ids["T_in"]
    assert sorted(t.name for t in line_tags(line=line)) == ["F", "T"]
    assert {t.name: t.pk for t in Tag.objects.filter(line=line)} == ids
    event = AuditEvent.objects.filter(action="spec.version_created").order_by("-id").first()
    assert event.after["tags_dropped"] == ["T_in"]
    spec_version_create(line=line, text=small_spec, filename="demo.yaml", actor=data_user, reason="sensor back")
    assert Tag.objects.get(line=line, name="T_in").active
    assert {t.name: t.pk for t in Tag.objects.filter(line=line)} == ids


def test_an_unchanged_spec_makes_no_new_version(line, small_spec, data_user) -> None:
    commented = "# only a comment changed\n" + small_spec
    events = AuditEvent.objects.count()
    with pytest.raises(SpecUnchangedError, match="says the same as version 1"):
        spec_version_create(line=line, text=commented, filename="demo.yaml", actor=data_user, reason="no-op")
    assert SpecVersion.objects.filter(line=line).count() == 1
    assert AuditEvent.objects.count() == events


def test_a_new_version_needs_a_reason(line, small_spec, data_user) -> None:
    changed = small_spec.replace("name: Demo reactor", "name: Renamed reactor")
    with pytest.raises(ValueError, match="a reason is required"):
        spec_version_create(line=line, text=changed, filename="demo.yaml", actor=data_user, reason="  ")
    assert SpecVersion.objects.filter(line=line).count() == 1


def test_a_spec_for_another_line_id_is_refused(line, small_spec, data_user) -> None:
    other = small_spec.replace("id: demo-reactor", "id: other-line")
    with pytest.raises(SpecError) as caught:
        spec_version_create(line=line, text=other, filename="other.yaml", actor=data_user, reason="oops")
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (3, "line.id") and "not 'demo-reactor'" in problem.reason
    assert SpecVersion.objects.filter(line=line).count() == 1


def test_an_invalid_new_version_changes_nothing(line, small_spec, data_user, row_counts) -> None:
    before = row_counts()
    bad = small_spec.replace("limits: {low: 5, high: 40}", "limits: {low: 5, high: 60}")
    with pytest.raises(SpecError):
        spec_version_create(line=line, text=bad, filename="demo.yaml", actor=data_user, reason="too far")
    assert row_counts() == before
    assert Tag.objects.get(line=line, name="F").limit_high == 40


def test_spec_diff_lists_added_dropped_and_changed_fields(line, small_spec, data_user) -> None:
    changed = (
        small_spec.replace("name: Demo reactor", "name: Reactor 1")
        .replace("    unit: m3/h", "    unit: l/h")
        .replace(
            "  - name: T_in",
            "  - name: P\n    role: DV\n    unit: bar\n    physical_range: [0, 10]\n  - name: T_in_old",
        )
    )
    spec_version_create(line=line, text=changed, filename="demo.yaml", actor=data_user, reason="rework")
    v1, v2 = spec_versions(line=line)
    diff = spec_diff(v1, v2)
    assert diff.line == {"name": ["Demo reactor", "Reactor 1"]}
    assert diff.tags_added == ["P", "T_in_old"] and diff.tags_dropped == ["T_in"]
    assert diff.tags_changed == {"F": {"unit": ["m3/h", "l/h"]}}
    assert diff.objective is None
    assert "F: unit 'm3/h' -> 'l/h'" in diff.lines()
    assert spec_diff(v2, v2).empty
