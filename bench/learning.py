"""A closed loop that learns: retrained on the loop's own data, does the twin's trusted range, and its gain, grow?

Run: `twinops bench learning --json` (`--quick`: one seed, a tiny twin, short loops; `--seeds 31` and `--lines
heat-train` split a run of many hours). Issue 12 item 8: trained on the demo's generic step tests, the twin is
trusted only inside the MV range they covered, and on the reactor the optimum lies far beyond it (F about 45 1/h
against a tested 10-25): bench closedloop's twin earns about 0.23 of the true model's gain, the tested range's cap
about 0.26; on the heat train the optimum sits on the MV upper limits, beyond the tested range too. No twin should be
trusted that far outside its data. This bench measures the honest route on both of bench closedloop's simulated lines
(LINES), data there, gathered a margin at a time:

- round 0 trains the twin exactly as bench closedloop does (its `train`: same history, config and seed);
- each round runs the twin MPC for `hours` with MVs allowed TRUST_MARGIN of the trained range's width beyond it
  (MpcSettings.trust_region_margin; the plan OOD limit and every CV limit hold as in bench closedloop), recording
  what the plant's historian would hold;
- the next round's twin is trained again on the step-test history plus every round's record so far. The records join
  the training block (bench closedloop's `train`, `loop_records`); validation and test stay the history's last 30 %,
  so every round's twin is judged on the same rows. (The platform's retrain splits by time: it would hold the newest
  rows, the loop's, out for validation and test; see the issue's note.)

The plant of seed s (DV drift, noise) is the same in every round, so rounds differ only in the twin; references as
bench closedloop's (`references`): holding the nominal setpoints, and MPC on the plant's own equations.

Figures, one object per line: `baseline` (round 0's twin with no margin: bench closedloop's twin case for that line)
and `rounds` (one per round), each with gain_ratio_median, gain_ratio_worst, hard_violations (total),
soft_violation_minutes (total), no_proposal_share, coverage (pooled over seeds, as bench closedloop's) and, per seed,
the trained MV range, the MV setpoints' range over the loop (`mv_used`) and where they ended. Honest by construction:
TRUST_MARGIN was chosen on tuning seeds only (bench closedloop's TUNING_SEEDS, never reported) and then fixed before
any reported run: on reactor seed 5, a margin of 0.25 reached gain ratios 0.34, 0.49, 0.68 in three rounds, 0.5
reached 0.46, 0.82, 0.97 with no hard limit crossed (0.25 was the first, a priori choice; the issue's note has both
studies). A retrain sees only what the plant measured under the twin's own proposals; seeds are bench closedloop's
reported ones.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from bench import closedloop
from optimizer import MpcController, MpcSpec
from plantsim import heat_train, vdv_reactor
from plantsim.simulator import make_line
from plantsim.spec import line_spec
from twins import Twin, TwinConfig, export_arrays

LINES = (vdv_reactor.LINE_ID, heat_train.LINE_ID)  # bench closedloop's two simulated lines
ROUNDS = 3  # loops run; the twin is retrained between them (ROUNDS - 1 retrains)
TRUST_MARGIN = 0.5  # half the trained range's width per round, beyond which nothing is planned (tuning seeds only)


def seed_run(line: str, seed: int, quick: bool = False, rounds: int = ROUNDS) -> dict[str, Any]:
    """Train, loop and retrain one line for one seed; return the baseline's and each round's figures."""
    scenario = closedloop.QUICK if quick else closedloop.Scenario()
    config = dataclasses.replace(TwinConfig(), **(closedloop.QUICK_TWIN if quick else {}))
    spec = MpcSpec.from_line_spec(line_spec(make_line(line)))
    twin, trained = closedloop.train(line, seed, scenario, config)
    meta, arrays = export_arrays(twin)
    horizon = min(30, twin.config.horizon)
    hold, refs = closedloop.references(line, seed, scenario, spec, horizon, arrays, within_training_range=False)
    gain_model = refs["model"]["economic_eur"] - hold["economic_eur"]

    n_cv, mvs = len(spec.cvs), [m.name for m in spec.mvs]

    def loop(twin: Twin, margin: float, record: list[list[float]]) -> dict[str, Any]:
        meta, arrays = export_arrays(twin)
        controller = MpcController.from_export(
            meta, arrays, spec, closedloop.twin_settings(horizon, trust_margin=margin)
        )
        run = closedloop.closed_loop(closedloop.plant(line, seed), scenario, controller, twin=twin, record=record)
        gain = run["economic_eur"] - hold["economic_eur"]
        setpoints = np.asarray(record)[:, n_cv : n_cv + len(mvs)]
        return run | {
            "gain_ratio": gain / gain_model if gain_model > 0 else None,
            "mv_used": {n: [float(setpoints[:, i].min()), float(setpoints[:, i].max())] for i, n in enumerate(mvs)},
            "trained_mv_range": closedloop.mv_range(meta, arrays),
        }

    out: dict[str, Any] = {"baseline": loop(twin, 0.0, []), "rounds": [], "train_s": [trained["train_s"]]}
    records: list[np.ndarray] = []
    for r in range(rounds):
        if r:
            twin, trained = closedloop.train(line, seed, scenario, config, loop_records=records)
            out["train_s"].append(trained["train_s"])
        record: list[list[float]] = []
        out["rounds"].append(loop(twin, TRUST_MARGIN, record))
        records.append(np.asarray(record))
        print(f"learning {line} seed {seed} round {r}: gain ratio {out['rounds'][-1]['gain_ratio']}", file=sys.stderr)
    for run in (out["baseline"], *out["rounds"]):
        run.pop("solve_ms")
    return out | {
        "model": {"economic_eur": refs["model"]["economic_eur"]},
        "hold": {"economic_eur": hold["economic_eur"]},
    }


def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one round's figures over seeds (runs: that round's run per seed)."""
    return {
        **closedloop.pooled([r["gain_ratio"] for r in runs], runs),
        "per_seed": [
            {k: r[k] for k in ("gain_ratio", "trained_mv_range", "mv_used", "final_setpoints", "hard_violations")}
            for r in runs
        ],
    }


