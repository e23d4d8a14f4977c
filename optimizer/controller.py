"""Economic MPC of one line on one twin version: check inputs, solve warm-started, return a complete result."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optimizer.bands import plan_band
from optimizer.blas import blas_threads
from optimizer.checks import SolveInputs, check_compatible, prepare_solve
from optimizer.condensed import Evaluation
from optimizer.dynamics import ExportError, TwinDynamics
from optimizer.limits import CvLimits
from optimizer.linearize import NumpyTwin
from optimizer.model import Dynamics
from optimizer.ood import plan_ood
from optimizer.proposal import hard_violation, no_proposal, proposal
from optimizer.recovery import recovery_note, recovery_problem
from optimizer.result import MpcResult, MpcStatus
from optimizer.spec import MpcSettings, MpcSpec
from optimizer.sqp import CondensedSqp, SqpOutcome, project, shift_steps


class MpcController:
    """Build the problem once per (line, twin version); call `solve` every sample period.

    Each solve runs the condensed SQP (optimizer.sqp): the twin linearised along the plan in numpy, one dense convex
    QP per linearisation, every step checked on the exact twin. optimizer.reference solves the same problem with
    IPOPT, for tests and benchmarks to compare against.
    """

    def __init__(
        self,
        dynamics: Dynamics | None,
        spec: MpcSpec,
        settings: MpcSettings | None = None,
        *,
        export_error: str | None = None,
    ) -> None:
        self.dynamics, self.spec = dynamics, spec
        # self.dynamics is the export with the band of the call in progress (band_scale); this is the export itself
        self._exported = dynamics
        self.settings = settings or MpcSettings()
        problems = [export_error] if export_error else check_compatible(dynamics, spec, self.settings)
        self.incompatibility: str | None = "; ".join(p for p in problems if p) or None
        self.sqp = None if self.incompatibility or dynamics is None else CondensedSqp(dynamics, spec, self.settings)
        self._warm_plan: np.ndarray | None = None  # the previous proposal's plan (n_mv, N)
        self._lock = threading.Lock()  # one call at a time: the band and the warm start are per call

    @classmethod
    def from_export(
        cls,
        meta: Mapping[str, Any],
        arrays: Mapping[str, np.ndarray],
        spec: MpcSpec,
        settings: MpcSettings | None = None,
    ) -> MpcController:
        """Build from a twin export; a bad or mismatched export gives a controller whose solves say 'incompatible'."""
        try:
            dynamics = TwinDynamics.from_export(meta, arrays)
        except ExportError as exc:
            return cls(None, spec, settings, export_error=str(exc))
        return cls(dynamics, spec, settings)

    def reset(self) -> None:
        """Forget the previous solution, so the next solve starts cold from holding the current setpoints."""
        self._warm_plan = None

    def solve(
        self,
        *,
        z0: np.ndarray,
        mv: Mapping[str, float],
        dv_forecast: Mapping[str, float | Sequence[float]] | None = None,
        spec: MpcSpec | None = None,
        cv_bias: Mapping[str, float] | None = None,
        band_scale: Mapping[str, float | Sequence[float]] | None = None,
    ) -> MpcResult:
        """Plan setpoints from latents z0 (M, nz), current setpoints by MV name and a DV forecast by DV name.

        A DV forecast is one value (held over the horizon) or one value per step. `spec` may update limits,
        prices and targets without a rebuild, as long as its tags, terms and targets are the same.
        `cv_bias` (offset-free MPC): a constant output disturbance per CV name, in engineering units, added to every
        member's predicted CVs over the whole horizon (soft and safety limits, targets, economics, the reported
        predictions); usually measured CV minus the twin's readout of z0 now, filtered. CVs not named get 0; an
        unknown name or a NaN/inf value gives `bad_input`. None (the default) adds nothing.
        `band_scale` (the adaptive band, twins.adaptive): per CV name, one multiplier >= 1 of the calibrated band, or
        one per step ahead; the safety margins, the soft limits' back-off and the reported bands all widen by it.
        """
        with self._lock:
            inputs = self._inputs(
                spec=spec, z0=z0, mv=mv, dv_forecast=dv_forecast, cv_bias=cv_bias, band_scale=band_scale
            )
            if isinstance(inputs, MpcResult):
                return inputs
            with blas_threads(self.settings.blas_threads):
                return self._plan(inputs)

    def _plan(self, inputs: SolveInputs) -> MpcResult:
        """Run the condensed SQP from the previous plan (shifted) or from holding, and assemble the result.

        Anytime: when the SQP stops on its budget (time or linearisations) or fails after improving on its start,
        the last plan that meets every hard limit on the exact twin is proposed, marked as such. With the line
        beyond a safety limit now, the recovery plan (optimizer.recovery) is proposed when one reduces the excess.
        """
        dyn, sqp, settings = self.dynamics, self.sqp, self.settings
        assert dyn is not None and sqp is not None
        u_now, d_plan, bias, weights, limits = inputs.u_now, inputs.d_plan, inputs.bias, inputs.weights, inputs.limits
        mv = limits.mv
        hold_plan = np.repeat(u_now[:, None], settings.horizon, axis=1)
        warm = self._warm_plan is not None
        start = hold_plan if self._warm_plan is None else shift_steps(self._warm_plan)
        held = self._held_limits(inputs)

        def run(plan: np.ndarray) -> SqpOutcome:
            return sqp.solve(
                z_now=inputs.z_now,
                u_now=u_now,
                d=d_plan,
                u_start=project(plan, u_now, mv.low, mv.high, mv.step_move),
                mv=mv,
                weights=weights,
                limits=held,
                cv_bias=bias,
            )

        out = run(start)
        if warm and not out.accepted and not out.ref.safe:
            # The last plan, shifted, breaks a hard limit now (a wider band, a tighter limit, another DV forecast)
            # and the SQP could not leave it: start again from holding, as a first solve would.
            first, out = out, run(hold_plan)
            out = dataclasses.replace(
                out, elapsed_s=first.elapsed_s + out.elapsed_s, iterations=first.iterations + out.iterations
            )
        if out.status is MpcStatus.OPTIMAL and out.elapsed_s > settings.max_solver_time_s:
            out = dataclasses.replace(out, status=MpcStatus.TIMEOUT)
        violation = self._violation(inputs, out.ref)
        if out.status is MpcStatus.OPTIMAL:
            if violation:
                self._keep_warm_start()
                return MpcResult(
                    MpcStatus.SOLVER_FAILED,
                    f"the QP solver returned {out.raw} but {violation}; no proposal",
                    settings.horizon,
                    dyn.sample_period_s,
                    solve_time_s=out.elapsed_s,
                    iterations=out.iterations,
                )
            self._warm_plan = out.ref.u
            return self._proposal(
                inputs,
                out.ref,
                held=held,
                raw=f"QP {settings.qp_solver}: {out.raw}",
                elapsed=out.elapsed_s,
                iterations=out.iterations,
                linearisations=out.linearisations,
            )
        if (out.accepted or warm) and out.ref.safe and not violation:
            why = {
                MpcStatus.TIMEOUT: f"time budget of {settings.max_solver_time_s:g} s spent",
                MpcStatus.NOT_CONVERGED: "plan still moving",
            }.get(out.status, f"the QP solver returned {out.raw}")
            self._warm_plan = out.ref.u
            return self._proposal(
                inputs,
                out.ref,
                held=held,
                raw=f"QP {settings.qp_solver}: {out.raw}",
                elapsed=out.elapsed_s,
                iterations=out.iterations,
                linearisations=out.linearisations,
                fallback="last_safe_plan",
                headline=(
                    f"stopped after {out.linearisations} linearisations; the last safe plan ({why}): every hard "
                    "limit holds on the exact twin, a converged plan might do better"
                ),
            )
        recovered = self._recover(inputs, held)
        if recovered is not None:
            return recovered
        return self._failure(inputs, out.status, out.raw, out.elapsed_s, out.iterations)

    def _held_limits(self, inputs: SolveInputs) -> CvLimits:
        """Return the solve's CV limits with the soft ones backed off by the calibrated one-step-ahead half-width."""
        dyn, sqp = self.dynamics, self.sqp
        assert dyn is not None and sqp is not None
        if not self.settings.cv_backoff or dyn.calibration is None:
            return inputs.limits.cv
        members = sqp.twin.readout_now(inputs.z_now)  # (M, n_cv): the spread now sizes the next step's band
        var_n = members.var(axis=0, ddof=1) / dyn.cv_std**2 if dyn.members > 1 else np.zeros(len(dyn.cv))
        band = plan_band(dyn.calibration, dyn.members, len(dyn.cv), 1, 0.0)
        return inputs.limits.cv.backed_off(self.settings.cv_backoff * band.half(var_n[:, None], dyn.cv_std)[:, 0])

    def _recover(self, inputs: SolveInputs, held: CvLimits) -> MpcResult | None:
        """Return the recovery proposal when the line is beyond a safety limit now and a plan reduces the excess."""
        dyn, sqp, settings = self.dynamics, self.sqp, self.settings
        assert dyn is not None and sqp is not None
        y_now = sqp.current(inputs.z_now) + (0.0 if inputs.bias is None else inputs.bias)
        rec = recovery_problem(y_now, held, inputs.weights, settings)
        if rec is None:
            return None
        mv, u_now = inputs.limits.mv, inputs.u_now
        hold_plan = np.repeat(u_now[:, None], settings.horizon, axis=1)
        out = sqp.solve(
            z_now=inputs.z_now,
            u_now=u_now,
            d=inputs.d_plan,
            u_start=project(hold_plan, u_now, mv.low, mv.high, mv.step_move),
            mv=mv,
            weights=rec.weights,
            limits=rec.limits,
            cv_bias=inputs.bias,
        )
        # every hard limit but the ones the line is already beyond, on the exact twin
        rest = dataclasses.replace(
            inputs.limits,
            cv=dataclasses.replace(
                inputs.limits.cv, safety_low=rec.limits.safety_low, safety_high=rec.limits.safety_high
            ),
        )
        if not out.ref.safe or hard_violation(settings, dyn, rest, out.ref.u, u_now, out.ref.mean, out.ref.var_n):
            return None
        note = recovery_note(rec, dyn.cv, out.ref.mean, inputs.limits.cv, dyn.sample_period_s)
        if note is None:
            return None
        self._warm_plan = out.ref.u
        return self._proposal(
            inputs,
            out.ref,
            held=held,
            raw=f"QP {settings.qp_solver}: {out.raw}",
            elapsed=out.elapsed_s,
            iterations=out.iterations,
            linearisations=out.linearisations,
            fallback="recovery",
            headline=note,
        )

    def _keep_warm_start(self) -> None:
        """After a solve without proposal, start the next one from the last good plan, shifted once more."""
        if self._warm_plan is not None:
            self._warm_plan = shift_steps(self._warm_plan)

    def evaluate_plan(
        self,
        *,
        z0: np.ndarray,
        mv: Mapping[str, float],
        plan: Mapping[str, Sequence[float]],
        dv_forecast: Mapping[str, float | Sequence[float]] | None = None,
        spec: MpcSpec | None = None,
        cv_bias: Mapping[str, float] | None = None,
        band_scale: Mapping[str, float | Sequence[float]] | None = None,
    ) -> MpcResult:
        """Re-simulate a given MV plan (one setpoint per step, by MV name) on the twin and check every hard limit.

        Returns the plan's proposal (predictions, bands, gain against holding) as `solve` would, or, when the plan
        breaks a hard limit (MV, move, CV safety) or does not fit the horizon, a result without proposal saying which.
        """
        with self._lock:
            inputs = self._inputs(
                spec=spec, z0=z0, mv=mv, dv_forecast=dv_forecast, cv_bias=cv_bias, band_scale=band_scale
            )
            if isinstance(inputs, MpcResult):
                return inputs
            return self._evaluate_plan(inputs, plan)

    def _evaluate_plan(self, inputs: SolveInputs, plan: Mapping[str, Sequence[float]]) -> MpcResult:
        """Check the plan's shape, simulate it and return its proposal or the hard limit it breaks."""
        dyn, sqp, settings = self.dynamics, self.sqp, self.settings
        assert dyn is not None and sqp is not None
        shape = (len(dyn.mv), settings.horizon)
        try:
            u = np.array([[float(v) for v in plan[name]] for name in dyn.mv], dtype=float)
        except KeyError as e:
            return MpcResult(
                MpcStatus.BAD_INPUT, f"the plan has no MV {e.args[0]}", settings.horizon, dyn.sample_period_s
            )
        if u.shape != shape or not np.all(np.isfinite(u)):
            return MpcResult(
                MpcStatus.BAD_INPUT,
                f"the plan must hold {shape[1]} finite setpoints per MV, got shape {u.shape}",
                settings.horizon,
                dyn.sample_period_s,
            )
        with blas_threads(settings.blas_threads):
            ev = sqp.evaluate(
                u,
                inputs.z_now,
                inputs.d_plan,
                inputs.u_now,
                inputs.weights,
                inputs.limits.cv,
                linearise=False,
                cv_bias=inputs.bias,
            )
            violation = self._violation(inputs, ev)
            if violation:
                return MpcResult(MpcStatus.INFEASIBLE, violation, settings.horizon, dyn.sample_period_s)
            return self._proposal(
                inputs, ev, raw="a given plan, re-simulated", elapsed=0.0, iterations=0, linearisations=0
            )

    def _inputs(
        self,
        *,
        spec: MpcSpec | None,
        z0: np.ndarray,
        mv: Mapping[str, float],
        dv_forecast: Mapping[str, float | Sequence[float]] | None,
        cv_bias: Mapping[str, float] | None,
        band_scale: Mapping[str, float | Sequence[float]] | None,
    ) -> SolveInputs | MpcResult:
        """Check and shape one call's inputs (solve and evaluate_plan alike); a result says what is wrong with them.

        With usable inputs, the call's dynamics (self.dynamics) and the SQP's safety band take the call's band.
        """
        inputs = prepare_solve(
            self._exported,
            self.spec,
            self.settings,
            self.incompatibility,
            spec=spec or self.spec,
            z0=z0,
            mv=mv,
            dv_forecast=dv_forecast or {},
            cv_bias=cv_bias,
            band_scale=band_scale,
        )
        if isinstance(inputs, SolveInputs):
            dyn = self._exported
            if inputs.band_scale is not None and isinstance(dyn, TwinDynamics) and dyn.calibration is not None:
                dyn = dataclasses.replace(dyn, calibration=dyn.calibration.widened(inputs.band_scale))
            self.dynamics = dyn
            if self.sqp is not None and dyn is not None:
                self.sqp.costs.use_calibration(dyn.calibration)
        return inputs

    def _violation(self, inputs: SolveInputs, ref: Evaluation) -> str:
        """Return which hard limit (MV, move, CV safety) plan `ref` breaks on the exact twin; '' when none."""
        dyn = self.dynamics
        assert dyn is not None
        return hard_violation(self.settings, dyn, inputs.limits, ref.u, inputs.u_now, ref.mean, ref.var_n)

    def _proposal(
        self,
        inputs: SolveInputs,
        ref: Evaluation,
        *,
        raw: str,
        elapsed: float,
        iterations: int,
        linearisations: int,
        held: CvLimits | None = None,
        fallback: str | None = None,
        headline: str = "",
    ) -> MpcResult:
        """Return the proposal of plan `ref`: predictions with bands, gain against holding, active constraints."""
        dyn, sqp, settings = self.dynamics, self.sqp, self.settings
        assert dyn is not None and sqp is not None
        u_now, d_plan, bias, weights, limits = inputs.u_now, inputs.d_plan, inputs.bias, inputs.weights, inputs.limits
        hold_plan = np.repeat(u_now[:, None], settings.horizon, axis=1)
        hold = sqp.evaluate(hold_plan, inputs.z_now, d_plan, u_now, weights, limits.cv, linearise=False, cv_bias=bias)
        return proposal(
            dyn,
            settings,
            limits,
            u=ref.u,
            u_now=u_now,
            d_plan=d_plan,
            y=ref.mean,
            var_n=ref.var_n,
            value=float(np.mean(sqp.costs.value(ref.mean, ref.u, d_plan, weights.price))),
            y_hold=hold.mean,
            value_hold=float(np.mean(sqp.costs.value(hold.mean, hold_plan, d_plan, weights.price))),
            raw=raw,
            elapsed=elapsed,
            iterations=iterations,
            linearisations=linearisations,
            held=held,
            fallback=fallback,
            headline=headline,
            ood=self._plan_ood(inputs, ref),
            gain_spread=self._gain_spread(ref, hold, d_plan, weights.price),
            band_scale=inputs.band_scale,
        )

    def _gain_spread(self, ref: Evaluation, hold: Evaluation, d_plan: np.ndarray, price: np.ndarray) -> float | None:
        """Return how much the members disagree about the gain: std over members of (plan value - hold value)."""
        sqp = self.sqp
        assert sqp is not None
        members = ref.y_members.shape[1]
        if members < 2:
            return None

        def value(ev: Evaluation, m: int) -> float:
            return float(np.mean(sqp.costs.value(ev.y_members[:, m, :].T, ev.u, d_plan, price)))

        gains = [value(ref, m) - value(hold, m) for m in range(members)]
        return float(np.std(gains, ddof=1))

    def _plan_ood(self, inputs: SolveInputs, ref: Evaluation) -> np.ndarray | None:
        """Return the twin's OOD score at each step of plan ref (N,), None when the twin has no OOD statistics."""
        dyn, sqp = self.dynamics, self.sqp
        assert dyn is not None and sqp is not None
        if dyn.ood is None or not isinstance(sqp.twin, NumpyTwin):
            return None
        z_plan = sqp.twin.latents(inputs.z_now, ref.u, inputs.d_plan)  # (M, nz, N)
        z_now = inputs.z_now.reshape(dyn.members, dyn.nz)
        norm = (dyn.mv_mean, dyn.mv_std, dyn.dv_mean, dyn.dv_std)
        return plan_ood(dyn.ood, norm, z_now, z_plan, ref.u, inputs.d_plan)[0]

    def _failure(self, inputs: SolveInputs, status: MpcStatus, raw: str, elapsed: float, iterations: int) -> MpcResult:
        """Return a result without proposal that says why; the next solve still starts from the last good plan."""
        dyn, sqp, settings = self.dynamics, self.sqp, self.settings
        assert dyn is not None and sqp is not None
        self._keep_warm_start()
        y_now = sqp.current(inputs.z_now)
        return no_proposal(
            dyn,
            inputs.spec,
            settings,
            status=status,
            raw=raw,
            solver=f"the QP solver ({settings.qp_solver})",
            budget=f"{settings.max_solver_time_s} s, {settings.sqp_iterations} linearisations",
            y_now=y_now if inputs.bias is None else y_now + inputs.bias,
            elapsed=elapsed,
            iterations=iterations,
        )
