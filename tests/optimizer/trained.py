"""One tiny twin trained by the twins package on a simulated tank, for tests of what its export carries."""

from __future__ import annotations

from functools import cache

import numpy as np

from twins import Twin, TwinConfig, TwinDataset, split_by_time, train_twin


@cache
def tiny_twin() -> tuple[Twin, TwinDataset]:
    """Return a twin of a first-order tank (feed MV 0.5..1.5, level CV) in float64, and its training record."""
    rng = np.random.default_rng(0)
    rows = 600
    feed = np.repeat(rng.uniform(0.5, 1.5, rows // 20), 20)[:, None]
    level = np.zeros((rows, 1))
    for t in range(rows - 1):
        level[t + 1] = level[t] + 0.1 * (feed[t] - level[t])
    data = TwinDataset.from_arrays(
        cv=level + 0.01 * rng.normal(size=level.shape),
        mv=feed,
        dv=np.zeros((rows, 0)),
        cv_names=["level_m"],
        mv_names=["feed_m3_h"],
        dv_names=[],
        sample_period_s=10.0,
    )
    config = TwinConfig(
        window=8, nz=4, hidden=16, depth=2, members=3, horizon=5, epochs=1, steps_per_epoch=2, batch_size=16,
        val_windows=16, eval_starts=50, min_train_samples=100,
    )  # fmt: skip
    twin = train_twin(split_by_time(data), config)
    twin.net.double()
    return twin, data
