"""The CV bias filter that both bench closedloop and the recommender use: per sample, reset after a long gap."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer.estimation import BIAS_ALPHA, cv_bias_filter

P = 10.0  # sample period, s


def test_noise_on_the_measured_cv_is_damped_not_followed() -> None:
    rng = np.random.default_rng(0)
    raw = 1.0 + rng.normal(0.0, 0.5, (400, 1))  # a constant twin error of 1 seen through a noisy transmitter
    state = None
    filtered = []
    for k, row in enumerate(raw):
        state = cv_bias_filter(row[None, :], np.array([k * P]), state, period_s=P)
        filtered.append(state.value[0])
    tail = np.asarray(filtered[50:])
    assert abs(tail.mean() - 1.0) < 0.1
    assert tail.std() < 0.5 * raw[50:, 0].std()  # an EWMA with alpha 0.3 keeps sqrt(0.3 / 1.7) = 0.42 of the noise


def test_one_call_over_many_samples_equals_one_call_per_sample() -> None:
    raw = np.array([[1.0, 0.0], [2.0, np.nan], [0.0, 1.0], [4.0, 1.0]])
    t = np.arange(4) * P
    whole = cv_bias_filter(raw, t, None, period_s=P)
    state = None
    for k in range(4):
        state = cv_bias_filter(raw[k : k + 1], t[k : k + 1], state, period_s=P)
    assert state is not None
    np.testing.assert_array_equal(whole.value, state.value)
    a = BIAS_ALPHA
    first = 1.0 + a * (2.0 - 1.0)
    second = first + a * (0.0 - first)
    assert whole.value[0] == pytest.approx(second + a * (4.0 - second))
    assert whole.value[1] == pytest.approx(0.0 + a * (1.0 - 0.0) + a * (1.0 - a * 1.0))  # NaN kept the estimate
    assert whole.at_s.tolist() == [30.0, 30.0]


def test_the_first_sample_and_one_after_a_long_gap_restart_from_the_raw_value() -> None:
    first = cv_bias_filter(np.array([[2.0]]), np.array([0.0]), None, period_s=P)
    assert first.value[0] == 2.0 and first.restarted[0]
    near = cv_bias_filter(np.array([[4.0]]), np.array([5 * P]), first, period_s=P)  # 5 periods: still continued
    assert near.value[0] == pytest.approx(2.0 + BIAS_ALPHA * 2.0) and not near.restarted[0]
    far = cv_bias_filter(np.array([[4.0]]), np.array([6 * P]), first, period_s=P)  # 6 periods: restarted
    assert far.value[0] == 4.0 and far.restarted[0]
    missing = cv_bias_filter(np.array([[np.nan]]), np.array([P]), None, period_s=P)
    assert np.isnan(missing.value[0]) and not missing.restarted[0]  # nothing measured yet: no estimate
