"""An approved proposal reaches the simulated PLC step by step, each write read back and audited; faults hold."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua

from plantsim.plc import PlcServer
from twinops.releases.agent import AgentConfig, ReleaseAgent

from .conftest import OPERATOR, PASSWORD, SPEED, approve, fresh_data, ramp_plan, until

pytestmark = pytest.mark.django_db(transaction=True)  # the agent works on its own connection


def _agent(line: Any, plc: PlcServer, tmp_path: Path, **overrides: Any) -> ReleaseAgent:
    config = AgentConfig(
        url=plc.endpoint_url,
        fingerprint=plc.certificate_fingerprint,
        cert_dir=tmp_path / "client",
        username=OPERATOR,
        password=PASSWORD,
        speed=SPEED,
        poll_s=0.05,
        reconnect_max_s=1.0,
        **overrides,
    )
    return ReleaseAgent(line=line, config=config)


def _scenario(
    line: Any,
    plc_config: Callable[..., Any],
    tmp_path: Path,
    body: Callable[[PlcServer, ReleaseAgent], Awaitable[None]],
    **plc_overrides: Any,
) -> None:
    async def run() -> None:
        async with PlcServer(plc_config(**plc_overrides)) as plc:
            agent = await asyncio.to_thread(_agent, line, plc, tmp_path)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:
                await body(plc, agent)
            finally:
                stop.set()
                await task

    asyncio.run(asyncio.wait_for(run(), timeout=90))


def _release(line: Any) -> Any:
    from twinops.releases.selectors import release_latest

    return release_latest(line=line)


def _actions(prefix: str = "release.") -> list[str]:
    from twinops.audit.models import AuditEvent

    return list(AuditEvent.objects.filter(action__startswith=prefix).order_by("id").values_list("action", flat=True))


async def _in_thread(fn: Callable[[], Any]) -> Any:
    def call() -> Any:
        from django.db import connection

        try:
            return fn()
        finally:
            connection.close()

    return await asyncio.to_thread(call)


def _approve_when_fresh(line: Any, plc: PlcServer, engineer: Any, **kw: Any) -> Callable[[], Any]:
    def make() -> Any:
        fresh_data(line, plc)
        start = dict(plc.simulator.setpoints)
        return approve(line, start, kw.pop("plan", None) or ramp_plan(start), engineer=engineer, **kw)

    return make


def test_an_approved_proposal_is_written_step_by_step_read_back_and_audited(
    release_line, plc_config, tmp_path, make_user
) -> None:
    engineer = make_user("engineer")
    seen: dict[str, Any] = {}

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        rec = await _in_thread(_approve_when_fresh(release_line, plc, engineer))
        seen["plan"] = rec.approved_plan["mv_plan"]
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")
        seen["setpoint"] = plc.simulator.setpoints["F_feed"]
        seen["heartbeat"] = plc._heartbeat_value

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "finished", release.reason
    assert release.steps_done == release.steps == 3
    writes = list(release.writes.order_by("step", "tag"))
    assert len(writes) == 3 * 4 and all(w.status == "verified" and w.read_back == w.value for w in writes)
    assert [w.value for w in writes if w.tag == "F_feed"] == seen["plan"]["F_feed"]
    assert seen["setpoint"] == pytest.approx(seen["plan"]["F_feed"][-1])  # the PLC holds the last step
    assert isinstance(seen["heartbeat"], int)  # the agent feeds the heartbeat
    assert _actions() == ["release.started", "release.write", "release.write", "release.write", "release.finished"]
    assert release_line.releases.get().alarm == ""


def test_a_plc_in_local_mode_gets_nothing_written_and_the_reason_is_shown(
    release_line, plc_config, tmp_path, make_user
) -> None:
    engineer = make_user("engineer")
    before: dict[str, Any] = {}

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        await plc.set_mode("LOCAL")
        before.update(plc.simulator.setpoints)
        await _in_thread(_approve_when_fresh(release_line, plc, engineer))
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")
        before["after"] = dict(plc.simulator.setpoints)

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "stopped" and "LOCAL mode" in release.reason and "nothing written" in release.reason
    assert release.writes.count() == 0
    assert before.pop("after") == before
    assert _actions() == ["release.started", "release.stopped"]


def test_a_plc_that_clamps_a_write_stops_the_release_with_an_alarm(
    release_line, plc_config, tmp_path, make_user
) -> None:
    engineer = make_user("engineer")

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        guard = plc._guard_write

        async def clamping(user: Any, item: ua.WriteValue) -> Any:
            refused = await guard(user, item)
            if refused is None and item.NodeId == ua.NodeId.from_string(plc.node_id("F_feed")):
                item.Value.Value = ua.Variant(min(item.Value.Value.Value, 20.4), ua.VariantType.Double)  # PLC clamps
            return refused

        plc._server.iserver.attribute_service._guard = clamping  # type: ignore[union-attr]
        await _in_thread(_approve_when_fresh(release_line, plc, engineer))
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "failed"
    bad = release.writes.get(tag="F_feed", status="mismatch")
    assert (bad.step, bad.value, bad.read_back) == (1, pytest.approx(20.6), pytest.approx(20.4))
    assert "F_feed written 20.6, read 20.4" in release.alarm
    assert release.writes.filter(step=2).count() == 0  # held: nothing written after the mismatch
    assert _actions()[-2:] == ["release.write", "release.failed"]
    from twinops.releases.selectors import release_alarm

    assert release_alarm(line=release_line).message == release.alarm


def test_a_plc_that_refuses_a_write_out_of_its_range_stops_the_release(
    release_line, plc_config, tmp_path, make_user
) -> None:
    engineer = make_user("engineer")

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        plc.line = plc.simulator.line = _narrowed(
            plc.line, "F_feed", 20.5
        )  # the PLC's own limit, tighter than the spec
        await _in_thread(_approve_when_fresh(release_line, plc, engineer))
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "failed" and "out of range" in release.alarm
    assert release.writes.get(step=1, tag="F_feed").status == "refused"
    assert release.writes.filter(step=2).count() == 0


def _narrowed(line: Any, mv: str, high: float) -> Any:
    import dataclasses

    tags = tuple(dataclasses.replace(t, limits=(t.limits[0], high)) if t.name == mv else t for t in line.tags)
    return dataclasses.replace(line, tags=tags)


def test_a_release_to_an_unreachable_plc_writes_nothing_and_raises_an_alarm(
    release_line, plc_config, tmp_path, make_user, caplog
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncua")
    engineer = make_user("engineer")

    async def run() -> None:
        async with PlcServer(plc_config()) as plc:
            agent = await asyncio.to_thread(_agent, release_line, plc, tmp_path)
            await _in_thread(_approve_when_fresh(release_line, plc, engineer))
        stop = asyncio.Event()  # the PLC is gone before the agent starts
        task = asyncio.create_task(agent.run(stop))
        try:
            await until(lambda: _release(release_line) is not None)
        finally:
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(run(), timeout=60))
    release = _release(release_line)
    assert release.status == "failed" and release.writes.count() == 0
    assert "connection to the PLC lost or refused" in release.alarm
    assert _actions() == ["release.failed"]
