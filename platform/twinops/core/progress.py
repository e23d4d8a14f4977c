"""A text progress bar for commands (library code reports progress through `on_progress(done, total)` callbacks)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import OutputWrapper


class ProgressBar:
    """A text progress bar on stderr, redrawn at most 10 times a second; called as on_progress(done, total)."""

    def __init__(self, out: OutputWrapper, *, label: str, width: int = 30) -> None:
        self.out, self.label, self.width = out, label, width
        self._last, self._drawn = 0.0, False

    def __call__(self, done: float | None = None, total: float | None = None, *_: Any, **kw: Any) -> None:
        done = kw.get("done", done)
        total = kw.get("total", total)
        if done is None:
            return
        now = time.monotonic()
        finished = bool(total) and done >= total
        if now - self._last < 0.1 and not finished:
            return
        self._last, self._drawn = now, True
        frac = (done / total if total else done if done <= 1 else 0.0) if done is not None else 0.0
        frac = min(max(frac, 0.0), 1.0)
        fill = int(round(frac * self.width))
        count = f"  {int(done):,}/{int(total):,}" if total and total > 1 else ""
        bar = f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {frac:6.1%}{count}"
        self.out.write(bar, style_func=_plain, ending="")  # progress, not an error: never in stderr's bold red
        self.out.flush()

    def close(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self._drawn:
            self.out.write("", style_func=_plain)
            self._drawn = False


def _plain(text: str) -> str:
    return text
