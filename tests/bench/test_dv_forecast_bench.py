"""bench dv_forecast's quick run: hold and the fitted DV forecast scored side by side on data the fit never saw."""

from __future__ import annotations

from bench import dv_forecast


def test_the_fitted_forecast_is_scored_against_hold_and_never_loses_on_the_demo_lines() -> None:
    out = dv_forecast.run(quick=True)
    key = f"mean_1_{dv_forecast.HORIZON}"
    for line in ("vdv-reactor", "heat-train"):
        record = out[line]
        assert record["dvs"] == 2 and record["fit_rows"] < record["rows"]
        for name, dv in record["per_dv"].items():
            assert set(dv["hold"]) == set(dv["forecast"]) == {"h1", "h5", "h20", "h30", key}, name
            assert dv["forecast"][key] <= dv["hold"][key] * 1.001, (name, dv["why"])  # hold is the fallback
            assert (dv["method"] == "hold") == (dv["phi"] == 1.0)
        assert record["median_rmse_ratio_forecast_over_hold"] <= 1.0
    for real in ("sru", "bibmon"):  # real records: scored when ../shared holds them, else named as skipped
        assert "per_dv" in out[real] or out[real]["skipped"].startswith("no data: ")
