"""`twinops recommend LINE [--json]`: make (or show) the line's recommendation for the current slot."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from twinops.lines.models import Line
from twinops.lines.selectors import line_get
from twinops.recommendations.models import Recommendation
from twinops.recommendations.services import recommendation_create


def summary(rec: Recommendation) -> dict[str, Any]:
    """Return what a reader needs from a recommendation: status, reason, first moves, gain, predicted CVs."""
    plan = rec.plan
    current = rec.inputs.get("current_mv", {})
    return {
        "id": rec.pk,
        "line": rec.line.key,
        "status": rec.status,
        "reason": rec.reason,
        "created_at": rec.created_at.isoformat(),
        "expires_at": rec.expires_at.isoformat(),
        "twin_version": rec.twin_version.version if rec.twin_version_id else None,
        "solver_status": rec.solver_status or None,
        "expected_gain_per_h": rec.expected_gain if rec.has_proposal else None,
        "first_moves": {
            name: {
                "current": current.get(name),
                "proposed": plan["first_setpoint"][name],
                "move": plan["first_move"][name],
            }
            for name in plan.get("first_move") or {}
        },
        "predicted_cv": {
            name: {"mean": plan["cv_mean"][name], "low": plan["cv_lo"][name], "high": plan["cv_hi"][name]}
            for name in plan.get("cv_mean") or {}
        },
        "ood_score": rec.inputs.get("ood_score"),
        "inputs_sha256": rec.inputs_sha256 or None,
    }


class Command(BaseCommand):
    help = "Make the line's setpoint recommendation now (or show the one already made in this slot)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("line", help="line key")
        parser.add_argument("--json", action="store_true", help="print the recommendation as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            line = line_get(key=opts["line"])
        except Line.DoesNotExist:
            raise CommandError(f"no line {opts['line']!r}") from None
        data = summary(recommendation_create(line=line, actor="system:cli"))
        if opts["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(
            f"{line.key}: recommendation {data['id']} {data['status']}"
            + (f" — {data['reason']}" if data["reason"] else "")
        )
        for name, move in data["first_moves"].items():
            self.stdout.write(f"  {name}: {move['current']:.6g} -> {move['proposed']:.6g} ({move['move']:+.6g})")
        if data["expected_gain_per_h"] is not None:
            self.stdout.write(f"  expected gain {data['expected_gain_per_h']:+.6g} per hour")
