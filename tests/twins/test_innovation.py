"""Innovation scores: the twin notices when the measured CVs leave what it just predicted, and says which CVs."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from twins import TrainingOutcome, TwinDataset, load_checkpoint, save_checkpoint
from twins.innovation import conformal_quantile, innovation_scores, period_bound, student_t_quantile

from .conftest import as_dataset, two_tanks


def _scored(outcome: TrainingOutcome, data: TwinDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score the test segment of a record (never used for training, weights or thresholds)."""
    twin, split = outcome.twin, outcome.split
    rows = np.arange(split.val_stop + twin.innovation.lookback, len(data))
    score = innovation_scores(twin, data, rows)
    return rows, score.combined, score.per_cv


def test_training_stores_thresholds_fitted_on_normal_validation_data_at_the_stated_rate(
    trained: TrainingOutcome,
) -> None:
    limits = trained.twin.innovation
    assert limits is not None
    assert limits.false_alarm_rate == 0.01 and limits.source == "val" and limits.samples >= 30
    assert limits.per_cv.shape == (2,) and np.all(limits.per_cv > 0) and limits.combined > 0


def test_normal_data_the_twin_has_not_seen_rarely_raises_an_alarm(trained: TrainingOutcome) -> None:
    _, combined, _ = _scored(trained, as_dataset(two_tanks(3000, seed=0)))
    assert np.mean(combined > trained.twin.innovation.combined) <= 0.05


def test_a_sensor_bias_step_on_one_cv_raises_the_alarm_and_names_that_cv(trained: TrainingOutcome) -> None:
    arrays = two_tanks(3000, seed=0)
    step = 2750
    arrays["cv"][step:, 1] += 0.3  # lower-level transmitter reads 0.3 m high from row 2750 on
    rows, combined, per_cv = _scored(trained, as_dataset(arrays))
    limits = trained.twin.innovation
    just_after = (rows > step) & (rows <= step + limits.lookback)  # the forecasts made before the step see it
    assert np.all(combined[just_after] > limits.combined)
    assert np.all(per_cv[just_after, 1] > limits.per_cv[1])  # lower_level_m is named ...
    assert np.mean(per_cv[just_after, 0] > limits.per_cv[0]) < 0.5  # ... the upper level mostly is not
    before = rows <= step
    assert np.mean(combined[before] > limits.combined) <= 0.05


@pytest.mark.parametrize("fault", ["drift", "stuck"])
def test_drift_and_stuck_sensors_raise_the_alarm(trained: TrainingOutcome, fault: str) -> None:
    arrays = two_tanks(3000, seed=0)
    step = 2750
    if fault == "drift":
        arrays["cv"][step:, 1] += 0.01 * np.arange(3000 - step)  # 1 cm per sample
    else:
        arrays["cv"][step:, 0] = arrays["cv"][step, 0]  # upper level frozen while the pump keeps stepping
    rows, combined, _ = _scored(trained, as_dataset(arrays))
    limits = trained.twin.innovation
    after, before = rows > step + 50, rows <= step
    assert np.mean(combined[after] > limits.combined) > 0.3
    assert np.mean(combined[after] > limits.combined) > 3 * np.mean(combined[before] > limits.combined)


def test_thresholds_survive_a_checkpoint_round_trip(trained: TrainingOutcome, tmp_path: Path) -> None:
    save_checkpoint(trained.twin, tmp_path / "twin.ckpt")
    loaded = load_checkpoint(tmp_path / "twin.ckpt").innovation
    assert loaded is not None
    assert loaded.combined == trained.twin.innovation.combined
    np.testing.assert_array_equal(loaded.per_cv, trained.twin.innovation.per_cv)


def test_a_checkpoint_from_before_thresholds_loads_and_scoring_says_to_retrain(
    trained: TrainingOutcome, tmp_path: Path, tanks: Callable[..., TwinDataset]
) -> None:
    old = copy.copy(trained.twin)
    old.innovation = None  # what a twin trained before innovation thresholds saved
    save_checkpoint(old, tmp_path / "old.ckpt")
    twin = load_checkpoint(tmp_path / "old.ckpt")
    assert twin.innovation is None
    with pytest.raises(ValueError, match="trained before they existed; retrain it"):
        innovation_scores(twin, tanks(200, 3), np.arange(20, 200))


def test_the_conformal_threshold_is_exceeded_by_at_most_the_rate_of_its_own_sample() -> None:
    scores = np.random.default_rng(0).exponential(size=999)
    assert np.mean(scores > conformal_quantile(scores, 0.01)) <= 0.01
    assert conformal_quantile(np.array([np.nan]), 0.01) == float("inf")


def _drifting_scores(periods: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    """Return normal scores whose level moves between periods (operating point, disturbances) around band units."""
    level = rng.normal(0.0, 0.15, periods)  # log error level of each period
    return np.exp(np.repeat(level, rows) + rng.normal(0.0, 0.1, periods * rows))


def test_thresholds_fitted_on_a_few_periods_hold_their_rate_on_later_periods() -> None:
    rng = np.random.default_rng(0)
    later = _drifting_scores(500, 50, rng)  # normal operation over many later periods
    fitted = [_drifting_scores(6, 50, rng) for _ in range(40)]  # validation blocks of 6 periods each
    bound = np.mean([np.mean(later > period_bound(v, 0.01)) for v in fitted])
    assert bound <= 0.01
    # A quantile of the validation block alone saw too few periods: about three times the stated rate.
    assert np.mean([np.mean(later > conformal_quantile(v, 0.01)) for v in fitted]) > 0.02


def test_without_drift_between_periods_the_threshold_still_catches_a_raised_error_level() -> None:
    rng = np.random.default_rng(1)
    normal = np.exp(rng.normal(0.0, 0.1, 400))
    limit = period_bound(normal, 0.01)
    later = np.exp(rng.normal(0.0, 0.1, 20_000))
    assert 0.0005 <= np.mean(later > limit) <= 0.01
    assert np.mean(1.5 * later > limit) > 0.9  # errors half as large again are flagged


def test_the_student_t_quantile_matches_the_tables() -> None:
    for p, dof, table in [(0.99, 7, 2.998), (0.995, 7, 3.499), (0.95, 3, 2.353), (0.99, 30, 2.457)]:
        assert student_t_quantile(p, dof) == pytest.approx(table, rel=0.02)
