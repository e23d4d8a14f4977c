"""Write recommendations: compose the promoted twin and the optimizer into one audited proposal per line and slot."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from optimizer import MpcResult, MpcSpec
from optimizer.disturbances import dv_forecast
from optimizer.estimation import BIAS_ALPHA, MEMORY_SAMPLES, RESET_AFTER_PERIODS, BiasState, cv_bias_filter
from twinops.audit.services import audit_record
from twinops.core import locks
from twinops.core.actors import Actor, ActorLike
from twinops.core.attempts import worker_died_message
from twinops.core.jsonable import json_plain
from twinops.core.logins import RateLimiterUnavailable, lockout_minutes, login_attempt_begin, login_failures_clear
from twinops.core.roles import capability_require
from twinops.lines.models import Line, SpecVersion
from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import twin_promoted
from twinops.recommendations import conf, outcomes, tasks
from twinops.recommendations.integrity import integrity_check
from twinops.recommendations.models import Outcome, Recommendation, RecommendationAttempt, Signature
from twinops.recommendations.mpc_cache import controller_cached, dv_model_cached, twin_cached
from twinops.recommendations.selectors import (
    OUTCOME_STATUSES,
    band_words,
    cv_bias_last,
    outcome_candidates,
    outcome_measurements,
    plan_scaled,
    proposal_content_sha256,
    recent_window,
    recommendation_in_slot,
    release_marks,
    signatures_needed,
)
from twinops.telemetry import conf as telemetry_conf
from twinops.telemetry.selectors import LatestSample, TagFreshness, freshness_limit_s, tag_freshness
from twins import CheckpointError, Twin, TwinDataset
from twins.adaptive import WINDOW, band_scale, history_rows

log = logging.getLogger(__name__)
Status: Any = Recommendation.Status
Meaning: Any = Signature.Meaning  # Any: without django-stubs, mypy reads the members as (value, label) tuples


@dataclass
class _Draft:
    """What one evaluation found, before it is stored."""

    status: str = Status.PENDING
    reason: str = ""
    twin_version: TwinVersion | None = None
    spec_version: SpecVersion | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    inputs_sha256: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    result: MpcResult | None = None

    def stop(self, status: str, reason: str) -> _Draft:
        self.status, self.reason = status, reason
        return self


def slot_of(now: datetime) -> datetime:
    """Return the start of the recommendation slot holding `now` (slots of TWINOPS_RECOMMEND_EVERY_S, UTC)."""
    every = conf.every_s()
    return datetime.fromtimestamp(math.floor(now.timestamp() / every) * every, UTC)


def recommendation_create(
    *, line: Line, actor: ActorLike, now: datetime | None = None, slot: datetime | None = None
) -> Recommendation:
    """Make the line's recommendation for the current slot, or return the one made: pending, withheld or failed.

    `slot` is given for a slot sent again after its worker died (recommendation_attempts_resend). While another
    live worker makes the slot, wait for it and return its recommendation (or take over if it dies meanwhile).
    """
    now = now or timezone.now()
    slot = slot or slot_of(now)
    while True:
        existing = recommendation_in_slot(line=line, slot=slot)
        if existing is not None:
            return existing
        attempt_id, attempts, mine = _attempt_claim(line=line, slot=slot, now=now)
        if mine:
            break
        _attempt_wait(attempt_id)
    try:
        given_up = _given_up(deaths=attempts - 1, slot=slot, now=now)
        if given_up:  # every earlier attempt's worker died before storing, or the slot is over: do not run it again
            draft = _Draft(status=Status.FAILED, reason=given_up)
            return _store(line=line, actor=Actor.of(actor), now=now, slot=slot, draft=draft)
        try:
            draft = _evaluate(line, now)
        except ImproperlyConfigured:
            raise  # not this slot's failure: handled below
        except Exception as exc:  # a periodic job must leave a record of why there is no proposal
            log.exception("recommendation for %s failed", line.key)
            draft = _Draft(status=Status.FAILED, reason=f"internal error: {type(exc).__name__}: {exc}")
        return _store(line=line, actor=Actor.of(actor), now=now, slot=slot, draft=draft)
    except ImproperlyConfigured:
        # A bad setting is the operator's to fix, loudly, not a property of this slot: no worker died, and the
        # slot is not sent again to fail the same way.
        RecommendationAttempt.objects.filter(pk=attempt_id).delete()
        raise
    finally:
        _attempt_release(attempt_id)


def _given_up(*, deaths: int, slot: datetime, now: datetime) -> str:
    """Return why a slot whose worker died `deaths` times is not made again ('' when it is tried once more)."""
    if deaths >= conf.max_attempts():
        return worker_died_message(deaths)
    if deaths and slot < slot_of(now):
        return (
            f"{worker_died_message(deaths)}; not made again because its slot had ended "
            "(the next slot's recommendation takes its place)"
        )
    return ""


def _attempt_claim(*, line: Line, slot: datetime, now: datetime) -> tuple[int, int, bool]:
    """Count a worker starting the line's slot and take the attempt's lock, committed before the work begins.

    Return the attempt's id, how many workers started the slot so far, and whether this one now holds the attempt.
    The session lock stays held until _attempt_release (or the worker's death), and the row becomes visible to
    others only with its lock taken. While another live worker holds it, nothing is counted (False).
    """
    table = RecommendationAttempt._meta.db_table
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {table} (line_id, slot, attempts, started_at) VALUES (%s, %s, 1, %s) "
            f"ON CONFLICT (line_id, slot) DO UPDATE SET attempts = {table}.attempts + 1, "
            "started_at = EXCLUDED.started_at RETURNING id, attempts",
            [line.pk, slot, now],
        )
        attempt_id, attempts = cur.fetchone()
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", [locks.RECOMMENDATION_ATTEMPT, attempt_id])
        mine = bool(cur.fetchone()[0])
        if not mine:
            transaction.set_rollback(True)  # not a new attempt: the live worker's own goes on
    return int(attempt_id), int(attempts), mine


def _attempt_wait(attempt_id: int) -> None:
    """Wait until the worker holding the attempt has stored its recommendation or died."""
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, %s)", [locks.RECOMMENDATION_ATTEMPT, attempt_id])
        cur.execute("SELECT pg_advisory_unlock(%s, %s)", [locks.RECOMMENDATION_ATTEMPT, attempt_id])


def _attempt_release(attempt_id: int) -> None:
    """Release the attempt's lock (stored or not: a slot left without a recommendation is then sent again)."""
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", [locks.RECOMMENDATION_ATTEMPT, attempt_id])
    except DatabaseError:  # the connection is gone (PostgreSQL restarted), and the session's locks went with it
        log.warning("could not release the lock of recommendation attempt %s: its session has ended", attempt_id)


def recommendation_attempts_resend(*, now: datetime | None = None, actor: ActorLike = "system:beat") -> list[int]:
    """Send again each slot whose worker died before storing it, or store it FAILED with the reason; return their ids.

    Died: an attempt row that no session holds the lock of. A worker killed with -9 leaves its message unacknowledged
    in Redis until the visibility timeout, hours later, and beat asks only for the next slot; so the slot is sent
    again at once, with its slot time, unless its workers died TWINOPS_RECOMMEND_MAX_ATTEMPTS times or the slot has
    ended (then FAILED, saying so). `sent_at` moves forward under a row lock, so two runs at once send a slot once;
    one sent is sent again only after TWINOPS_RESEND_QUEUED_AFTER_S unclaimed (the broker lost that message too).
    A duplicate delivery finds the recommendation stored, or waits for the live worker making it.
    """
    now = now or timezone.now()
    waiting = Q(sent_at__gt=F("started_at"), sent_at__gte=now - timedelta(seconds=conf.resend_after_s()))
    handled = []
    with transaction.atomic():
        rows = list(
            RecommendationAttempt.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("line")
            .exclude(waiting)
            .order_by("pk")
        )
        # read after the row locks: a worker claims a row under its lock, so none joins
        held = locks.held_ids(locks.RECOMMENDATION_ATTEMPT)
        for attempt in rows:
            if attempt.pk in held:
                continue  # its worker is alive and making it
            handled.append(attempt.pk)
            given_up = _given_up(deaths=attempt.attempts, slot=attempt.slot, now=now)
            if given_up:
                draft = _Draft(status=Status.FAILED, reason=given_up)
                _store(line=attempt.line, actor=Actor.of(actor), now=now, slot=attempt.slot, draft=draft)
                continue
            RecommendationAttempt.objects.filter(pk=attempt.pk).update(sent_at=now)
            line_id, slot = attempt.line_id, attempt.slot
            transaction.on_commit(lambda line_id=line_id, slot=slot: tasks.recommend_line_send(line_id, slot))
    return handled


def _evaluate(line: Line, now: datetime) -> _Draft:
    """Run the checks in order and, when they all pass, the optimizer; stop at the first reason not to propose."""
    draft = _Draft(
        settings={
            "thresholds": {
                "max_ood": conf.max_ood(),
                "max_spread": conf.max_spread(),
                "stale_periods": telemetry_conf.stale_periods(),
            },
            "ttl_s": conf.ttl_s(),
            "every_s": conf.every_s(),
        }
    )
    if line.mode == Line.Mode.OFF:
        return draft.stop(Status.WITHHELD, "the line is off: an engineer switches it to shadow or advisory")
    draft.spec_version = line.current_spec
    if draft.spec_version is None:
        return draft.stop(Status.FAILED, "the line has no spec")
    version = twin_promoted(line=line)
    if version is None:
        return draft.stop(Status.WITHHELD, "no promoted twin")
    draft.twin_version = version
    try:
        twin = twin_cached(version=version)
    except CheckpointError as exc:
        return draft.stop(Status.FAILED, f"twin v{version.version} cannot be loaded: {exc}")
    settings = conf.mpc_settings(twin_horizon=twin.config.horizon)
    draft.settings["mpc"] = dataclasses.asdict(settings) | {"ipopt_options": dict(settings.ipopt_options)}
    spec = MpcSpec.from_line_spec(draft.spec_version.document)
    draft.inputs["limits"] = _limits(spec)
    controller = controller_cached(version=version, twin=twin, spec=spec, settings=settings)
    if controller.incompatibility:
        return draft.stop(
            Status.FAILED,
            f"twin v{version.version} does not fit spec v{draft.spec_version.version} "
            f"of the line: {controller.incompatibility}",
        )
    freshness = tag_freshness(line=line, now=now)  # the data-quality table's definition of fresh too
    latest = {n: f.sample for n, f in freshness.items()}
    names = (*twin.cv_names, *twin.mv_names, *twin.dv_names)
    draft.inputs["latest"] = {n: _sample_json(latest[n]) for n in names if n in latest}
    problem = _data_problem(freshness, names, limit_s=freshness_limit_s(line=line))
    if problem:
        return draft.stop(Status.WITHHELD, problem)
    end = max(s.ts for n, s in latest.items() if n in names and s.ts is not None)
    try:
        window = recent_window(line=line, twin=twin, last=end, rows=twin.state_rows)
    except (KeyError, ValueError) as exc:
        return draft.stop(Status.FAILED, f"twin v{version.version} does not fit the line's telemetry: {exc.args[0]}")
    draft.window_start, draft.window_end = window.start, window.end
    draft.inputs_sha256 = window.dataset.sha256()
    if len(window.dataset) == 0:
        return draft.stop(Status.WITHHELD, f"no samples in the window ending {end.isoformat()}")
    mv = {n: float(latest[n].good_value) for n in twin.mv_names}  # type: ignore[arg-type]
    dv = {n: float(latest[n].good_value) for n in twin.dv_names}  # type: ignore[arg-type]
    z = twin.encode(window.dataset, np.array([len(window.dataset) - 1]))  # (M, 1, nz)
    trust = _trust(twin, z, mv, dv)
    draft.inputs.update(current_mv=mv, current_dv=dv, **trust)
    # Near training data is not enough: a twin whose recent predictions the measured CVs left is wrong now. Checked
    # even where the state is not trusted, and named first: a sensor that left the twin also pulls the members'
    # estimates apart, and the engineer should read the specific cause (which CV, how far) before the symptom.
    integrity = integrity_check(line=line, twin=twin, version=version.version, last=end)
    draft.inputs["innovation"] = integrity.record
    problems = "; ".join(p for p in (integrity.problem, _distrust(trust)) if p)
    if problems:
        return draft.stop(Status.WITHHELD, problems)
    # Offset-free MPC: the twin's error on the CVs now (measured minus estimated) is assumed to persist over the
    # horizon, so a biased twin cannot lead the plan across a limit it thinks is still away. Filtered per sample as
    # bench closedloop evaluated it; the raw error now is kept beside it, for the page and the audit.
    estimate = trust["current_cv_estimate"]
    raw = {n: float(latest[n].good_value) - estimate[n] for n in twin.cv_names}  # type: ignore[arg-type]
    cv_bias, draft.inputs["cv_bias_filter"] = _cv_bias_filtered(line=line, twin=twin, version=version, end=end)
    draft.inputs.update(cv_bias=cv_bias, cv_bias_raw=raw)
    forecast, draft.inputs["dv_forecast"] = _dv_forecast(
        line=line, version=version, twin=twin, dv=dv, steps=settings.horizon
    )
    # The calibrated band, widened where the twin's recent errors are larger than its calibration's: the plan keeps
    # that much more margin from safety limits, and the page draws the band it was held to.
    draft.inputs["band_scale"] = _band_scale(line=line, twin=twin, end=end, steps=settings.horizon)
    result = controller.solve(
        z0=z[:, 0, :],
        mv=mv,
        dv_forecast=forecast,
        spec=spec,
        cv_bias=cv_bias,
        band_scale=draft.inputs["band_scale"]["by_cv"],
    )
    draft.result = result
    if not result.has_proposal:
        return draft.stop(Status.FAILED, f"optimizer {result.status.value}: {result.message}")
    plan_distrust = _plan_distrust(result)
    if plan_distrust:  # trust is checked along the whole plan, not only at the current state
        draft.inputs["plan_ood"] = {"max": result.plan_ood_max, "step": result.plan_ood_step}
        draft.result = None  # withheld: no optimizer result is stored
        return draft.stop(Status.WITHHELD, plan_distrust)
    if line.mode == Line.Mode.SHADOW:
        draft.status = Status.SHADOW  # commissioning: tracked against what the plant does, never released
    return draft


BIAS_ROWS_MAX = 3 * MEMORY_SAMPLES  # samples filtered at most per proposal (default slots of 300 s hold 30 at 10 s)


def _cv_bias_filtered(
    *, line: Line, twin: Twin, version: TwinVersion, end: datetime
) -> tuple[dict[str, float], dict[str, Any]]:
    """Return the CV bias filtered over the recent samples, continuing the last proposal's estimate, and its record.

    Each sample since the stored estimate of the same twin (at least the last MEMORY_SAMPLES, at most BIAS_ROWS_MAX)
    gives a raw bias (measured CV minus the twin's estimate at that sample); cv_bias_filter runs over those newer than
    the stored estimate, so a restarted worker continues where the last proposal left off, and a gap in the data
    longer than RESET_AFTER_PERIODS restarts from the raw value.
    """
    period = float(line.sample_period_s)
    last = cv_bias_last(line=line, twin_version_id=version.pk, before=end)
    rows = MEMORY_SAMPLES
    if last is not None and last.updated_at:  # every sample since the stored estimate, up to a few memories
        since = (end - min(last.updated_at.values())).total_seconds() / period
        rows = int(min(max(rows, math.ceil(since - 1e-9)), BIAS_ROWS_MAX))
    history = recent_window(line=line, twin=twin, last=end, rows=twin.state_rows + rows - 1).dataset
    idx = np.arange(len(history) - rows, len(history))  # (rows,) the samples filtered
    estimate = _cv_estimates(twin, history, idx)  # (rows, n_cv)
    measured = np.where(history.cv_mask[idx], history.cv[idx], np.nan)
    t_s = end.timestamp() - period * (len(history) - 1 - idx)  # (rows,) each sample's time
    previous = None
    if last is not None:
        names = twin.cv_names
        previous = BiasState(
            value=np.array([last.value.get(n, np.nan) for n in names]),
            at_s=np.array([last.updated_at[n].timestamp() if n in last.updated_at else -np.inf for n in names]),
            restarted=np.zeros(len(names), dtype=bool),
        )
    raw = measured - estimate
    if previous is not None:
        raw = np.where(t_s[:, None] > previous.at_s[None, :], raw, np.nan)  # already in the stored estimate
    state = cv_bias_filter(raw, t_s, previous, period_s=period)
    value = {n: float(state.value[i]) for i, n in enumerate(twin.cv_names)}
    record = {
        "alpha": BIAS_ALPHA,
        "reset_after_periods": RESET_AFTER_PERIODS,
        "continued_from": last.recommendation_id if last is not None else None,
        "restarted": [n for i, n in enumerate(twin.cv_names) if state.restarted[i]],
        "samples": int(np.isfinite(raw).sum()),
        "updated_at": {
            n: datetime.fromtimestamp(float(state.at_s[i]), UTC).isoformat()
            for i, n in enumerate(twin.cv_names)
            if np.isfinite(state.at_s[i])
        },
    }
    return value, record


def _band_scale(*, line: Line, twin: Twin, end: datetime, steps: int) -> dict[str, Any]:
    """Return the adaptive band's record: per CV the widening at each step ahead, its largest, and why it is 1.

    twins.adaptive measures it from the twin's k-step errors over the recent history ending at `end`, for the
    `steps` ahead the plan spans (so the largest here is the one the optimizer's result reports).
    """
    history = recent_window(line=line, twin=twin, last=end, rows=history_rows(twin, steps=steps)).dataset
    scale = band_scale(twin, history, steps=steps)
    largest = dict(zip(twin.cv_names, map(float, scale.per_cv()), strict=True))
    widened = [n for n, s in largest.items() if s > 1.0]
    if widened:
        summary = "widened where the twin's recent errors exceed its calibration's: " + ", ".join(
            f"{n} ×{largest[n]:.2f}" for n in widened
        )
    else:
        summary = f"as calibrated: the twin's errors over the last {WINDOW} samples are within its calibration's"
    if scale.reason:  # an older twin (never widened), or a short history
        summary = scale.reason if scale.reason.startswith("not widened") else f"{summary} ({scale.reason})"
    return {
        "by_cv": {n: [float(v) for v in scale.scale[:, i]] for i, n in enumerate(twin.cv_names)},
        "largest": largest,
        "widened": widened,
        "window": WINDOW,
        "summary": summary,
    }


def _dv_forecast(
    *, line: Line, version: TwinVersion, twin: Twin, dv: dict[str, float], steps: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Return each DV's forecast over the horizon and its record (method, mean, phi, why, values) for the proposal.

    Each DV decays toward its mean where the twin's training history showed that this forecasts better than holding
    (optimizer.disturbances); otherwise, or where the forecast is not finite, it is held at its last good value.
    """
    if not twin.dv_names:
        return {}, {}
    model = dv_model_cached(line=line, version=version, twin=twin, horizon=steps)
    forecast = dv_forecast(model, dv, steps)
    record = model.record()
    for name, values in forecast.items():
        if not all(math.isfinite(v) for v in values):
            forecast[name] = [dv[name]] * steps
            record[name] |= {"method": "hold", "why": "held at its last good value: the forecast was not finite"}
        record[name]["values"] = forecast[name]
    return forecast, record


def _cv_estimates(twin: Twin, data: TwinDataset, rows: np.ndarray) -> np.ndarray:
    """Return the twin's ensemble-mean CVs (N, n_cv) at rows, each estimated from the state_rows rows ending there.

    With state_rows - 1 rows before each row in `data`, its estimate reads exactly the rows the proposal's own state
    is estimated from (and bench closedloop's are); all rows in one batch.
    """
    return twin.readout(twin.encode(data, rows)).mean(axis=0)


def _limits(spec: MpcSpec) -> dict[str, Any]:
    """Return the limits in force, by tag, for the page and the record."""
    out: dict[str, Any] = {}
    for c in spec.cvs:
        out[c.name] = {
            "role": "CV",
            "low": c.limits.low,
            "high": c.limits.high,
            "safety_low": c.safety.low,
            "safety_high": c.safety.high,
        }
    for m in spec.mvs:
        out[m.name] = {
            "role": "MV",
            "low": m.limits.low,
            "high": m.limits.high,
            "max_move_per_step": m.max_move_per_step,
            "ramp_rate_per_min": m.ramp_rate_per_min,
        }
    return out


def _sample_json(s: LatestSample) -> dict[str, Any]:
    return {
        "role": s.role,
        "ts": s.ts.isoformat() if s.ts else None,
        "value": s.value,
        "quality": s.quality,
        "reason": s.reason,
        "good_ts": s.good_ts.isoformat() if s.good_ts else None,
        "good_value": s.good_value,
    }


def _data_problem(freshness: dict[str, TagFreshness], names: tuple[str, ...], *, limit_s: float) -> str:
    """Return why the current data cannot be used (bad current samples, stale tags), naming the tags; '' if usable."""
    bad, stale = [], []
    for name in names:
        f = freshness.get(name)
        if f is None:
            stale.append(f"{name} is not an active tag of the line")
        elif f.verdict == "bad":
            bad.append(f.problem)
        elif not f.fresh:
            stale.append(f.problem)
    problems = bad + (
        [
            f"data are stale (limit {limit_s:g} s = {telemetry_conf.stale_periods():g} sample periods): "
            + "; ".join(stale)
        ]
        if stale
        else []
    )
    return "; ".join(problems)


def _trust(twin: Twin, z: np.ndarray, mv: dict[str, float], dv: dict[str, float]) -> dict[str, Any]:
    """Return the twin's OOD score of the current state and inputs, and its ensemble spread per CV (in CV stds)."""
    u = np.array([[mv[n] for n in twin.mv_names]])  # (1, n_mv)
    d = np.array([[dv[n] for n in twin.dv_names]]).reshape(1, len(twin.dv_names))  # (1, n_dv)
    score = float(twin.ood_score(z, u, d)[0])
    y = twin.readout(z)[:, 0, :]  # (M, n_cv) engineering units
    spread = y.std(axis=0, ddof=1) if y.shape[0] > 1 else np.zeros(y.shape[1])
    relative = spread / twin.norm.cv_std
    cv_now = y.mean(axis=0)
    return {
        "ood_score": score if math.isfinite(score) else None,
        "spread": {n: float(relative[i]) for i, n in enumerate(twin.cv_names)},
        "current_cv_estimate": {n: float(cv_now[i]) for i, n in enumerate(twin.cv_names)},
    }


def _distrust(trust: dict[str, Any]) -> str:
    """Return why the twin cannot be trusted at the current state ('' when it can), with the numbers."""
    problems = []
    score, limit = trust["ood_score"], conf.max_ood()
    if score is None or score > limit:
        problems.append(
            f"the twin's OOD score {score if score is None else f'{score:.2f}'} exceeds {limit:g} "
            "(1 = the 99th percentile of its training data): the plant is where the twin has not learned"
        )
    wide = {n: v for n, v in trust["spread"].items() if not v <= conf.max_spread()}
    if wide:
        spread = ", ".join(f"{n} {v:.3f}" for n, v in wide.items())
        problems.append(f"the twin's ensemble spread exceeds {conf.max_spread():g} CV standard deviations: {spread}")
    return "; ".join(problems)


def _plan_distrust(result: MpcResult) -> str:
    """Return why the plan leads where the twin has not learned ('' when it does not), naming the step and MVs."""
    score, step, limit = result.plan_ood_max, result.plan_ood_step, conf.max_ood()
    if score is None or step is None or score <= limit:  # None: a twin exported without OOD statistics
        return ""
    setpoints = ", ".join(f"{n}={v[step - 1]:.4g}" for n, v in (result.mv_plan or {}).items())
    return (
        f"the plan leads where the twin has not learned: its OOD score reaches {score:.2f} at step {step} "
        f"({setpoints}), above {limit:g} (1 = the 99th percentile of its training data)"
    )


def _store(*, line: Line, actor: Actor, now: datetime, slot: datetime, draft: _Draft) -> Recommendation:
    """Write the recommendation and its audit event in one transaction; the slot's first writer wins."""
    result = draft.result.to_dict() if draft.result is not None else None
    with transaction.atomic():
        try:
            with transaction.atomic():
                rec = Recommendation.objects.create(
                    line=line,
                    slot=slot,
                    status=draft.status,
                    reason=draft.reason,
                    created_at=now,
                    created_by_label=actor.label,
                    expires_at=now + timedelta(seconds=conf.ttl_s()),
                    twin_version=draft.twin_version,
                    spec_version=draft.spec_version,
                    window_start=draft.window_start,
                    window_end=draft.window_end,
                    inputs_sha256=draft.inputs_sha256,
                    inputs=json_plain(draft.inputs),
                    settings=json_plain(draft.settings),
                    result=result,
                    solver_status=draft.result.status.value if draft.result is not None else "",
                    expected_gain=draft.result.objective_gain if draft.result is not None else None,
                )
        except IntegrityError:
            RecommendationAttempt.objects.filter(line=line, slot=slot).delete()
            return Recommendation.objects.get(line=line, slot=slot)  # another worker made this slot's one first
        RecommendationAttempt.objects.filter(line=line, slot=slot).delete()  # stored: no attempt is in flight
        action = {
            Status.PENDING: "recommendation.created",
            Status.SHADOW: "recommendation.created",
            Status.WITHHELD: "recommendation.withheld",
            Status.FAILED: "recommendation.failed",
        }[Status(rec.status)]
        audit_record(
            actor=actor,
            action=action,
            obj=rec,
            reason=rec.reason,
            at=now,
            after={
                "line": line.key,
                "status": rec.status,
                "slot": slot,
                "twin_version": getattr(draft.twin_version, "version", None),
                "spec_version": getattr(draft.spec_version, "version", None),
                "inputs_sha256": rec.inputs_sha256,
                "expected_gain": rec.expected_gain,
                "first_move": (result or {}).get("first_move"),
            },
        )
        if rec.status == Status.PENDING:
            _supersede(rec, actor=actor, now=now)
    return rec


def _supersede(rec: Recommendation, *, actor: Actor, now: datetime) -> None:
    """Expire the line's older pending proposals: only the newest one may be acted on."""
    older = list(
        Recommendation.objects.select_for_update()
        .filter(line_id=rec.line_id, status=Status.PENDING)
        .exclude(pk=rec.pk)
        .values_list("pk", flat=True)
    )
    _expire(older, reason=f"superseded by recommendation {rec.pk}", actor=actor, now=now)


def _expire(ids: list[int], *, reason: str, actor: Actor, now: datetime) -> int:
    """Mark still-pending recommendations expired (conditional UPDATE) and audit each one changed."""
    expired = 0
    for pk in ids:
        if Recommendation.objects.filter(pk=pk, status=Status.PENDING).update(status=Status.EXPIRED, reason=reason):
            audit_record(
                actor=actor,
                action="recommendation.expired",
                object_type="recommendations.recommendation",
                object_id=str(pk),
                line=_line_key_of(pk),
                reason=reason,
                at=now,
                before={"status": "pending"},
                after={"status": "expired"},
            )
            expired += 1
    return expired


def recommendations_expire(*, now: datetime | None = None, actor: ActorLike = "system:beat") -> int:
    """Mark pending recommendations past their expiry time expired; return how many. Safe to run concurrently."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Recommendation.objects.select_for_update(skip_locked=True)
            .filter(status=Status.PENDING, expires_at__lte=now)
            .values_list("pk", flat=True)
        )
        return _expire(due, reason="expired: not acted on before its expiry time", actor=Actor.of(actor), now=now)


# --- review: signatures ----------------------------------------------------------------------------------------------


class SigningError(ValueError):
    """A signature was refused; the message says why and who can act. Nothing was signed."""


MEANINGS = {"approve": Meaning.APPROVED, "reject": Meaning.REJECTED}


def proposal_sign(
    *,
    recommendation_id: int,
    actor: ActorLike,
    password: str,
    decision: str,
    reason: str = "",
    scale: float = 1.0,
    client: str = "",
    now: datetime | None = None,
) -> Recommendation:
    """Sign a pending proposal as approved for release or rejected, with the signer's password re-entered.

    `scale` below 1 approves smaller moves: the plan moved `scale` of the way from the current setpoints, re-simulated
    on the twin and re-checked against every limit before it can be signed. A proposal whose largest move exceeds a
    spec's `dual_approval_above` needs two approvals by different engineers. Every refusal is audited; a wrong
    password counts as a failed login. `client` is the signer's address (the web request's, "cli" from the shell).
    """
    who = Actor.of(actor)
    if decision not in MEANINGS:
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    meaning = MEANINGS[decision]
    if not who.person or who.user is None:
        raise SigningError("only a signed-in person can sign a proposal")
    capability_require(actor=who, capability="approve_proposal")
    user: Any = who.user
    username = user.get_username()
    try:
        allowed = login_attempt_begin(username=username, client=client)  # counted before the password is checked
    except RateLimiterUnavailable:
        _signature_refused(who, recommendation_id, meaning, "the rate limiter's store (Redis) is down")
        raise SigningError("Signing is unavailable: the rate limiter's store is down; try again shortly.") from None
    if not allowed:
        _signature_refused(who, recommendation_id, meaning, f"too many failed password attempts for {username}")
        raise SigningError(f"Too many failed password attempts. Try again in {lockout_minutes()} minutes.")
    if not user.check_password(password):
        _signature_refused(who, recommendation_id, meaning, "wrong password")
        raise SigningError("Wrong password: nothing was signed.")
    login_failures_clear(username=username, client=client)
    reason = reason.strip()
    if meaning == Meaning.REJECTED and not reason:
        raise SigningError("Give a reason for rejecting the proposal.")
    if not (isinstance(scale, float | int) and math.isfinite(scale) and 0.0 < scale <= 1.0):
        raise SigningError(f"The scale of the moves must be above 0 and at most 1 (100 %), not {scale!r}.")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            rec = Recommendation.objects.select_for_update().select_related("line").get(pk=recommendation_id)
            problem = _unsignable(rec, who, now)
            if problem:
                raise SigningError(problem)
            if meaning == Meaning.REJECTED:
                return _reject(rec, who, reason, now)
            return _approve(rec, who, reason, float(scale), now)
    except Recommendation.DoesNotExist:
        raise SigningError(f"There is no proposal {recommendation_id}.") from None
    except SigningError as e:
        _signature_refused(who, recommendation_id, meaning, str(e))
        raise


def _unsignable(rec: Recommendation, who: Actor, now: datetime) -> str:
    """Return why this proposal cannot be signed now by this person ('' when it can)."""
    if rec.status != Status.PENDING:
        why = {
            Status.SHADOW: "it was made while the line was in shadow mode; shadow proposals are never released",
            Status.APPROVED: "it is already approved",
            Status.REJECTED: "it is already rejected",
            Status.EXPIRED: f"it expired ({rec.reason})",
            Status.WITHHELD: f"it was withheld and has no plan ({rec.reason})",
            Status.FAILED: f"it failed and has no plan ({rec.reason})",
        }.get(Status(rec.status), rec.status)
        return f"Proposal {rec.pk} cannot be signed: {why}."
    if rec.expires_at <= now:
        return f"Proposal {rec.pk} expired at {rec.expires_at:%Y-%m-%d %H:%M:%S} UTC; wait for the next one."
    line = rec.line
    if line.mode != Line.Mode.ADVISORY:
        return (
            f"Line {line.key} is in {line.mode} mode; only proposals of a line in advisory mode can be signed "
            "(an engineer or admin changes the mode on the line's page)."
        )
    spec = line.current_spec
    if spec is None or rec.spec_version_id != spec.pk:
        return f"The spec of line {line.key} changed since proposal {rec.pk} was made; the next proposal uses it."
    twin = twin_promoted(line=line)
    if twin is None or rec.twin_version_id != twin.pk:
        return (
            f"The promoted twin of line {line.key} changed since proposal {rec.pk} was made; the next proposal uses it."
        )
    if any(s.user_id == getattr(who.user, "pk", None) for s in rec.signatures.all()):
        return f"You already signed proposal {rec.pk}; a second engineer must sign it."
    return ""


def _reject(rec: Recommendation, who: Actor, reason: str, now: datetime) -> Recommendation:
    sig = _signature_create(rec, who, Meaning.REJECTED, reason, 1.0, now)
    rec.status, rec.decided_at = Status.REJECTED, now
    rec.save(update_fields=["status", "decided_at"])
    audit_record(
        actor=who,
        action="proposal.rejected",
        obj=rec,
        reason=reason,
        at=now,
        before={"status": "pending"},
        after={"status": "rejected", "signature": _signature_json(sig)},
    )
    return rec


def _approve(rec: Recommendation, who: Actor, reason: str, scale: float, now: datetime) -> Recommendation:
    earlier = [s for s in rec.signatures.all() if s.meaning == Meaning.APPROVED]
    if earlier and earlier[0].scale != scale:
        raise SigningError(
            f"{earlier[0].full_name or earlier[0].username} approved the moves at {earlier[0].scale:.0%}; "
            "approve the same plan or reject it."
        )
    checked = rec.result if scale == 1.0 else _plan_checked(rec, scale)
    digest = proposal_content_sha256(rec, scale=scale)
    if earlier and earlier[0].content_sha256 != digest:
        raise SigningError("What the first engineer signed has changed since (plan, limits, spec or twin); not signed.")
    sig = _signature_create(rec, who, Meaning.APPROVED, reason, scale, now)
    needed = signatures_needed(rec, scale=scale)
    if len(earlier) + 1 < needed:
        audit_record(
            actor=who,
            action="proposal.signed",
            obj=rec,
            reason=reason,
            at=now,
            after={"signature": _signature_json(sig), "signatures": len(earlier) + 1, "needed": needed},
        )
        return rec
    assert checked is not None
    rec.status, rec.decided_at = Status.APPROVED, now
    rec.approved_plan = json_plain(
        {
            "scale": scale,
            "start_mv": rec.inputs.get("current_mv") or {},
            "mv_plan": plan_scaled(rec, scale=scale),
            "cv_mean": checked.get("cv_mean"),
            "cv_lo": checked.get("cv_lo"),
            "cv_hi": checked.get("cv_hi"),
            "cv_hold_mean": checked.get("cv_hold_mean"),
            "expected_gain": checked.get("objective_gain"),
            "sample_period_s": checked.get("sample_period_s"),
            "content_sha256": digest,
        }
    )
    rec.save(update_fields=["status", "decided_at", "approved_plan"])
    audit_record(
        actor=who,
        action="proposal.approved",
        obj=rec,
        reason=reason,
        at=now,
        before={"status": "pending"},
        after={
            "status": "approved",
            "scale": scale,
            "content_sha256": digest,
            "signatures": [_signature_json(s) for s in rec.signatures.all()],
        },
    )
    return rec


def _plan_checked(rec: Recommendation, scale: float) -> dict[str, Any]:
    """Re-simulate the scaled plan on the proposal's twin from its data window; raise SigningError if a limit breaks."""
    version = rec.twin_version
    assert version is not None and rec.spec_version is not None and rec.window_end is not None
    twin = twin_cached(version=version)
    spec = MpcSpec.from_line_spec(rec.spec_version.document)
    settings = conf.mpc_settings(twin_horizon=twin.config.horizon)
    controller = controller_cached(version=version, twin=twin, spec=spec, settings=settings)
    window = recent_window(line=rec.line, twin=twin, last=rec.window_end, rows=twin.state_rows)
    z = twin.encode(window.dataset, np.array([len(window.dataset) - 1]))
    result = controller.evaluate_plan(
        z0=z[:, 0, :],
        mv=rec.inputs["current_mv"],
        plan=plan_scaled(rec, scale=scale),
        dv_forecast=_dv_forecast_of(rec),
        spec=spec,
        cv_bias=rec.inputs.get("cv_bias"),
        band_scale=(rec.inputs.get("band_scale") or {}).get("by_cv"),  # older proposals: the band as calibrated
    )
    if not result.has_proposal:
        raise SigningError(f"The moves at {scale:.0%} cannot be signed: {result.message}.")
    return result.to_dict()


def _dv_forecast_of(rec: Recommendation) -> dict[str, Any]:
    """Return the DV forecast a proposal's plan was made with (older proposals held the current DVs)."""
    stored = rec.inputs.get("dv_forecast")
    if stored:
        return {name: entry["values"] for name, entry in stored.items()}
    return rec.inputs.get("current_dv") or {}


def _signature_create(
    rec: Recommendation, who: Actor, meaning: str, reason: str, scale: float, now: datetime
) -> Signature:
    user: Any = who.user
    return Signature.objects.create(
        recommendation=rec,
        user=user,
        username=user.get_username(),
        full_name=user.get_full_name() or user.get_username(),
        meaning=meaning,
        reason=reason,
        signed_at=now,
        scale=scale,
        content_sha256=proposal_content_sha256(rec, scale=scale),
    )


def _signature_json(sig: Signature) -> dict[str, Any]:
    return {
        "username": sig.username,
        "full_name": sig.full_name,
        "meaning": sig.get_meaning_display(),
        "signed_at": sig.signed_at,
        "reason": sig.reason,
        "scale": sig.scale,
        "content_sha256": sig.content_sha256,
    }


def _line_key_of(recommendation_id: int) -> str:
    """Return the key of a recommendation's line for its audit events ('' when there is no such recommendation)."""
    return Recommendation.objects.filter(pk=recommendation_id).values_list("line__key", flat=True).first() or ""


def _signature_refused(who: Actor, recommendation_id: int, meaning: str, why: str) -> None:
    """Audit a refused signature in its own transaction (the refusal itself must not be lost)."""
    with transaction.atomic():
        audit_record(
            actor=who,
            action="proposal.signature_refused",
            object_type="recommendations.recommendation",
            object_id=str(recommendation_id),
            line=_line_key_of(recommendation_id),
            reason=why,
            after={"meaning": str(meaning)},
        )


# --- outcomes -------------------------------------------------------------------------------------------------------
def outcomes_record(*, now: datetime | None = None, actor: ActorLike = "system:beat") -> int:
    """Record the outcome of each shadow or released proposal whose horizon has passed; return how many were recorded."""
    now = now or timezone.now()
    due = outcome_candidates(before=now)
    return sum(outcome_record(recommendation=rec, now=now, actor=actor) is not None for rec in due)


def outcome_record(
    *, recommendation: Recommendation, now: datetime | None = None, actor: ActorLike = "system:beat"
) -> Outcome | None:
    """Record one proposal's outcome with its audit event, once its horizon has passed; None if not due or done."""
    now = now or timezone.now()
    with transaction.atomic():
        # The row lock claims the proposal: a second worker skips it now, and finds the outcome once this commits.
        rec = (
            Recommendation.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("line", "spec_version")
            .filter(pk=recommendation.pk, status__in=OUTCOME_STATUSES, result__isnull=False)
            .first()
        )
        if rec is None or Outcome.objects.filter(recommendation_id=rec.pk).exists() or not rec.has_proposal:
            return None
        released = rec.status == Status.APPROVED
        marks = release_marks(rec=rec)
        if released and not marks:
            return None  # approved but not released yet: nothing reached the plant
        prediction = outcomes.prediction_of(
            result=rec.plan,
            approved_plan=rec.approved_plan,
            inputs=rec.inputs,
            spec=rec.spec_version.document if rec.spec_version else {},
            start=marks[0] if released else (rec.window_end or rec.created_at),
            released=released,
            band=band_words(rec.result or {}, rec.settings),
        )
        period, n = prediction.period_s, prediction.horizon
        if now < prediction.start + timedelta(seconds=period * (n + 1 + outcomes.MARGIN_PERIODS)):
            return None
        tags = [*prediction.cv_mean, *prediction.mv_expected, *(rec.inputs.get("current_dv") or {})]
        measured = outcome_measurements(line=rec.line, start=prediction.start, period_s=period, steps=n + 1, tags=tags)
        draft = outcomes.outcome_compare(
            prediction=prediction,
            measured=outcomes.Measured(measured),
            spec=rec.spec_version.document if rec.spec_version else {},
        )
        outcome = Outcome.objects.create(
            recommendation=rec, recorded_at=now, **(json_plain(dataclasses.asdict(draft)) | {"start": draft.start})
        )
        audit_record(
            actor=Actor.of(actor),
            action="recommendation.outcome_recorded",
            obj=rec,
            at=now,
            reason=draft.note,
            after={
                "compared_with": draft.compared_with,
                "start": draft.start,
                "horizon": n,
                "coverage": draft.coverage,
                "measured_share": draft.measured_share,
                "mean_abs_error": {
                    cv: _mean_abs([e for e in errors if e is not None]) for cv, errors in draft.error.items()
                },
                "predicted_value_per_h": draft.predicted_value_per_h,
                "realized_value_per_h": draft.realized_value_per_h,
                "predicted_gain_per_h": draft.predicted_gain_per_h,
                "realized_gain_per_h": draft.realized_gain_per_h,
            },
        )
    return outcome


def _mean_abs(values: list[float]) -> float | None:
    return float(np.mean(np.abs(values))) if values else None


def recommendation_released(*, recommendation_id: int, at: datetime) -> bool:
    """Record, once, when an approved proposal's first step reached the PLC; its outcome is measured from there.

    Called by the releases app in the transaction that records the verified write (audited there, as release.write).
    """
    rows = Recommendation.objects.filter(pk=recommendation_id, status=Status.APPROVED, released_at__isnull=True)
    return bool(rows.update(released_at=at))
