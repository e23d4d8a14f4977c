"""Moving-horizon latent estimate: forecasts from it follow the measured CVs better than the encoder's latent."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

from twins import Record, TrainingOutcome, Twin, TwinDataset, evaluate, train_and_evaluate
from twins.estimation import (
    OFFSET_SCALE,
    MheSettings,
    estimate_latent,
    estimate_state,
    estimate_with_offset,
    forecast_from,
)
from twins.uncertainty import spaced

from .conftest import as_dataset, two_tanks

ENCODER = MheSettings(horizon=0)


TEST_START = 2550  # the shared twin's test segment: 3000 rows split 70/15/15


def _errors(twin: Twin, data: TwinDataset, truth: np.ndarray, settings: MheSettings) -> np.ndarray:
    """RMS error of the member-mean forecast at 1 and 5 steps over the test segment, normalised: (2,)."""
    rows = spaced(np.arange(TEST_START, len(data) - 5), 200)
    lt = twin.tensors(data)
    pred = forecast_from(twin, lt, rows, estimate_latent(twin, data, rows, lt, settings), 5).mean(0)
    truth_n = (truth - twin.norm.cv_mean) / twin.norm.cv_std
    return np.array([np.sqrt(np.mean((pred[:, h] - truth_n[rows + h]) ** 2)) for h in (1, 5)])


def test_forecasts_from_the_estimate_follow_the_next_five_samples_closer_than_the_encoders(
    trained: TrainingOutcome,
) -> None:
    data, twin = trained.split.dataset, trained.twin
    assert trained.split.val_stop == TEST_START
    encoder = _errors(twin, data, data.cv, ENCODER)
    estimated = _errors(twin, data, data.cv, MheSettings())
    assert (estimated < 0.8 * encoder).all(), (estimated, encoder)


def test_with_noisier_sensors_than_in_training_the_estimate_still_forecasts_the_true_levels_better(
    trained: TrainingOutcome,
) -> None:
    clean = two_tanks(3000, 0)  # the shared twin's record
    noisy = dict(clean, cv=clean["cv"] + np.random.default_rng(1).normal(0.0, 0.05, clean["cv"].shape))  # 5x
    data = as_dataset(noisy)
    encoder = _errors(trained.twin, data, clean["cv"], ENCODER)
    estimated = _errors(trained.twin, data, clean["cv"], MheSettings())
    assert (estimated < encoder).all(), (estimated, encoder)


def test_a_twin_whose_dynamics_return_nan_gives_the_encoders_latent_never_nan(trained: TrainingOutcome) -> None:
    broken = copy.deepcopy(trained.twin)
    with torch.no_grad():
        broken.net.predictor.linears()[0].weight[:, 0, 0] = float("nan")
    data, rows = trained.split.dataset, np.array([2600, 2700])
    z = estimate_latent(broken, data, rows)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(z, broken.encode(data, rows))


def test_cvs_missing_over_the_whole_horizon_leave_the_encoders_earlier_latent_rolled_forward(
    trained: TrainingOutcome,
) -> None:
    arrays = two_tanks(3000, 0)
    cv_mask = np.ones(arrays["cv"].shape, bool)
    cv_mask[2600 - 16 : 2601] = False  # an outage of every CV sensor over the estimate's horizon
    data, twin = as_dataset(arrays, cv_mask=cv_mask), trained.twin
    z = estimate_latent(twin, data, np.array([2600]))
    lt = twin.tensors(data)
    prior = twin.encode(data, np.array([2600 - 16]), lt)  # nothing measured: the fit keeps the prior
    rolled = forecast_from(twin, lt, np.array([2600 - 16]), prior, 16)[:, :, -1]  # its CVs 16 samples on
    assert np.isfinite(z).all()
    np.testing.assert_allclose(twin.readout(z), rolled * twin.norm.cv_std + twin.norm.cv_mean, atol=1e-4)


def test_a_history_shorter_than_the_horizon_is_estimated_over_the_rows_there_are(trained: TrainingOutcome) -> None:
    twin, full = trained.twin, trained.split.dataset
    short = as_dataset({k: v[2600:2610] for k, v in two_tanks(3000, 0).items()})  # 10 rows, horizon 16
    z = estimate_state(twin, short)
    assert z.shape == (twin.config.members, twin.config.nz) and np.isfinite(z).all()
    np.testing.assert_array_equal(estimate_state(twin, full, ENCODER), twin.initial_state(full))


@pytest.mark.parametrize("bad", [{"horizon": -1}, {"iterations": -1}, {"prior_scale": 0.0}, {"offset_scale": 0.0}])
def test_settings_that_make_no_sense_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MheSettings(**bad)  # type: ignore[arg-type]


def test_training_keeps_the_estimate_only_where_it_forecasts_no_worse_at_1_5_and_20_steps(
    trained: TrainingOutcome,
) -> None:
    twin, choice = trained.twin, trained.twin.estimator_choice
    assert choice is not None and choice["rows"] > 100
    errors = choice["rms_error"]
    # On this tiny twin the fit sharpens the next samples but loses 20 steps out, so the encoder is kept.
    assert errors["moving_horizon"]["h1"] < errors["encoder"]["h1"]
    assert errors["moving_horizon"]["h20"] > errors["encoder"]["h20"]
    assert choice["chosen"] == "encoder" and twin.estimator is None
    # an offset over a longer horizon first, then the plain fit: neither is kept
    assert [t["settings"]["offset_scale"] for t in choice["tried"]] == [OFFSET_SCALE, None]
    data, rows = trained.split.dataset, np.array([2600, 2700])
    np.testing.assert_array_equal(twin.encode(data, rows), estimate_latent(twin, data, rows, settings=ENCODER))


def test_a_kept_estimate_gets_its_band_recalibrated_on_its_own_forecasts(
    trained: TrainingOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twins import train as training

    def keep(
        twin: Twin, lt: Any, rows: np.ndarray, candidates: list[MheSettings]
    ) -> tuple[MheSettings, dict[str, Any]]:
        return candidates[-1], {"chosen": "moving_horizon"}  # the plain fit

    monkeypatch.setattr(training, "choose_estimator", keep)  # as a twin would where the fit wins on validation
    kept = train_and_evaluate(trained.split.dataset, trained.twin.config)
    assert kept.twin.estimator is not None and kept.twin.state_rows > trained.twin.state_rows
    assert kept.twin.estimator.noise == pytest.approx(tuple(trained.twin.calibration.floor))  # chosen with these
    stale = copy.copy(kept.twin)
    stale.calibration = trained.twin.calibration  # the encoder's band on the estimate's forecasts
    nominal = kept.twin.config.interval

    def deviation(twin: Twin) -> float:  # mean |test coverage - nominal| at h1, h5 and h20, over CVs
        coverage = evaluate(twin, kept.split, [], Record.build(kept.split, twin.norm)).coverage
        return float(np.mean([abs(c - nominal) for h in ("h1", "h5", "h20") for c in coverage[h].values()]))

    # Measured: 0.06 against 0.11 (the stale band over-covers the sharper next steps, under-covers 20 steps out).
    assert deviation(kept.twin) < 0.7 * deviation(stale)


def test_on_a_plant_drifted_since_training_the_fitted_offset_forecasts_closer_than_a_bias_taken_now(
    trained: TrainingOutcome,
) -> None:
    # The lower tank's outflow coefficient 10 % lower than in training: its level settles higher than the twin's
    # dynamics say. The platform's older way to stay offset-free adds the CV error now (measured minus the twin's
    # reading) to every step ahead; the fitted offset is the constant error over the whole horizon instead.
    twin = trained.twin
    data = as_dataset(two_tanks(3000, 0, outflow=0.45))
    lt, rows, steps = twin.tensors(data), spaced(np.arange(TEST_START, len(data) - 20), 200), 20
    truth = lt.y[torch.as_tensor(rows[:, None] + np.arange(steps + 1))].double().numpy()
    plain, offset = MheSettings(), MheSettings(offset_scale=OFFSET_SCALE)
    z = estimate_latent(twin, data, rows, lt, plain)
    now = forecast_from(twin, lt, rows, z, 0).mean(0)[:, 0]  # (N, n_cv) the twin's reading at the row
    with_bias = forecast_from(twin, lt, rows, z, steps).mean(0) + (truth[:, 0] - now)[:, None, :]
    z_b, b = estimate_with_offset(twin, data, rows, lt, offset)
    with_offset = (forecast_from(twin, lt, rows, z_b, steps) + b[:, :, None, :]).mean(0)

    def rms(pred: np.ndarray) -> np.ndarray:
        return np.sqrt(np.mean((pred - truth)[:, [5, 20]] ** 2, axis=(0, 2)))

    # Measured: h5 0.026 against 0.031, h20 0.064 against 0.104; the offset fitted on the lower level +0.42.
    assert (rms(with_offset) < rms(with_bias)).all(), (rms(with_offset), rms(with_bias))
    # the offset is the plant's: every member has the same one, and the members differ in state only
    np.testing.assert_array_equal(b, np.broadcast_to(b[:1], b.shape))
    assert np.ptp(z_b, axis=0).max() > 0


def test_settings_stored_before_the_offset_existed_load_as_the_plain_fit_they_were() -> None:
    stored = {"horizon": 16, "prior_scale": 1.0, "iterations": 2, "noise": [0.1, 0.2]}  # a session-9 checkpoint's
    assert MheSettings.from_dict(stored) == MheSettings(noise=(0.1, 0.2))
    offset = MheSettings(horizon=48, noise=(0.1, 0.2), offset_scale=OFFSET_SCALE)
    assert MheSettings.from_dict(offset.to_dict()) == offset
