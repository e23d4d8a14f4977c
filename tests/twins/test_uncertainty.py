"""Prediction intervals cover held-out data near their nominal rate; the OOD score flags unfamiliar inputs."""

from __future__ import annotations

import dataclasses

import numpy as np

from twins import TrainingOutcome


def test_interval_coverage_is_reported_and_near_nominal_on_the_test_segment(trained: TrainingOutcome) -> None:
    report = trained.report
    assert report.nominal_coverage == 0.9 and report.interval_source == "val"
    for key in ("h1", "h5", "h20", "h1_to_h20"):
        assert set(report.coverage[key]) == {"upper_level_m", "lower_level_m"}
    for share in report.coverage["h1_to_h20"].values():
        assert 0.75 <= share <= 0.99


def test_the_ensemble_spreads_wider_when_driven_outside_training(trained: TrainingOutcome) -> None:
    twin, split = trained.twin, trained.split
    data = split.dataset
    rows = np.arange(split.val_stop, len(data) - 21, 10)
    usual = twin.predict(data, rows, 20)
    mv = data.mv.copy()
    mv[split.val_stop :] += 3.0  # the pump runs far above anything seen in training
    unusual = twin.predict(dataclasses.replace(data, mv=mv), rows, 20)
    assert np.median(unusual.std[:, 20]) > 2.0 * np.median(usual.std[:, 20])
    assert np.all(usual.lower <= usual.mean) and np.all(usual.mean <= usual.upper)
    assert np.all(unusual.upper - unusual.lower >= 0)


def test_ood_score_is_about_one_at_the_edge_of_training_and_higher_far_outside(trained: TrainingOutcome) -> None:
    twin, split = trained.twin, trained.split
    data = split.dataset
    train_rows = np.arange(twin.config.window, split.train_stop)
    inside = twin.ood_score_at(data, train_rows)
    assert 0.97 <= np.mean(inside <= 1.0) <= 1.0  # calibrated: 1.0 = 99th percentile of training

    rows = train_rows[::5]
    z = twin.encode(data, rows)
    familiar = twin.ood_score(z, data.mv[rows], data.dv[rows])
    far_mv = twin.ood_score(z, data.mv[rows] + 5.0, data.dv[rows])  # pump far beyond the 0.5..1.5 trained
    assert np.median(familiar) < 1.0
    assert np.all(far_mv > 2.0) and np.all(far_mv > familiar)

    flooded = dataclasses.replace(data, cv=data.cv + 20.0)  # levels never seen in training
    assert np.median(twin.ood_score_at(flooded, rows)) > 2.0 * np.median(familiar)
