"""A twin that keeps the moving-horizon latent estimate: proposals start from it, over the rows it reads."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from twinops.recommendations.selectors import recent_window
from twinops.recommendations.services import recommendation_create
from twins import MheSettings, Twin

from .conftest import CVS, ROWS, TINY, two_tanks


@pytest.fixture
def promote_estimating(trained: Any) -> Callable[..., Twin]:
    """Promote the shared tiny twin with a 6-sample moving horizon (training kept 16): proposals follow its settings."""
    from twinops.modeling import services

    def make(line: Any) -> Twin:
        record, outcome = trained
        twin = copy.copy(outcome.twin)
        twin.estimator = MheSettings(horizon=6, noise=tuple(float(v) for v in twin.calibration.floor))
        report = dataclasses.replace(outcome.report, promotable=True, reason="forced promotable in tests")
        job = services.training_job_create(line=line, actor="system:test", config_overrides=TINY, enqueue=False)
        job = services.training_job_claim(job_id=job.pk)
        version = services.twin_version_register(
            job=job, record=record, outcome=dataclasses.replace(outcome, twin=twin, report=report)
        )
        services.twin_promote(version=version, actor="system:test", reason="tests")
        return twin

    return make


def test_a_proposal_starts_from_the_estimate_fitted_over_the_window_and_horizon_rows(
    line: Any, promote_estimating: Callable[..., Twin], ingest: Callable[..., datetime]
) -> None:
    twin = promote_estimating(line)
    assert twin.state_rows == 6 + TINY["window"] + 1
    last = ingest(line, two_tanks(ROWS, seed=1)[-60:])
    rec = recommendation_create(line=line, actor="system:test", now=last + timedelta(seconds=5))
    assert rec.inputs.get("current_cv_estimate"), rec.reason
    stored = np.array([rec.inputs["current_cv_estimate"][n] for n in CVS])
    window = recent_window(line=line, twin=twin, last=last, rows=twin.state_rows).dataset
    row = np.array([len(window) - 1])
    estimated = twin.readout(twin.encode(window, row)).mean(axis=0)[0]
    plain = copy.copy(twin)
    plain.estimator = None  # the same twin with the encoder's latent
    encoder = plain.readout(plain.encode(window, row)).mean(axis=0)[0]
    np.testing.assert_allclose(stored, estimated, atol=1e-5)  # the loaded version keeps its estimator
    assert np.abs(stored - encoder).max() > 1e-3  # and that is not the encoder's latent
    # The CV bias filter's estimates are the same estimate, batched over every sample it filters.
    history = recent_window(line=line, twin=twin, last=last, rows=twin.state_rows + 29).dataset
    rows = np.arange(len(history) - 30, len(history))
    batched = twin.readout(twin.encode(history, rows)).mean(axis=0)
    one_by_one = [
        twin.readout(twin.encode(_rows(history, r - twin.state_rows + 1, r + 1), np.array([twin.state_rows - 1])))
        for r in rows
    ]
    np.testing.assert_allclose(batched, np.stack([o.mean(axis=0)[0] for o in one_by_one]), atol=1e-5)


def _rows(data: Any, start: int, stop: int) -> Any:
    names = ("cv", "mv", "dv", "cv_mask", "mv_mask", "dv_mask")
    return dataclasses.replace(data, **{n: getattr(data, n)[start:stop] for n in names})