def run(
    *,
    quick: bool = False,
    seeds: Sequence[int] = closedloop.SEEDS,
    lines: Sequence[str] = LINES,
    rounds: int = ROUNDS,
    jobs: int | None = None,
) -> dict[str, Any]:
    """Run every line and seed (quick: the first seed, short loops, a tiny twin); one object per line.

    Each (line, seed) runs in a process of its own, `jobs` at once (default env TWINOPS_BENCH_CLOSEDLOOP_JOBS, else
    one per core); `lines` picks some of LINES, to split a run of many hours across machines or days.
    """
    clock = time.perf_counter()
    seeds = list(seeds)[:1] if quick else list(seeds)
    if set(seeds) & set(closedloop.TUNING_SEEDS):
        raise ValueError(f"tuning seeds {sorted(set(seeds) & set(closedloop.TUNING_SEEDS))} are never reported")
    if unknown := sorted(set(lines) - set(LINES)):
        raise ValueError(f"no line {', '.join(unknown)} in this bench; lines: {', '.join(LINES)}")
    jobs = jobs or int(os.environ.get("TWINOPS_BENCH_CLOSEDLOOP_JOBS", "0")) or os.cpu_count() or 1
    units = [(line, s) for line in lines for s in seeds]
    if jobs == 1:
        results = [seed_run(line, s, quick, rounds) for line, s in units]
    else:
        context = multiprocessing.get_context("spawn")  # as bench closedloop: no fork after OpenMP
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init) as pool:
            futures = [pool.submit(seed_run, line, s, quick, rounds) for line, s in units]
            results = [f.result() for f in futures]
    out: dict[str, Any] = {}
    for line in lines:
        per_seed = [d for (unit_line, _), d in zip(units, results, strict=True) if unit_line == line]
        out[line] = {
            "baseline": figures([d["baseline"] for d in per_seed]),
            "rounds": [figures([d["rounds"][r] for d in per_seed]) for r in range(rounds)],
            "train_s": {str(s): d["train_s"] for s, d in zip(seeds, per_seed, strict=True)},
        }
    return out | {"trust_margin": TRUST_MARGIN, "seeds": seeds, "quick": quick, "run_s": time.perf_counter() - clock}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already (bench closedloop's reason)


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
