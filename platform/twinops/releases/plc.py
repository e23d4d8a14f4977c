"""A line's PLC beyond its tags, from the spec's `plc` block: its mode, heartbeat and fallback nodes, and its endpoint."""

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


@dataclass(frozen=True)
class PlcEndpoint:
    """Where a line's PLC serves OPC UA and how to log in: the spec's word, passwords never (see plc_link)."""

    url: str  # opc.tcp://host:port/path
    write_account: str  # the release agent's account, allowed to write setpoints
    fingerprint: str | None = None  # SHA-256 of the PLC's certificate; or
    certificate: str | None = None  # the PLC's certificate file (DER or PEM), relative paths from TWINOPS_HOME
    read_account: str | None = None  # the collector's read-only account; None: anonymous
    security_mode: str = "SignAndEncrypt"


NO_PLC = (
    "no PLC configured, so nothing is released to this line — the data team can add one in the spec (its plc block)"
)
NO_ENDPOINT = (
    "its spec's plc block names no endpoint, so `twinops up` starts no collector or release agent for it — the data "
    "team can add plc.endpoint to the spec (or run `twinops release-agent` for it by hand)"
)


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


def plc_endpoint(document: dict[str, Any]) -> PlcEndpoint | None:
    """Return the PLC endpoint of a spec document, or None when its `plc` block names none (or there is no block)."""
    block = document.get("plc") or {}
    if "endpoint" not in block:
        return None
    return PlcEndpoint(
        url=block["endpoint"],
        write_account=block["write_account"],
        fingerprint=block.get("server_fingerprint"),
        certificate=block.get("server_certificate"),
        read_account=block.get("read_account"),
        security_mode=block.get("security_mode", "SignAndEncrypt"),
    )
