"""An approved proposal reaches the simulated PLC step by step, each write read back and audited; faults hold."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from asyncua import ua
from django.db import transaction

from plantsim.plc import PlcServer
from twinops.releases.agent import AgentConfig, ReleaseAgent

from .conftest import OPERATOR, PASSWORD, SPEED, approve, fresh_data, ramp_plan, until

pytestmark = [pytest.mark.django_db(transaction=True)]  # the agent: its own connection


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
        last = seen["plan"]["F_feed"][-1]
        # the PLC applies what was written to its node at its next scan (tick_s), so give it a few scans
        await until(lambda: plc.simulator.setpoints["F_feed"] == pytest.approx(last), timeout_s=5.0)
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
    from django.test import Client
    from django.urls import reverse

    browser = Client()
    browser.force_login(engineer)
    page = browser.get(reverse("line-detail", args=[release_line.key])).content.decode()
    assert 'id="release-alarm"' in page and "F_feed written 20.6, read 20.4" in page


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


def test_when_the_platform_stops_the_plc_falls_back_to_its_safe_setpoints(release_line, plc_config, tmp_path) -> None:
    seen: dict[str, Any] = {}

    async def run() -> None:
        async with PlcServer(plc_config(heartbeat_timeout_s=2.0)) as plc:
            agent = await asyncio.to_thread(_agent, release_line, plc, tmp_path, heartbeat_s=0.5)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            await asyncio.sleep(4.0)  # twice the PLC's timeout: the agent's heartbeat keeps it in remote operation
            seen["while_running"] = plc.fallback_active
            stop.set()
            await task  # the platform stops: no more heartbeat
            stopped = asyncio.get_running_loop().time()
            while not plc.fallback_active and asyncio.get_running_loop().time() - stopped < 10:
                await asyncio.sleep(0.1)
            seen["after_s"] = asyncio.get_running_loop().time() - stopped
            seen["fallback"], seen["message"] = plc.fallback_active, plc.message

    asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert seen["while_running"] is False
    assert seen["fallback"] is True and "safe setpoints applied" in seen["message"]
    assert seen["after_s"] < 2.0 + 1.0  # within the PLC's timeout (plus a tick)


def test_an_expired_proposal_is_not_released(release_line, plc_config, tmp_path, make_user) -> None:
    engineer = make_user("engineer")

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        await _in_thread(_approve_when_fresh(release_line, plc, engineer, ttl_s=-1.0))
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "stopped" and "expired" in release.reason and release.writes.count() == 0


def test_an_older_approved_proposal_is_superseded_and_never_written(
    release_line, plc_config, tmp_path, make_user
) -> None:
    from datetime import UTC, datetime, timedelta

    engineer = make_user("engineer")

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        def two() -> tuple[Any, Any]:
            fresh_data(release_line, plc)
            start = dict(plc.simulator.setpoints)
            with transaction.atomic():  # the agent sees both at once, as when the newer one lands before it looks
                old = approve(
                    release_line,
                    start,
                    ramp_plan(start, move=0.1),
                    engineer=engineer,
                    decided_at=datetime.now(UTC) - timedelta(seconds=30),
                )
                new = approve(release_line, start, ramp_plan(start, steps=2), engineer=engineer)
            return old, new

        seen["old"], seen["new"] = await _in_thread(two)
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")

    seen: dict[str, Any] = {}
    _scenario(release_line, plc_config, tmp_path, body)
    from twinops.releases.models import Release

    old = Release.objects.get(recommendation=seen["old"])
    assert old.status == "stopped" and f"superseded by proposal {seen['new'].pk}" in old.reason
    assert old.writes.count() == 0
    assert Release.objects.get(recommendation=seen["new"]).status == "finished"


def test_a_limit_tightened_after_approval_gets_nothing_written(release_line, plc_config, tmp_path, make_user) -> None:
    engineer = make_user("engineer")

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        def approve_then_tighten() -> None:
            from twinops.lines.services import spec_version_create

            _approve_when_fresh(release_line, plc, engineer)()
            doc = dict(release_line.current_spec.document)
            doc["tags"] = [
                {**t, "limits": {"low": 12.0, "high": 20.1}} if t["name"] == "F_feed" else t for t in doc["tags"]
            ]
            import yaml

            spec_version_create(
                line=release_line,
                text=yaml.safe_dump(doc),
                filename="tight.yaml",
                actor="system:test",
                reason="F_feed limited by a fouled exchanger",
            )

        def atomically() -> None:  # the agent must not see the approval before the new spec
            from django.db import transaction

            with transaction.atomic():
                approve_then_tighten()

        await _in_thread(atomically)
        await until(lambda: (r := _release(release_line)) is not None and r.status != "running")

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "stopped" and release.writes.count() == 0
    assert "F_feed = 20.3 lies outside its limits [12.0, 20.1] in spec v2" in release.reason


def test_an_engineer_stops_a_running_release_and_the_setpoints_hold(
    release_line, plc_config, tmp_path, make_user
) -> None:
    from twinops.releases.services import release_stop

    engineer = make_user("engineer")
    seen: dict[str, Any] = {}

    async def body(plc: PlcServer, agent: ReleaseAgent) -> None:
        start = dict(plc.simulator.setpoints)
        await _in_thread(_approve_when_fresh(release_line, plc, engineer, plan=ramp_plan(start, steps=20)))
        await until(lambda: (r := _release(release_line)) is not None and r.steps_done >= 2)
        await _in_thread(lambda: release_stop(line=release_line, actor=engineer, reason="operator asked to hold"))
        # what the PLC must hold: the last write before the stop (the PLC applies it at its next scan, so its
        # simulator may not show it yet at this instant)
        held = await _in_thread(lambda: _release(release_line).writes.filter(tag="F_feed").order_by("-step")[0].value)
        await asyncio.sleep(1.5)  # three more periods: nothing more is written
        seen["held"], seen["now"] = held, plc.simulator.setpoints["F_feed"]

    _scenario(release_line, plc_config, tmp_path, body)
    release = _release(release_line)
    assert release.status == "stopped" and "operator asked to hold" in release.reason
    assert seen["now"] == seen["held"]
    assert release.steps_done < 20 and release.writes.exclude(status="verified").count() == 0
    assert _actions()[-1] == "release.stopped"


def test_a_connection_lost_mid_release_stops_it_with_an_alarm_and_nothing_more_is_written(
    release_line, plc_config, tmp_path, make_user, caplog
) -> None:
    caplog.set_level(logging.CRITICAL, logger="asyncua")
    engineer = make_user("engineer")

    async def run() -> None:
        cfg = plc_config()
        plc = PlcServer(cfg)
        await plc.start()
        agent = await asyncio.to_thread(_agent, release_line, plc, tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        try:
            start = dict(plc.simulator.setpoints)
            await _in_thread(_approve_when_fresh(release_line, plc, engineer, plan=ramp_plan(start, steps=20)))
            await until(lambda: (r := _release(release_line)) is not None and r.steps_done >= 2)
            await plc.stop()  # the PLC's network goes away mid-release
            await until(lambda: _release(release_line).status != "running")
        finally:
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(run(), timeout=90))
    release = _release(release_line)
    assert release.status == "failed" and "connection to the PLC lost" in release.alarm
    assert 2 <= release.steps_done < 20
    assert release.writes.filter(step__gte=release.steps_done + 1).count() == 0  # held after the loss


def test_a_step_claimed_before_the_agent_died_is_read_back_not_written_again(
    release_line, plc_config, tmp_path, make_user
) -> None:
    from twinops.releases.models import ReleaseWrite
    from twinops.releases.services import release_claim, release_next

    engineer = make_user("engineer")
    seen: dict[str, Any] = {}

    async def run() -> None:
        async with PlcServer(plc_config()) as plc:

            def crashed_agent() -> None:  # what a killed agent leaves: a started release, step 0 claimed, not written
                rec = _approve_when_fresh(release_line, plc, engineer)()
                release = release_next(line=release_line)
                nodes = {t: plc.node_id(t) for t in rec.approved_plan["mv_plan"]}
                step0 = {t: (nodes[t], v[0]) for t, v in rec.approved_plan["mv_plan"].items()}
                assert release_claim(release=release, step=0, writes=step0)

            await _in_thread(crashed_agent)
            seen["before"] = dict(plc.simulator.setpoints)
            agent = await asyncio.to_thread(_agent, release_line, plc, tmp_path)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))  # the restarted agent
            await until(lambda: _release(release_line).status != "running")
            await asyncio.sleep(0.3)
            seen["after"], seen["writes"] = dict(plc.simulator.setpoints), agent.writes
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(run(), timeout=60))
    release = _release(release_line)
    assert seen["writes"] == 0 and seen["after"] == seen["before"]  # never written blindly
    assert release.status == "failed" and "claimed before the agent stopped" in release.alarm
    f = release.writes.get(step=0, tag="F_feed")
    assert f.status == "mismatch" and f.read_back == pytest.approx(seen["before"]["F_feed"])
    assert ReleaseWrite.objects.filter(release=release).count() == 4  # step 0 only, once
