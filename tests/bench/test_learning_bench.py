"""`bench learning`: the twin is retrained on its own closed loop's records; does what it trusts grow?"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import closedloop, learning
from plantsim import vdv_reactor
from plantsim.simulator import make_line
from twins import split_by_time


def test_a_loop_record_joins_the_training_block_and_validation_and_test_stay_the_same_rows() -> None:
    line = make_line(vdv_reactor.LINE_ID)
    n_tags = len(line.names("CV")) + len(line.names("MV")) + len(line.names("DV"))
    rng = np.random.default_rng(0)
    history = rng.normal(size=(200, n_tags))
    record = rng.normal(size=(30, n_tags)) + 100.0  # far from the history: easy to find
    base = split_by_time(closedloop._dataset(history, line))
    split = closedloop.with_records(base, history, [record, record[:5]], line)
    data, n_cv = split.dataset, len(line.names("CV"))
    added = 30 + 1 + 5 + 1
    assert (split.train_stop, split.val_stop) == (base.train_stop + added, base.val_stop + added)
    assert len(data) == len(history) + added
    # validation and test: the history's same rows
    np.testing.assert_array_equal(data.cv[split.train_stop :], base.dataset.cv[base.train_stop :])
    np.testing.assert_array_equal(data.mv[split.train_stop :], base.dataset.mv[base.train_stop :])
    # the record sits at the end of the training block, then a row with its inputs and no CV measured
    start = base.train_stop
    np.testing.assert_array_equal(data.cv[start : start + 30], record[:, :n_cv])
    assert not data.cv_mask[start + 30].any() and data.mv_mask[start + 30].all()
    np.testing.assert_array_equal(data.mv[start + 30], record[-1, n_cv : n_cv + len(line.names("MV"))])
    assert not data.cv_mask[start + 36].any()
    assert closedloop.with_records(base, history, [], line) is base


def test_a_tuning_seed_is_never_reported() -> None:
    with pytest.raises(ValueError, match=r"tuning seeds \[5\] are never reported"):
        learning.run(seeds=(31, 5))


# Two tiny twins (each with the calibration and estimate choice after its epochs), the references and three
# 15-minute loops: 19 minutes on 2 cores shared with two other runs, so outside CI's slow set; run with -m long.
@pytest.mark.long
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_twin_plans_within_its_trusted_range_and_the_retrain_learns_where_the_loop_went() -> None:
    out = learning.run(quick=True, lines=(vdv_reactor.LINE_ID,), rounds=2, jobs=1)
    assert out["seeds"] == [closedloop.SEEDS[0]] and len(out[vdv_reactor.LINE_ID]["rounds"]) == 2
    reactor, margin = out[vdv_reactor.LINE_ID], out["trust_margin"]
    baseline = reactor["baseline"]["per_seed"][0]
    first, second = (r["per_seed"][0] for r in reactor["rounds"])
    for name, (lo, hi) in baseline["mv_used"].items():  # no margin: inside the trained range
        t_lo, t_hi = baseline["trained_mv_range"][name]
        tol = 1e-4 * (t_hi - t_lo)  # the export's float32
        assert t_lo - tol <= lo and hi <= t_hi + tol, name
    for run in (first, second):  # the margin: at most that share of the range's width beyond it
        for name, (lo, hi) in run["mv_used"].items():
            t_lo, t_hi = run["trained_mv_range"][name]
            width = t_hi - t_lo
            assert t_lo - (margin + 1e-4) * width <= lo and hi <= t_hi + (margin + 1e-4) * width, name
    # the retrained twin has seen where the first loop went, and all the history did
    for name, (lo, hi) in second["trained_mv_range"].items():
        used, trained = first["mv_used"][name], first["trained_mv_range"][name]
        tol = 1e-4 * (hi - lo)
        assert lo <= min(used[0], trained[0]) + tol and hi >= max(used[1], trained[1]) - tol, name
    for figures in (reactor["baseline"], *reactor["rounds"]):
        assert math.isfinite(figures["gain_ratio_median"]) and 0.0 <= figures["no_proposal_share"] <= 1.0
