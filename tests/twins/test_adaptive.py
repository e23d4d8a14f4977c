"""Adaptive band: a twin whose recent errors grew draws and enforces wider bands; one whose errors did not, the same."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from twins import TrainingOutcome, Twin, TwinDataset, load_checkpoint, save_checkpoint
from twins.adaptive import CEILING, MIN_MEASURED, WINDOW, band_scale, history_rows, scale_series
from twins.innovation import innovation_scores, innovations

from .conftest import as_dataset, two_tanks


def _recent(arrays: dict[str, np.ndarray], twin: Twin) -> TwinDataset:
    """Keep the last rows band_scale reads (the test segment of the shared twin's record)."""
    n = history_rows(twin)
    return as_dataset({k: v[-n:] for k, v in arrays.items()})


def _with_quantile(twin: Twin, quantile: np.ndarray | None) -> Twin:
    out = Twin.__new__(Twin)
    out.__dict__.update(twin.__dict__)
    out.calibration = dataclasses.replace(twin.calibration, error_quantile=quantile)
    return out


def test_calibration_stores_the_band_unit_error_quantile_and_a_checkpoint_keeps_it(
    trained: TrainingOutcome, tmp_path: Path
) -> None:
    cal = trained.twin.calibration
    assert cal.error_quantile is not None and cal.error_quantile.shape == cal.scale.shape
    assert np.all(cal.error_quantile[1:] <= 1.0 + 1e-9)  # conformal: the nominal share lies inside the band
    save_checkpoint(trained.twin, tmp_path / "twin.pt")
    np.testing.assert_allclose(load_checkpoint(tmp_path / "twin.pt").calibration.error_quantile, cal.error_quantile)


def test_normal_recent_errors_leave_the_bands_as_calibrated(trained: TrainingOutcome) -> None:
    scaled = band_scale(trained.twin, _recent(two_tanks(3000, seed=0), trained.twin))
    assert scaled.reason == ""
    assert np.median(scaled.scale) == 1.0 and np.all(scaled.per_cv() <= 1.1)


def test_recent_errors_twice_as_large_draw_bands_twice_as_wide(trained: TrainingOutcome) -> None:
    twin = trained.twin
    data = _recent(two_tanks(3000, seed=0), twin)
    quantile = twin.calibration.error_quantile
    # The same recent errors against a reference 2x and 4x smaller: errors 2x and 4x the calibration's.
    twice = band_scale(_with_quantile(twin, quantile / 2), data, ceiling=10.0).scale
    four = band_scale(_with_quantile(twin, quantile / 4), data, ceiling=10.0).scale
    assert np.median(twice[1:]) > 1.3 and np.all(twice >= band_scale(twin, data).scale)
    widened = twice > 1.0
    np.testing.assert_allclose(four[widened], 2 * twice[widened])  # the band grows in proportion to the errors


def test_a_biased_transmitter_widens_its_own_band_more_than_the_others(trained: TrainingOutcome) -> None:
    arrays = two_tanks(3000, seed=0)
    arrays["cv"][-100:, 1] += 0.05  # lower-level transmitter reads 5 cm high for the last 100 samples
    scaled = band_scale(trained.twin, _recent(arrays, trained.twin))
    assert scaled.per_cv()[1] > 1.3 and np.median(scaled.scale[:, 1]) > np.median(scaled.scale[:, 0])


def test_widening_the_band_leaves_the_innovation_score_that_withholds_in_calibrated_units(
    trained: TrainingOutcome,
) -> None:
    twin = trained.twin
    arrays = two_tanks(3000, seed=0)
    arrays["cv"][-3:, 1] += 0.3  # lower-level transmitter steps 0.3 m high in the last 3 samples
    data = _recent(arrays, twin)
    wide = _with_quantile(twin, twin.calibration.error_quantile / 2)  # recent errors say: widen ~2x
    assert np.median(band_scale(wide, data).scale) > 1.3
    last = np.array([len(data) - 1])
    score, score_wide = innovation_scores(twin, data, last), innovation_scores(wide, data, last)
    # If the score were divided by the widened band, a fault would shrink its own alarm; it is not.
    np.testing.assert_array_equal(score_wide.per_cv, score.per_cv)
    assert score_wide.combined[0] > twin.innovation.combined  # the fault still withholds


def test_a_twin_calibrated_before_the_adaptive_band_keeps_its_bands_and_says_why(trained: TrainingOutcome) -> None:
    old = _with_quantile(trained.twin, None)
    scaled = band_scale(old, _recent(two_tanks(3000, seed=0), old))
    assert np.all(scaled.scale == 1.0)
    assert "calibrated before" in scaled.reason


@pytest.mark.parametrize("rows", [20, 60])
def test_too_little_history_widens_only_what_it_measured(trained: TrainingOutcome, rows: int) -> None:
    arrays = {k: v[-rows:] for k, v in two_tanks(3000, seed=0).items()}
    scaled = band_scale(trained.twin, as_dataset(arrays))
    assert np.all(scaled.scale >= 1.0) and "fewer than" in scaled.reason


def _by_definition(twin: Twin, data: TwinDataset) -> np.ndarray:
    """The scale at the last row computed as defined, one forecast per step ahead k (slow, plain): (K, n_cv)."""
    cal, lt, last = twin.calibration, twin.tensors(data), len(data) - 1
    scale = np.ones(cal.scale.shape)
    for k in range(1, cal.scale.shape[0]):
        rows = np.arange(max(last - WINDOW + 1, k), last + 1)  # rows scored by the k-step forecast made at t - k
        if rows.size < MIN_MEASURED:
            break
        err, mask = innovations(twin, lt, rows, k)  # (N, k, n_cv)
        gap = ~data.cv_mask.any(axis=1)  # no forecast across a row with no CV measured, from its encoder window on
        clean = np.array([not gap[max(t - k - twin.config.window + 1, 0) : t + 1].any() for t in rows])
        measured = mask[:, -1] & clean[:, None]
        e = np.where(measured, np.abs(err[:, -1]), np.nan)
        enough = measured.sum(0) >= MIN_MEASURED
        q = np.nanquantile(np.where(enough, e, 1.0), twin.config.interval, axis=0)
        scale[k] = np.where(enough, np.clip(q / np.maximum(cal.error_quantile[k], 1e-9), 1, CEILING), 1)
    scale[0] = scale[1]
    return scale


def test_the_scale_over_a_segment_is_band_scale_at_each_row(trained: TrainingOutcome) -> None:
    arrays = two_tanks(3000, seed=0)
    arrays["cv"][-150:, 1] += 0.05  # a biased transmitter, so that some scales are above 1
    data, twin = as_dataset(arrays), _with_quantile(trained.twin, trained.twin.calibration.error_quantile / 1.5)
    rows = np.array([40, 2000, 2900, len(data) - 1])  # short history, normal, drifting, the last row
    series = scale_series(twin, data, rows)
    assert series.shape == (4, *twin.calibration.scale.shape) and np.any(series[-1] > 1.0)
    for i, r in enumerate(rows):  # band_scale on the history that ends at the row: what production would draw there
        history = as_dataset({k: v[max(r + 1 - history_rows(twin), 0) : r + 1] for k, v in arrays.items()})
        np.testing.assert_allclose(series[i], band_scale(twin, history).scale, rtol=1e-6)
        np.testing.assert_allclose(series[i], _by_definition(twin, history), rtol=1e-6)
    np.testing.assert_allclose(scale_series(twin, data, rows, steps=5), series[:, :6])  # fewer steps: the same
    older = scale_series(_with_quantile(twin, None), data, rows)
    assert np.all(older == 1.0)  # a twin calibrated before the adaptive band is never widened


def test_the_scale_over_a_segment_widens_only_after_the_errors_grew_and_only_up_to_its_ceiling(
    trained: TrainingOutcome,
) -> None:
    arrays = two_tanks(3000, seed=0)
    clean = as_dataset(arrays)
    arrays["cv"][2500:, 1] += 0.3  # the lower-level transmitter reads 0.3 m high from row 2500 on
    biased = as_dataset(arrays)
    rows = np.array([2499, 2505, 2600, 2999])
    before, after = scale_series(trained.twin, clean, rows), scale_series(trained.twin, biased, rows)
    np.testing.assert_array_equal(after[0], before[0])  # causal: row 2499 sees nothing of the bias yet
    assert np.all(after >= 1.0) and np.all(after <= CEILING)
    # The encoder sees the offset, so the errors grow with the step ahead; the longest widen to the ceiling, no more.
    assert np.all(after[2:, -1, 1] == CEILING) and np.all(after[2:, :, 1].mean(1) > before[2:, :, 1].mean(1))


def test_forecasts_across_a_gap_do_not_widen_the_band(trained: TrainingOutcome) -> None:
    # The history ends in one state and, three missing samples later, the line comes back in another (a restart, as
    # `twinops demo`'s live plant does after its history): errors across the seam are the data's, not the twin's.
    before, after = two_tanks(3000, seed=0), two_tanks(3000, seed=1)
    seam = {k: np.concatenate([before[k][:-100], after[k][-100:]]) for k in before}
    gap = {k: v.copy() for k, v in seam.items()}
    gap["cv"][-103:-100] = np.nan
    twin = trained.twin
    across = band_scale(twin, _recent(seam, twin)).scale  # no gap: the jump is in the data the twin predicted
    apart = band_scale(twin, _recent(gap, twin))
    assert across.max() > 1.5
    assert np.median(apart.scale) == 1.0 and apart.scale.max() < across.max()
    assert apart.reason == "measured from 117 samples of history, fewer than the 120 it reads"
