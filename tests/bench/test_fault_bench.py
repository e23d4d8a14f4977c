"""The fault-detection part of `bench twin`: injected sensor faults, the PCA baseline, and its figures."""

from __future__ import annotations

import numpy as np
import pytest

from bench import _faults
from bench.twin import shared_data


def test_injected_sensor_faults_change_only_their_column_from_the_onset() -> None:
    raw = np.arange(40.0).reshape(10, 4)
    bias = _faults.inject(raw, 1, "bias", 6, 2.0)
    drift = _faults.inject(raw, 1, "drift", 6, 100.0)  # 100 per 100 rows: +1 per row
    stuck = _faults.inject(raw, 1, "stuck", 6, 0.0)
    np.testing.assert_array_equal(bias[:, 1], np.r_[raw[:6, 1], raw[6:, 1] + 2.0])
    np.testing.assert_array_equal(drift[6:, 1], raw[6:, 1] + np.arange(4))
    np.testing.assert_array_equal(stuck[6:, 1], np.full(4, raw[6, 1]))
    for bad in (bias, drift, stuck):
        np.testing.assert_array_equal(np.delete(bad, 1, axis=1), np.delete(raw, 1, axis=1))
    with pytest.raises(ValueError, match="unknown sensor fault 'spike'"):
        _faults.inject(raw, 1, "spike", 6, 1.0)


def test_pca_q_flags_samples_that_break_the_normal_correlation() -> None:
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(600, 2))
    mix = rng.normal(size=(2, 6))
    normal = latent @ mix + 0.05 * rng.normal(size=(600, 6))
    pca = _faults.pca_fit(normal[:400], normal[400:], 0.01)
    assert pca.loadings.shape[1] == 2
    broken = normal[400:].copy()
    broken[:, 0] += 1.0  # one sensor off: the others no longer explain it
    _, q_normal = pca.scores(normal[400:])
    _, q_broken = pca.scores(broken)
    assert np.mean(q_normal > pca.q_limit) <= 0.02
    assert np.mean(q_broken > pca.q_limit) > 0.95


@pytest.mark.slow  # trains two small twins: about a minute
def test_the_quick_fault_benchmark_reports_twin_and_pca_on_the_same_normal_data() -> None:
    out = _faults.run(shared_data(), quick=True)
    assert out["fault_rate_nominal"] == 0.01
    if out["fault_detection"] is not None:  # the Tennessee Eastman data are there
        assert len(out["fault_detection_per_fault"]) == 21
        for key in ("fault_detection", "pca_t2_detection", "pca_q_detection", "false_alarm_rate"):
            assert 0.0 <= out[key] <= 1.0
    assert set(out["sensor_fault_detection"]) == {"bias", "drift", "stuck"}
    bias = out["sensor_fault_detection"]["bias"]
    assert bias["innovation"] > out["sensor_false_alarm_rate"]["innovation"]  # a 1-std bias is seen more than normal
