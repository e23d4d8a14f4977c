"""`bench closedloop`: each case over reported seeds only, against MPC on the plant's own equations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import closedloop
from plantsim import heat_train, vdv_reactor
from plantsim.realism import Realism
from plantsim.simulator import build_simulator


def test_a_tuning_seed_is_never_reported() -> None:
    with pytest.raises(ValueError, match=r"tuning seeds \[11\] are also reported seeds"):
        closedloop.run(seeds=(31, 11), tuning_seeds=closedloop.TUNING_SEEDS)
    with pytest.raises(ValueError, match=r"reported seeds \[31\] may not be tuned on"):
        closedloop.tune(tuning_seeds=(5, 31))
    assert not set(closedloop.SEEDS) & set(closedloop.TUNING_SEEDS) and len(closedloop.SEEDS) >= 5


def _open_loop_error(line_id: str, moves: dict[int, dict[str, float]], steps: int) -> dict[str, float]:
    """Return the largest |reference - simulator| per CV over `steps` with `moves` (noise- and drift-free, no ramps)."""
    sim = build_simulator(line_id, seed=0, realism=Realism(noise_scale=0.0, drift=False, rate_limits=False))
    line, period = sim.line, sim.line.sample_period_s
    cvs, mvs, dvs = line.names("CV"), line.names("MV"), line.names("DV")
    scales = {k: np.ones(len(mvs)) for k in ("mv_std", "mv_min", "mv_max")} | {"cv_std": np.ones(len(cvs))}
    model, state = closedloop.reference(sim, scales)
    x = state()[0]
    worst = dict.fromkeys(cvs, 0.0)
    for k in range(steps):
        for name, value in moves.get(k, {}).items():
            sim.write_setpoint(name, value)
        u, d = [sim.setpoints[n] for n in mvs], [sim.drift.values[n] for n in dvs]
        x = np.asarray(model.step(x, u, d)).ravel()
        true = sim.step(period).true
        y = np.asarray(model.readout(x)).ravel()
        worst = {n: max(worst[n], abs(float(y[i]) - true[n])) for i, n in enumerate(cvs)}
    return worst


def test_the_reference_is_the_reactors_own_equations() -> None:
    worst = _open_loop_error(vdv_reactor.LINE_ID, {5: {"F": 40.0, "Q_dot": -7000.0}, 30: {"F": 12.0}}, 60)
    assert max(worst.values()) < 1e-9


def test_the_heat_train_reference_differs_only_where_its_transfer_line_mixes() -> None:
    moves = {10: {"F_feed": 26.0, "Q_fired": 700.0}, 60: {"F_feed": 14.0, "m_steam": 1200.0}}
    worst = _open_loop_error(heat_train.LINE_ID, moves, 120)
    assert worst["T_E1_out"] < 1e-9 and worst["T_oil_ret"] < 1e-9  # upstream of the line: exact
    assert worst["T_E2_in"] < 5.0  # the line's outlet: mixed cells vs plug flow, in a transient
    assert worst["T_out"] < 0.5 and worst["T_skin"] < 0.5


@pytest.mark.slow  # trains two small twins and runs 3 cases x 3 controllers: about 4 min on 2 busy cores
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_quick_run_reports_every_case_against_holding_and_the_true_model() -> None:
    out = closedloop.run(quick=True, jobs=1)
    assert out["quick"] is True
    for case in closedloop.CASES:
        figures = out[case]
        assert figures["seeds"] == [closedloop.SEEDS[0]], case
        detail = figures["per_seed"][str(closedloop.SEEDS[0])]
        assert detail["model"]["economic_eur"] > detail["hold"]["economic_eur"], case  # the limit beats holding
        assert detail["hold"]["steps"] == detail["model"]["steps"] == detail["twin"]["steps"] > 0
        for key in ("gain_ratio_median", "gain_ratio_worst", "soft_violation_minutes", "solve_p95_ms"):
            assert figures[key] is not None and math.isfinite(figures[key]), (case, key)
        assert figures["gain_ratio_worst"] <= figures["gain_ratio_median"]
        assert 0.0 <= figures["no_proposal_share"] <= 1.0
        assert 0.0 <= figures["coverage"] <= 1.0 and figures["coverage_nominal"] == 0.9
        assert set(figures["coverage_by_h"]) == {"1", "5", "20"}
        assert 0.0 <= figures["band_widened_share"] <= 1.0
        assert figures["model_hard_violations"] == 0, case
    # the mismatch case runs the reactor's twin on a drifted plant; the reference knows the drift
    nominal = out["vdv-reactor"]["per_seed"]["31"]
    drifted = out["vdv-reactor-mismatch"]["per_seed"]["31"]
    assert drifted["twin_train"] == nominal["twin_train"]
    assert drifted["model"]["economic_eur"] != nominal["model"]["economic_eur"]
    assert out["mismatch"] == {"k0_ab": closedloop.MISMATCH_K0_AB}


class _Flat:
    """A twin whose estimate of every CV is 0 whatever the window: the measured CV is the raw bias."""

    def __init__(self, n_cv: int) -> None:
        self.n_cv = n_cv

    def initial_state(self, window: object) -> np.ndarray:
        return np.zeros((2, 3))

    def readout(self, z: np.ndarray) -> np.ndarray:
        return np.zeros((z.shape[0], 1, self.n_cv))


def test_the_bench_filters_the_cv_bias_with_the_recommenders_filter() -> None:
    from optimizer.estimation import BIAS_ALPHA, BiasState, cv_bias_filter

    line = build_simulator(vdv_reactor.LINE_ID, seed=0).line
    cvs = line.names("CV")
    n_tags = len(cvs) + len(line.names("MV")) + len(line.names("DV"))
    n_cv = len(cvs)
    bias: dict[str, float] | None = None
    expected = BiasState(np.zeros(n_cv), np.zeros(n_cv), np.zeros(n_cv, dtype=bool))
    t = 0.0
    for first, second in ((1.0, 2.0), (1.0, 2.0), (np.nan, 4.0), (1.0, 4.0)):
        recent = np.zeros((4, n_tags))
        recent[-1, :2] = first, second  # the other CVs are measured equal to the estimate
        twin = _Flat(n_cv)
        _, _, bias = closedloop._estimate(twin, recent, line, bias, closedloop.TUNING)  # type: ignore[arg-type]
        t += line.sample_period_s
        raw = recent[-1:, :n_cv]
        expected = cv_bias_filter(raw, np.array([t]), expected, period_s=line.sample_period_s)
        assert [bias[n] for n in cvs] == pytest.approx(expected.value)
    assert bias is not None and closedloop.TUNING.bias_alpha == BIAS_ALPHA  # the bench evaluates the recommender's gain
    assert bias[cvs[0]] == pytest.approx(1 - (1 - BIAS_ALPHA) ** 3)  # a missing sample kept the estimate
