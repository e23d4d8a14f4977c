"""DV forecasts: decay toward the mean where the history shows it forecasts better than hold, else hold."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.disturbances import dv_forecast, dv_forecast_fit, multistep_rmse

H = 30  # the recommender's horizon


def drifting(n: int, seed: int, *, tau: float = 200.0, noise: float = 0.3) -> np.ndarray:
    """Return an Ornstein-Uhlenbeck disturbance around 10 (sd 1, time constant tau samples) read with sensor noise."""
    rng = np.random.default_rng(seed)
    a = np.exp(-1.0 / tau)
    x = np.empty(n)
    x[0] = 10.0
    for k in range(1, n):
        x[k] = 10.0 + a * (x[k - 1] - 10.0) + np.sqrt(1 - a * a) * rng.normal()
    return x + rng.normal(0.0, noise, n)


def test_a_disturbance_that_returns_to_its_mean_is_forecast_better_than_held_on_later_data() -> None:
    d = drifting(12000, seed=1)
    fit, later = d[:6000], d[6000:]
    model = dv_forecast_fit(fit[:, None], ["T_in"], H)
    assert model.method[0].startswith("decay"), model.why[0]
    assert 0.95 < model.phi[0] < 1.0
    horizons = range(1, H + 1)
    decay = np.mean(multistep_rmse(later, model.mean[0], model.phi[0], horizons))
    hold = np.mean(multistep_rmse(later, 0.0, 1.0, horizons))
    assert decay < 0.98 * hold  # the sensor noise in the current value is most of what neither can forecast


def test_a_trending_disturbance_is_held_saying_why() -> None:
    rng = np.random.default_rng(2)
    d = np.cumsum(rng.normal(0.05, 0.1, 4000))  # a random walk with a trend: no mean to return to
    model = dv_forecast_fit(d[:, None], ["C_A0"], H)
    assert model.method == ("hold",) and model.phi[0] == 1.0
    assert model.why[0].startswith("held: decay toward the mean did not beat hold on the held-out history")
    assert dv_forecast(model, {"C_A0": 3.5}, H) == {"C_A0": [3.5] * H}


def test_a_history_with_gaps_is_held_at_the_current_value_and_never_gives_nan() -> None:
    d = drifting(4000, seed=3)
    d[1::2] = np.nan  # every other sample bad: no two consecutive good samples
    model = dv_forecast_fit(d[:, None], ["T_in"], H)
    assert model.method == ("hold",)
    assert model.why[0].startswith("held: 0 pairs of consecutive good samples to fit on")
    forecast = dv_forecast(model, {"T_in": 11.0}, H)["T_in"]
    assert forecast == [11.0] * H


def test_short_gaps_are_skipped_and_the_forecast_decays_toward_the_mean() -> None:
    d = drifting(12000, seed=4)
    d[np.random.default_rng(5).random(len(d)) < 0.05] = np.nan  # 5 % of samples bad, scattered
    model = dv_forecast_fit(d[:, None], ["T_in"], H)
    assert model.method[0].startswith("decay"), model.why[0]
    values = np.array(dv_forecast(model, {"T_in": 13.0}, H)["T_in"])
    assert np.all(np.isfinite(values)) and values.shape == (H,)
    assert np.all(np.diff(values) < 0) and values[-1] > model.mean[0]  # toward the mean, never past it
    assert values[0] == pytest.approx(model.mean[0] + model.phi[0] * (13.0 - model.mean[0]))
