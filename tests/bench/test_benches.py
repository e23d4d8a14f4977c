"""Each benchmark's quick run completes and reports sane figures (timings are printed by the bench, never asserted)."""

from __future__ import annotations

import math


def test_the_mpc_benchmark_reports_our_solves_the_ipopt_subproblem_and_the_naive_formulation() -> None:
    from bench import mpc

    out = mpc.run(quick=True)
    for key in ("p95_ms", "median_ms", "cpu_p95_ms", "ipopt_p95_ms", "naive_p95_ms", "build_s"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    assert out["optimal"] == out["solves"] == 8 and out["failures"] == []
    assert out["ipopt_optimal"] == out["ipopt_solves"]
    assert out["median_ms"] <= out["p95_ms"]
