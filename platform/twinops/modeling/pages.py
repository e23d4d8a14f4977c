"""Page data for the twin page: versions and training jobs, evaluation tables from a report, and its charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twinops.lines.models import Line
from twinops.lines.selectors import tag_units
from twinops.modeling import conf, selectors
from twinops.modeling.forms import ReasonForm, TrainForm
from twinops.modeling.models import TrainingJob, TwinVersion
from twinops.modeling.plots import version_figures

HORIZON_KEYS = (("h1", "1 step"), ("h5", "5 steps"), ("h20", "20 steps"), ("free_run", "free run"))
MODEL_LABELS = {"twin": "twin", "persistence": "persistence", "linear_arx": "linear ARX"}
COVERAGE_KEYS = (("h1", "1 step"), ("h5", "5 steps"), ("h20", "20 steps"), ("h1_to_h20", "1–20 steps"))
CHECK_LABELS = {
    "free_run": "free run beats the linear ARX baseline",
    "gain_signs": "gain signs agree with the data's step responses",
    "coverage": "interval coverage (adaptive band) within tolerance at 1, 5 and 20 steps",
    "versus_promoted": "free run no worse than the promoted twin's on the same test data",
}


@dataclass(frozen=True)
class CheckRow:
    """One promotion check of a version, as the twin page lists it."""

    label: str
    passed: bool
    detail: str
    blocking: bool = True  # False: a failure is a warning, the version stays promotable


@dataclass(frozen=True)
class ScoreRow:
    """One model's normalised RMSE for one CV at each horizon; best marks the lowest error per horizon."""

    cv: str
    model: str
    cells: list[tuple[float | None, bool]]  # (nrmse, is the best of the models) per horizon
    first: bool  # first row of its CV (the CV name spans the block)


MEAN_ROW = "mean over CVs"


def _score(scores: dict[str, Any], key: str, cv: str) -> float | None:
    value = scores["mean"].get(key) if cv == MEAN_ROW else scores["nrmse"].get(key, {}).get(cv)
    return None if value is None else float(value)


def evaluation_rows(report: dict[str, Any]) -> list[ScoreRow]:
    """Return the NRMSE table: per CV (then the mean over CVs), twin and baselines at horizons 1, 5, 20, free run."""
    models = {"twin": report["twin"], **report.get("baselines", {})}
    rows: list[ScoreRow] = []
    for cv in [*report["cv_names"], MEAN_ROW]:
        table = {name: [_score(scores, key, cv) for key, _ in HORIZON_KEYS] for name, scores in models.items()}
        best = [min((v for v in column if v is not None), default=None) for column in zip(*table.values(), strict=True)]
        for i, (name, values) in enumerate(table.items()):
            cells = [(v, v is not None and v == b) for v, b in zip(values, best, strict=True)]
            rows.append(ScoreRow(cv=cv, model=MODEL_LABELS.get(name, name), cells=cells, first=i == 0))
    return rows


@dataclass(frozen=True)
class CoverageCell:
    """One CV's share of test samples inside the twin's band at one horizon: plain calibrated and adaptive."""

    plain: float | None
    adaptive: float | None  # the band production draws and the promotion gate judges; None in older reports


def coverage_rows(report: dict[str, Any]) -> list[tuple[str, list[CoverageCell]]]:
    """Return (CV, share of test samples inside the twin's plain and adaptive interval per horizon)."""
    plain, adaptive = report.get("coverage", {}), report.get("adaptive_coverage") or {}
    return [
        (cv, [CoverageCell(plain.get(key, {}).get(cv), adaptive.get(key, {}).get(cv)) for key, _ in COVERAGE_KEYS])
        for cv in report["cv_names"]
    ]


def check_rows(report: dict[str, Any]) -> list[CheckRow]:
    """Return the promotion checks of a report (none for reports written before the gate had checks)."""
    return [
        CheckRow(
            CHECK_LABELS.get(c["name"], c["name"]), bool(c["passed"]), str(c["detail"]), bool(c.get("blocking", True))
        )
        for c in report.get("checks", [])
    ]


def chart_list(*, preview: dict[str, Any], units: dict[str, str]) -> list[dict[str, Any]]:
    """Return the page's charts: a DOM id, an accessible label and the figure for each preview horizon."""
    return [
        {"id": f"twin-chart-h{h}", "label": f"CV forecasts {h} steps ahead vs actual", "figure": fig}
        for h, fig in version_figures(preview=preview, units=units)
    ]


def jobs_context(*, line: Line) -> dict[str, Any]:
    """Return the line's recent training jobs, and whether the page should keep polling them."""
    jobs = selectors.training_jobs(line=line, limit=5)
    for job in jobs:  # a queued job says what it waits behind (another line's training, on one train worker)
        job.ahead = selectors.training_jobs_ahead(job=job) if job.status == TrainingJob.Status.QUEUED else []
    return {
        "line": line,
        "jobs": jobs,
        "polling": any(j.active for j in jobs),
        "retrain_every_h": conf.retrain_every_h(),
    }


def twin_context(*, line: Line, shown: TwinVersion | None, can_train: bool) -> dict[str, Any]:
    """Return the twin page: versions, jobs, and one version's evaluation and charts (default the one shown)."""
    shown = shown or selectors.twin_shown(line=line)
    versions = list(selectors.twin_versions(line=line))
    promoted = next((v for v in versions if v.status == TwinVersion.Status.PROMOTED), None)
    newest = versions[0] if versions else None
    # a version trained after the promoted one (a scheduled retrain, or the data team's) and not yet decided on
    newer = (
        newest
        if promoted and newest and newest.version > promoted.version and newest.status == TwinVersion.Status.CANDIDATE
        else None
    )
    context = {
        **jobs_context(line=line),
        "versions": versions,
        "promoted": promoted,
        "newer": newer,
        # what the newer version's verdict warns of (e.g. forecasting the newest data worse than the promoted twin)
        "newer_warnings": [c for c in check_rows(newer.report) if not c.passed and not c.blocking] if newer else [],
        "shown": shown,
        "can_train": can_train,
        "reason_form": ReasonForm(),
        "train_form": TrainForm(),
        "horizons": HORIZON_KEYS,
        "coverage_keys": COVERAGE_KEYS,
    }
    if shown is not None:
        context |= {
            "evaluation": evaluation_rows(shown.report),
            "coverage": coverage_rows(shown.report),
            "checks": check_rows(shown.report),
            "advice": list(shown.report.get("advice", [])),
            "charts": chart_list(preview=shown.preview, units=tag_units(line=line, role="CV")),
        }
    return context
