"""Giving up on work whose worker keeps dying: the one message every job and recommendation page shows for it."""

from __future__ import annotations


def worker_died_message(attempts: int) -> str:
    """Return why work was given up after its worker died `attempts` times while running it."""
    times = "once" if attempts == 1 else f"{attempts} times"
    return f"the worker died {times} while running it (out of memory or a crash in a native solver?)"
