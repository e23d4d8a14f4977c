"""Baselines: the least-squares ARX model recovers a linear system; persistence holds the last value."""

from __future__ import annotations

import numpy as np

from twins import Normalisation, Persistence, Record, TwinDataset, fit_linear, split_by_time


def linear_line(rows: int = 2000, seed: int = 0) -> TwinDataset:
    rng = np.random.default_rng(seed)
    u = np.repeat(rng.normal(size=rows // 10 + 1), 10)[:rows]
    y = np.zeros(rows)
    for t in range(2, rows):
        y[t] = 1.5 * y[t - 1] - 0.7 * y[t - 2] + 0.3 * u[t - 1]
    return TwinDataset.from_arrays(cv=y, mv=u, cv_names=["temp_c"], mv_names=["valve_pct"], sample_period_s=1.0)


def test_the_linear_baseline_recovers_a_linear_system_in_free_run() -> None:
    data = linear_line()
    split = split_by_time(data)
    rec = Record.build(split, Normalisation.fit(data, split.train_stop))
    model = fit_linear(rec, split)
    start = split.val_stop
    sim = model.forecast(rec, np.array([start]), len(data) - 1 - start)[0]
    assert np.sqrt(np.mean((sim - rec.y[start:]) ** 2)) < 1e-3
    assert model.na >= 2


def test_persistence_repeats_the_last_value() -> None:
    data = linear_line(200)
    split = split_by_time(data)
    rec = Record.build(split, Normalisation.fit(data, split.train_stop))
    fc = Persistence().forecast(rec, np.array([50, 60]), 5)
    assert fc.shape == (2, 6, 1) and np.all(fc[0] == rec.y[50]) and np.all(fc[1] == rec.y[60])
