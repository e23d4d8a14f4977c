"""report.html: the export for people, readable offline (no scripts, no links out; plots are inline SVG)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from html import escape
from typing import Any

from twinops.auditing.selectors import Decision

PLOTTED = 200  # proposals whose MV plans are drawn; decisions.csv holds every one
LISTED = 2000  # proposals listed in the table
_COLOURS = {"approved": "#2e7d32", "rejected": "#c62828", "pending": "#f9a825", "shadow": "#6a1b9a"}


@dataclass(frozen=True)
class ReportHeader:
    """What the report says about the export itself."""

    range_text: str
    line: str | None
    first_id: int | None
    last_id: int | None
    events: int
    anchored_through: int | None
    anchored_at: str
    public_key: str
    exported_by: str
    exported_at: str


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _sparkline(values: list[float], *, width: int = 160, height: int = 32) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / max(1, len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values))
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="plan from {values[0]:g} to {values[-1]:g}">'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{points}"/></svg>'
    )


def _bars(counts: Counter[str]) -> str:
    """A horizontal bar per status: how many proposals ended in it."""
    if not counts:
        return "<p>No proposals in this range.</p>"
    top, rows = max(counts.values()), []
    for i, (status, n) in enumerate(sorted(counts.items())):
        w = 300 * n / top
        colour = _COLOURS.get(status, "#607d8b")
        rows.append(
            f'<text x="0" y="{i * 22 + 15}">{_e(status)}</text>'
            f'<rect x="90" y="{i * 22 + 3}" width="{w:.1f}" height="16" fill="{colour}"/>'
            f'<text x="{96 + w:.1f}" y="{i * 22 + 15}">{n}</text>'
        )
    return f'<svg width="460" height="{len(counts) * 22 + 4}" role="img" aria-label="proposals by status">{"".join(rows)}</svg>'


def report_html(*, header: ReportHeader, decisions: list[Decision]) -> bytes:
    """Return the report: the chain's verification, proposals by status, each proposal's chain and plotted plan."""
    h = header
    counts = Counter(str(d.cells["status"]) for d in decisions)
    rows: list[str] = []
    for d in decisions[:LISTED]:
        c = d.cells
        plots = (
            "".join(f"<div>{_e(mv)} {_sparkline(vals)}</div>" for mv, vals in d.mv_plan.items())
            if len(rows) < PLOTTED
            else ""
        )
        rows.append(
            "<tr>"
            f"<td>{_e(c['proposal_id'])}</td><td>{_e(c['line'])}</td><td>{_e(c['created_at'])}</td>"
            f"<td>{_e(c['status'])}<br><small>{_e(c['status_reason'])}</small></td>"
            f"<td>{_e(c['window_start'])} → {_e(c['window_end'])}<br><code>{_e(c['inputs_sha256'])}</code></td>"
            f"<td>v{_e(c['twin_version'])}<br><code>{_e(c['twin_checkpoint_sha256'])}</code></td>"
            f"<td>{_e(c['solver_status'])} {_e(c['plan'])}{plots}</td>"
            f"<td>{_e(c['signatures'])}</td>"
            f"<td>{_e(c['release_status'])} {_e(c['release_steps_done'])}</td>"
            f"<td>{_e(c['outcome_compared_with'])} {_e(c['outcome_realized_gain_per_h'])}</td>"
            "</tr>"
        )
    more = (
        f"<p>The table lists the first {LISTED} of {len(decisions)} proposals; decisions.csv holds them all.</p>"
        if len(decisions) > LISTED
        else ""
    )
    anchored = (
        f"anchored through event {_e(h.anchored_through)} (signed at {_e(h.anchored_at)})"
        if h.anchored_through is not None
        else "not covered by a signed anchor"
    )
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TwinOps audit export {_e(h.range_text)}</title>
<style>
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}} code{{font-size:10px;word-break:break-all}}
svg text{{font-size:12px}}
</style></head><body>
<h1>TwinOps audit export</h1>
<p>Range: {_e(h.range_text)}{f" · line {_e(h.line)}" if h.line else ""} · exported by {_e(h.exported_by)} at
{_e(h.exported_at)}</p>
<p>Events {_e(h.first_id)} to {_e(h.last_id)} ({h.events} events in the bundle, including the anchored events after
the range and the export's own event), {anchored}.</p>
<p>Public key of the anchors (Ed25519): <code>{_e(h.public_key)}</code>. Compare it with one obtained independently
(<code>twinops audit key</code>), then run <code>python verify.py THIS_BUNDLE.zip</code>; this page itself proves
nothing, the verifier does.</p>
<h2>Proposals by status</h2>
{_bars(counts)}
<h2>Decision chains</h2>
{more}
<table><thead><tr><th>proposal</th><th>line</th><th>made</th><th>status</th><th>data window and inputs SHA-256</th>
<th>twin and checkpoint SHA-256</th><th>solver and plan</th><th>signatures</th><th>release</th><th>outcome</th></tr>
</thead><tbody>
{"".join(rows)}
</tbody></table>
</body></html>
"""
    return body.encode("utf-8")
