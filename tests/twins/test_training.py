"""Training: it learns, beats persistence, reports progress and is deterministic on CPU."""

from __future__ import annotations

import dataclasses

import torch

from twins import TrainingOutcome, TwinConfig, split_by_time, train_and_evaluate, train_twin


def test_training_lowers_the_loss_and_the_twin_beats_persistence(trained: TrainingOutcome) -> None:
    history = trained.twin.info.history
    assert history[-1]["cv"] < 0.5 * history[0]["cv"]
    twin, persistence = trained.report.twin.mean, trained.report.baselines["persistence"].mean
    for horizon in ("h5", "h20", "free_run"):
        assert twin[horizon] < persistence[horizon], horizon


def test_the_report_lists_every_cv_and_horizon_for_twin_and_baselines(trained: TrainingOutcome) -> None:
    report = trained.report.to_dict()
    assert set(report["baselines"]) == {"persistence", "linear_arx"}
    for scores in (report["twin"], *report["baselines"].values()):
        assert set(scores["nrmse"]) == {"h1", "h5", "h20", "free_run"}
        assert set(scores["nrmse"]["h20"]) == {"upper_level_m", "lower_level_m"}
    assert report["device"] == "cpu" and report["train_seconds"] > 0
    linear_free = report["baselines"]["linear_arx"]["mean"]["free_run"]
    assert report["promotable"] == (report["twin"]["mean"]["free_run"] < linear_free)


def test_progress_is_reported_once_per_epoch_with_losses(tanks, quick: TwinConfig) -> None:
    seen: list[tuple[int, int, dict[str, float]]] = []
    train_twin(split_by_time(tanks(1500, 1)), quick, on_progress=lambda e, n, losses: seen.append((e, n, losses)))
    assert [(e, n) for e, n, _ in seen] == [(1, 2), (2, 2)]
    assert {"loss", "cv", "latent", "var", "cov", "val_cv"} <= set(seen[-1][2])


def test_each_step_after_the_epochs_is_announced_as_it_begins(tanks, quick: TwinConfig, monkeypatch) -> None:
    monkeypatch.setattr("twins.adaptive.PROGRESS_STARTS", 64)  # several reports from this small test segment
    seen: list[str] = []
    train_and_evaluate(
        split_by_time(tanks(1500, 1)),
        quick,
        on_progress=lambda e, n, losses: seen.append(f"epoch {e}"),
        on_phase=seen.append,
    )
    assert seen[:6] == [
        "epoch 1",
        "epoch 2",
        "calibrating the intervals",
        "choosing the state estimate",
        "fitting fault thresholds",
        "evaluating against the baselines",
    ]
    # The adaptive band's coverage, the longest part of an evaluation, counts its forecast starts as it goes.
    counts = [step.removeprefix("scoring the band ").split("/") for step in seen[6:]]
    assert len(counts) > 1 and all(step.startswith("scoring the band ") for step in seen[6:])
    done, total = [int(d) for d, _ in counts], {int(t) for _, t in counts}
    assert len(total) == 1 and done == sorted(set(done)) and done[-1] == total.pop()
    assert max(len(step) for step in seen) <= 32  # the training job's phase column


def test_training_on_cpu_is_deterministic_for_a_seed(tanks, quick: TwinConfig) -> None:
    split = split_by_time(tanks(1500, 1))
    first, second = train_twin(split, quick), train_twin(split, quick)
    other = train_twin(split, dataclasses.replace(quick, seed=1))
    a, b, c = first.net.state_dict(), second.net.state_dict(), other.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
