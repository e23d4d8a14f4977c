"""The demo plant: onboard the simulated lines through the data team's path, and ask for their first twins."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from plantsim import available_lines
from plantsim.history import export_line
from twinops.lines.models import Line
from twinops.modeling.selectors import training_jobs_active, twin_latest
from twinops.modeling.services import training_job_create
from twinops.onboarding.services import line_onboard

ACTOR = "system:demo"
Progress = Callable[[str], Callable[[int, int], None]]  # label -> progress callback


@dataclass(frozen=True)
class DemoLine:
    """A simulated line and what the demo did for it this run."""

    key: str
    onboarded_now: bool
    samples_imported: int


def demo_lines() -> list[str]:
    """Return the keys of the simulated lines."""
    return list(available_lines())


def demo_operator_password(demo_dir: Path) -> str:
    """Return the PLC operator password for the demo, generated once and kept (mode 0600) beside the demo data."""
    path = demo_dir / "plc-operator-password"
    if not path.exists():
        demo_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def demo_lines_onboard(*, demo_dir: Path, days: float, end: datetime, seed: int, progress: Progress) -> list[DemoLine]:
    """Onboard every simulated line that is absent: generate its spec and history, then onboard both as a data team would."""
    done = []
    for key in demo_lines():
        if Line.objects.filter(key=key).exists():
            done.append(DemoLine(key, onboarded_now=False, samples_imported=0))
            continue
        spec_path, csv_path = export_line(key, demo_dir / "onboarding", days=days, end=end, seed=seed,
                                          on_progress=progress(f"simulate {key} ({days:g} days)"))
        result = line_onboard(text=spec_path.read_text(), filename=spec_path.name, actor=ACTOR,
                              history_path=csv_path, history_filename=csv_path.name,
                              reason="demo plant: simulated history with step tests",
                              on_progress=progress(f"import   {key}"))
        imported = result.history.samples_inserted if result.history else 0
        done.append(DemoLine(key, onboarded_now=True, samples_imported=imported))
    return done


def demo_training_request() -> list[str]:
    """Ask for a first twin of each demo line that has none and none in training; return the line keys asked for."""
    asked = []
    for line in Line.objects.filter(key__in=demo_lines()):
        if twin_latest(line=line) is None and not training_jobs_active(line=line):
            training_job_create(line=line, actor=ACTOR)
            asked.append(line.key)
    return asked
