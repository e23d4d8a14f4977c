"""The demo: its accounts, and its plant, onboarded through the data team's path and asked for first twins."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction

from plantsim import available_lines
from plantsim.history import export_line
from twinops.accounts.selectors import user_exists
from twinops.accounts.services import user_create
from twinops.config.secret_files import secret_file_text
from twinops.lines.selectors import line_list
from twinops.lines.services import line_mode_set
from twinops.modeling.selectors import training_jobs_active, twin_first_promotable, twin_latest
from twinops.modeling.services import PromotionError, training_job_create, twin_promote
from twinops.onboarding.services import line_onboard
from twinops.recommendations import tasks as recommendation_tasks

ACTOR = "system:demo"

# Demo accounts for `twinops up` / `twinops demo` in development only; `twinops up` prints them.
DEMO_USERS: dict[str, tuple[str, str]] = {
    "engineer": ("engineer", "twinops-engineer"),
    "data": ("data", "twinops-data-team"),
    "auditor": ("auditor", "twinops-auditor"),
    "admin": ("admin", "twinops-admin"),
}

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
    return secret_file_text(demo_dir / "plc-operator-password", lambda: secrets.token_urlsafe(18))


def demo_reader_password(demo_dir: Path) -> str:
    """Return the password of the PLCs' read-only account (the collectors'), generated once and kept (mode 0600)."""
    return secret_file_text(demo_dir / "plc-reader-password", lambda: secrets.token_urlsafe(18))


ADVISORY_REASON = "demo plant: proposals are reviewed by engineers and released to the simulated PLCs"


def demo_lines_onboard(*, demo_dir: Path, days: float, end: datetime, seed: int, progress: Progress) -> list[DemoLine]:
    """Onboard every simulated line that is absent: generate its spec and history, then onboard both as a data team would."""
    done, onboarded = [], {line.key for line in line_list()}
    for key in demo_lines():
        if key in onboarded:
            done.append(DemoLine(key, onboarded_now=False, samples_imported=0))
            continue
        spec_path, csv_path = export_line(
            key,
            demo_dir / "onboarding",
            days=days,
            end=end,
            seed=seed,
            on_progress=progress(f"simulate {key} ({days:g} days)"),
        )
        result = line_onboard(
            text=spec_path.read_text(),
            filename=spec_path.name,
            actor=ACTOR,
            history_path=csv_path,
            history_filename=csv_path.name,
            reason="demo plant: simulated history with step tests",
            on_progress=progress(f"import   {key}"),
        )
        imported = result.history.samples_inserted if result.history else 0
        # A real line starts in shadow (commissioning); the demo shows the whole loop, so its lines start advisory.
        line_mode_set(line=result.line, mode="advisory", actor=ACTOR, reason=ADVISORY_REASON)
        done.append(DemoLine(key, onboarded_now=True, samples_imported=imported))
    return done


def demo_training_request() -> list[str]:
    """Ask for a first twin of each demo line that has none and none in training; return the line keys asked for."""
    asked = []
    keys = set(demo_lines())
    for line in line_list():
        if line.key in keys and twin_latest(line=line) is None and not training_jobs_active(line=line):
            training_job_create(line=line, actor=ACTOR)
            asked.append(line.key)
    return asked


def demo_twins_promote() -> list[tuple[str, int]]:
    """Promote each demo line's first promotable twin, as the demo's own audited action; return (line, version) done.

    Only lines that never had a promoted twin: once someone has chosen (or rolled back), the demo leaves it to them.
    """
    done = []
    keys = set(demo_lines())
    for line in line_list():
        version = twin_first_promotable(line=line) if line.key in keys else None
        if version is None:
            continue
        try:
            twin_promote(
                version=version,
                actor=ACTOR,
                reason="demo: the line's first promotable twin, promoted so that the optimizer can make proposals",
            )
        except PromotionError:
            continue  # promoted meanwhile (by a person or another demo), or its checkpoint is refused: the page says
        # the first proposal now, not at beat's next period (up to 5 min): a new user came to see one (same slot
        # rules: beat's run in this slot finds it made); sent once the promotion is committed, also when a caller
        # runs this inside a transaction of its own
        transaction.on_commit(lambda pk=line.pk: recommendation_tasks.recommend_line.delay(pk, actor=ACTOR))
        done.append((line.key, version.version))
    return done


def demo_users_seed() -> list[tuple[str, str, str]]:
    """Create the demo accounts if absent (development only); return (role, username, password) rows."""
    if getattr(settings, "PRODUCTION", False):
        raise RuntimeError("demo accounts are never created in production (TWINOPS_ENV=production)")
    rows = []
    for role, (username, password) in DEMO_USERS.items():
        if not user_exists(username=username):  # published passwords: the validators would refuse them
            user_create(
                username=username, role=role, password=password, actor=ACTOR, reason="demo account", validate=False
            )
        rows.append((role, username, password))
    return rows
