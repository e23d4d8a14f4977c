"""The problem description is read from a line spec as documented in docs/line-spec.md."""

from __future__ import annotations

import pytest

from optimizer import CvTarget, Limits, MpcSettings, MpcSpec, ObjectiveTerm

LINE_SPEC = {
    "schema_version": 1,
    "line": {"id": "vdv-reactor", "name": "Van de Vusse reactor", "sample_period_s": 18},
    "tags": [
        {
            "name": "C_b",
            "role": "CV",
            "unit": "mol/l",
            "limits": {"low": 0.5, "high": 2.0},
            "safety_limits": {"high": None},
        },
        {"name": "T", "role": "CV", "limits": {"high": 130.0}, "safety_limits": {"high": 140.0}, "soft_limit_rank": 2},
        {
            "name": "F",
            "role": "MV",
            "limits": {"low": 5, "high": 100},
            "max_move_per_step": 5.0,
            "ramp_rate_per_min": 10.0,
        },
        {"name": "Q_dot", "role": "MV", "limits": {"low": -8500, "high": 0}},
        {"name": "T_in", "role": "DV"},
    ],
    "objective": {
        "currency": "EUR",
        "terms": [
            {"tags": ["F", "C_b"], "price": 2.0, "description": "product value"},
            {"tags": ["Q_dot"], "price": 0.001, "description": "cooling cost"},
        ],
        "targets": [{"tag": "C_b", "value": 0.6, "weight": 1.0}],
    },
}


def test_a_line_spec_becomes_a_problem_description_keyed_by_tag_name() -> None:
    spec = MpcSpec.from_line_spec(LINE_SPEC)
    assert [c.name for c in spec.cvs] == ["C_b", "T"] and [m.name for m in spec.mvs] == ["F", "Q_dot"]
    assert spec.cvs[0].limits == Limits(0.5, 2.0) and spec.cvs[0].safety == Limits()
    assert spec.cvs[1].safety == Limits(None, 140.0) and spec.cvs[1].rank == 2
    assert spec.mvs[0].max_move_per_step == 5.0 and spec.mvs[0].ramp_rate_per_min == 10.0
    assert spec.mvs[1].max_move_per_step is None
    assert [d.name for d in spec.dvs] == ["T_in"]
    assert spec.objective_terms[0] == ObjectiveTerm(("F", "C_b"), 2.0, "product value")
    assert spec.targets == (CvTarget("C_b", 0.6, 1.0),)
    assert spec.sample_period_s == 18.0


def test_inconsistent_limits_and_settings_are_refused_loudly() -> None:
    with pytest.raises(ValueError, match="exceeds high limit"):
        Limits(2.0, 1.0)
    with pytest.raises(ValueError, match="hessian"):
        MpcSettings(hessian="bfgs")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="soft_penalty_by_rank"):
        MpcSettings(soft_penalty_by_rank=())
