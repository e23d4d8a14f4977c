"""The PLC nodes of a line beyond its tags: operating mode, heartbeat and fallback flag, from the spec's `plc` block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PlcNodes:
    """Where a line's PLC reports its mode and fallback state and reads the platform's heartbeat."""

    mode: str  # node id of the LOCAL/REMOTE mode (text)
    heartbeat: str  # node id of the counter the platform changes periodically (integer)
    fallback_active: str  # node id of the flag the PLC raises when it applied its safe setpoints (boolean)
    remote_value: str = "REMOTE"  # the mode's value when the PLC accepts remote setpoints


def plc_nodes(document: dict[str, Any]) -> PlcNodes | None:
    """Return the PLC nodes of a spec document, or None when the spec has no `plc` block."""
    block = document.get("plc")
    if not block:
        return None
    return PlcNodes(
        mode=block["mode_node"],
        heartbeat=block["heartbeat_node"],
        fallback_active=block["fallback_active_node"],
        remote_value=block.get("remote_value", "REMOTE"),
    )
