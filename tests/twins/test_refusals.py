"""Refusals: too little data, MVs that never move, NaN-heavy records; each message names what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from twins import InsufficientDataError, TwinConfig, TwinDataset, split_by_time, train_twin


def line(rows: int, *, mv: np.ndarray | None = None, seed: int = 0) -> TwinDataset:
    rng = np.random.default_rng(seed)
    moves = rng.normal(size=(rows, 2)) if mv is None else mv
    level = np.cumsum(moves.sum(1)) * 0.01 + rng.normal(0, 0.01, rows)
    return TwinDataset.from_arrays(
        cv=level, mv=moves, cv_names=["level_m"], mv_names=["feed_m3_h", "steam_t_h"], sample_period_s=60.0
    )


def test_it_refuses_a_line_with_too_little_data(tiny: TwinConfig) -> None:
    split = split_by_time(line(120))
    with pytest.raises(InsufficientDataError) as err:
        train_twin(split, tiny)
    need = max(tiny.min_train_samples, 2 * (tiny.window + tiny.horizon))
    assert split.train_stop < need
    assert f"need at least {need} good samples" in str(err.value)
    assert f"got {split.train_stop} of {split.train_stop} rows" in str(err.value)


def test_it_refuses_a_line_whose_mvs_never_move(tiny: TwinConfig) -> None:
    rng = np.random.default_rng(0)
    mv = np.stack([rng.normal(size=2000), np.full(2000, 12.5)], axis=1)  # steam never moves
    with pytest.raises(InsufficientDataError) as err:
        train_twin(split_by_time(line(2000, mv=mv)), tiny)
    message = str(err.value)
    assert "never move" in message and "steam_t_h (constant at 12.5)" in message
    assert "feed_m3_h" not in message


def test_an_mv_that_moves_only_in_the_test_segment_still_counts_as_never_moving(tiny: TwinConfig) -> None:
    mv = np.ones((2000, 2))
    mv[1800:, 1] = 3.0  # moves, but only after the training split
    mv[:, 0] = np.random.default_rng(1).normal(size=2000)
    with pytest.raises(InsufficientDataError, match="steam_t_h"):
        train_twin(split_by_time(line(2000, mv=mv)), tiny)


def test_it_refuses_a_line_whose_windows_are_mostly_nan(tiny: TwinConfig) -> None:
    data = line(3000)
    cv = data.cv.copy()
    cv[np.arange(3000) % 3 != 0] = np.nan  # two in three samples lost: plenty of rows, but no clean windows
    holey = TwinDataset.from_arrays(
        cv=cv, mv=data.mv, cv_names=data.cv_names, mv_names=data.mv_names, sample_period_s=60.0
    )
    assert not holey.cv_mask[1] and holey.cv_mask[3]
    with pytest.raises(InsufficientDataError) as err:
        train_twin(split_by_time(holey), tiny)
    assert "too many bad samples" in str(err.value) and "level_m 67% bad" in str(err.value)


def test_good_values_must_be_finite() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        TwinDataset(
            cv=np.array([[np.nan]]),
            mv=np.zeros((1, 1)),
            dv=np.zeros((1, 0)),
            cv_mask=np.ones((1, 1), bool),
            mv_mask=np.ones((1, 1), bool),
            dv_mask=np.ones((1, 0), bool),
            cv_names=("a",),
            mv_names=("b",),
            dv_names=(),
            sample_period_s=1.0,
        )
