"""`twinops bench NAME --seeds …`: a long multi-seed bench runs on the seeds asked for, and refuses what it cannot."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bench import learning


def test_seeds_split_a_multi_seed_run(monkeypatch: pytest.MonkeyPatch) -> None:
    # each seed's hour of simulation is replaced by a fixed result: what is checked is which seeds are run
    asked = []
    monkeypatch.setenv("TWINOPS_BENCH_CLOSEDLOOP_JOBS", "1")  # in this process: the stand-in below is not picklable
    monkeypatch.setattr(
        learning, "seed_run", lambda line, seed, quick, rounds: asked.append((line, seed)) or _one_seed()
    )
    out = StringIO()
    call_command("bench", "learning", "--seeds", "33,35", "--json", stdout=out)
    assert asked == [(line, s) for line in learning.LINES for s in (33, 35)]
    assert json.loads(out.getvalue())["seeds"] == [33, 35]
    asked.clear()
    call_command("bench", "learning", "--seeds", "34", "--lines", "heat-train", "--json", stdout=(out := StringIO()))
    figures = json.loads(out.getvalue())
    assert asked == [("heat-train", 34)] and "heat-train" in figures and "vdv-reactor" not in figures


@pytest.mark.parametrize(
    ("name", "seeds", "says"),
    [
        ("learning", "5", r"tuning seeds \[5\] are never reported"),
        ("learning", "31,x", "invalid literal for int"),
        ("mpc", "31", "bench mpc does not run over seeds"),
    ],
)
def test_seeds_a_bench_cannot_run_are_refused_in_one_line(name: str, seeds: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        call_command("bench", name, "--seeds", seeds)


def test_a_line_the_bench_does_not_simulate_is_refused_with_the_lines_it_has() -> None:
    with pytest.raises(CommandError, match="no line tanks in this bench; lines: vdv-reactor, heat-train"):
        call_command("bench", "learning", "--lines", "heat-train,tanks")
    with pytest.raises(CommandError, match="bench closedloop does not run over lines"):
        call_command("bench", "closedloop", "--lines", "heat-train")


def _one_seed() -> dict:
    run = {
        "gain_ratio": 0.5,
        "coverage_counts": {"1": [9, 10]},
        "hard_violations": 0,
        "soft_violation_minutes": 0.0,
        "no_proposal": 0,
        "steps": 10,
        "trained_mv_range": {},
        "mv_used": {},
        "final_setpoints": {},
    }
    return {"baseline": run, "rounds": [run] * learning.ROUNDS, "train_s": [1.0]}
