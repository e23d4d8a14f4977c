"""Trust is checked along the whole plan: a plan that leads where the twin has not learned is withheld."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from twinops.audit.models import AuditEvent
from twinops.recommendations.services import recommendation_create

from .conftest import ROWS, SPEC, two_tanks

# The line lets the pump run up to 10 m3/h, the twin saw 0.5..1.5 and may plan up to eight training widths beyond;
# pumping earns (a price on the MV itself), so every plan pushes the pump as far as it may.
WIDE = SPEC.replace(
    "physical_range: [0, 5], limits: {low: 0.6, high: 1.4},\n     max_move_per_step: 0.05",
    "physical_range: [0, 20], limits: {low: 0.0, high: 10.0},\n     max_move_per_step: 1.0",
).replace("price: -1.0, description: pumping cost", "price: 1.0, description: pumping paid for")
MARGIN = 8.0


def test_it_withholds_a_plan_whose_ood_score_exceeds_the_limit_naming_the_step_and_setpoints(
    onboard: Callable[..., Any], promote: Callable[..., Any], ingest: Callable[..., datetime], settings: Any
) -> None:
    assert WIDE != SPEC
    # the optimizer's own limit on the plan's OOD score switched off: the recommender's check is the last guard
    settings.TWINOPS_MPC_SETTINGS = {"trust_region_margin": MARGIN, "max_plan_ood": None}
    line = onboard(WIDE)
    promote(line)
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "withheld", rec.reason
    assert rec.inputs["ood_score"] <= 3.0  # the current state is where the twin has learned: the plan is not
    plan = rec.inputs["plan_ood"]
    assert plan["max"] > 3.0
    assert rec.reason.startswith(
        f"the plan leads where the twin has not learned: its OOD score reaches {plan['max']:.2f} at step {plan['step']} "
        "(pump_flow_m3_h="
    )
    assert "above 3 (1 = the 99th percentile of its training data)" in rec.reason
    assert rec.result is None and not rec.has_proposal
    assert AuditEvent.objects.filter(action="recommendation.withheld", object_id=str(rec.pk)).count() == 1


def test_a_plan_inside_the_training_data_is_proposed_with_its_ood_along_the_plan(ready: Any) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:test", now=now)
    assert rec.status == "pending", rec.reason
    assert 0 < rec.result["plan_ood_max"] <= 3.0
    assert len(rec.result["plan_ood"]) == rec.result["horizon"]


def test_by_default_the_optimizer_keeps_such_a_plan_inside_the_twins_data_and_proposes_it(
    onboard: Callable[..., Any], promote: Callable[..., Any], ingest: Callable[..., datetime], settings: Any
) -> None:
    settings.TWINOPS_MPC_SETTINGS = {"trust_region_margin": MARGIN}
    line = onboard(WIDE)
    promote(line)
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.status == "shadow" and rec.has_proposal, rec.reason  # a new line starts in shadow mode
    assert rec.settings["mpc"]["max_plan_ood"] == 0.9 * 3.0
    assert rec.result["plan_ood_max"] <= 3.0
