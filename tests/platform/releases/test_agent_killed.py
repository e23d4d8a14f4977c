"""`kill -9` of a real `twinops release-agent` mid-release, then a restart: no step written twice, none skipped."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from asyncua import ua
from django.db import connection

from plantsim.plc import PlcServer

from .conftest import OPERATOR, PASSWORD, approve, fresh_data, ramp_plan, until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]  # slow: two agent processes start (~30 s)
STEPS = 6
KILL_AT = 2  # the agent dies while the PLC takes step 2: written, never confirmed (steps 0 and 1 done before)
AGENT_SPEED = 5.0  # a 10 s period every 2 s of wall time: room to kill between steps


def agent_env() -> dict[str, str]:
    """Return the environment of a child that works on this test's (committed) database, trusting the tiny twin."""
    test_db = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "twinops.config.settings",
        "DATABASE_URL": test_db,
        "TWINOPS_OPCUA_WRITE_PASSWORD": PASSWORD,
        "TWINOPS_RECOMMEND_MAX_OOD": "1e9",
        "TWINOPS_STALE_PERIODS": "30",
    }


def agent_start(plc: PlcServer, line_key: str, tmp_path: Path, log: Path, *, speed: float) -> subprocess.Popen[str]:
    """Start `twinops release-agent` for the line against the PLC, its output to `log`."""
    command = [
        sys.executable,
        "-m",
        "twinops",
        "release-agent",
        line_key,
        "--url",
        plc.endpoint_url,
        "--fingerprint",
        str(plc.certificate_fingerprint),
        "--cert-dir",
        str(tmp_path / "client"),
        "--username",
        OPERATOR,
        "--speed",
        str(speed),
    ]
    with log.open("a") as out:
        return subprocess.Popen(command, env=agent_env(), stdout=out, stderr=subprocess.STDOUT, text=True)


def plc_writes_recorded(plc: PlcServer, on_write: Callable[[str, float], None]) -> list[tuple[str, float]]:
    """Record every setpoint write the PLC accepts, as (tag, value), in order; call on_write before accepting it."""
    accepted: list[tuple[str, float]] = []
    guard = plc._guard_write
    names = {ua.NodeId.from_string(plc.node_id(t.name)): t.name for t in plc.line.tags if t.role == "MV"}

    async def recording(user: Any, item: ua.WriteValue) -> Any:
        refused = await guard(user, item)
        if refused is None and item.NodeId in names:
            on_write(names[item.NodeId], float(item.Value.Value.Value))
            accepted.append((names[item.NodeId], float(item.Value.Value.Value)))
        return refused

    plc._server.iserver.attribute_service._guard = recording  # type: ignore[union-attr]
    return accepted


def test_a_release_agent_killed_mid_write_and_restarted_writes_every_step_exactly_once(
    release_line, plc_config, tmp_path, make_user
) -> None:
    from twinops.releases.selectors import release_latest

    engineer = make_user("engineer")
    log = tmp_path / "agent.log"
    seen: dict[str, Any] = {}
    agents: list[subprocess.Popen[str]] = []

    async def run() -> None:
        async with PlcServer(plc_config()) as plc:
            plan: dict[str, list[float]] = {}

            def on_write(tag: str, value: float) -> None:
                # The first agent dies the moment the PLC takes step KILL_AT's F_feed: the PLC applies the step, the
                # agent never hears back, its claim stays unconfirmed.
                if tag == "F_feed" and value == plan["F_feed"][KILL_AT] and "killed" not in seen:
                    os.kill(agents[0].pid, signal.SIGKILL)
                    agents[0].wait(timeout=10)
                    seen["killed"] = True

            accepted = plc_writes_recorded(plc, on_write)
            agents.append(agent_start(plc, release_line.key, tmp_path, log, speed=AGENT_SPEED))
            while plc._heartbeat_value is None:  # the agent is connected: it fed the heartbeat
                assert agents[0].poll() is None, log.read_text()
                await asyncio.sleep(0.1)

            def approved() -> Any:
                fresh_data(release_line, plc)
                start = dict(plc.simulator.setpoints)
                plan.update(ramp_plan(start, steps=STEPS))
                return approve(release_line, start, plan, engineer=engineer)

            seen["rec"] = await asyncio.to_thread(approved)
            seen["start"] = dict(seen["rec"].approved_plan["start_mv"])
            deadline = asyncio.get_running_loop().time() + 60
            while "killed" not in seen:
                assert asyncio.get_running_loop().time() < deadline, "the agent never reached step " + str(KILL_AT)
                assert agents[0].poll() is None, log.read_text()
                await asyncio.sleep(0.05)
            assert agents[0].returncode == -signal.SIGKILL
            seen["at_kill"] = list(accepted)
            seen["release_at_kill"] = await asyncio.to_thread(lambda: _release_row(release_latest, release_line))

            agents.append(agent_start(plc, release_line.key, tmp_path, log, speed=AGENT_SPEED))  # the restart
            await until(lambda: release_latest(line=release_line).status != "running", timeout_s=90)
            await asyncio.sleep(1.0)  # a period more: nothing else arrives at the PLC
            seen["accepted"], seen["plan"] = list(accepted), plan
            seen["final"] = dict(plc.simulator.setpoints)

    try:
        asyncio.run(asyncio.wait_for(run(), timeout=180))
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=30)
    plan, accepted = seen["plan"], seen["accepted"]
    # What the PLC itself took: every step once, in order, step KILL_AT included (it was written before the kill).
    assert [v for t, v in seen["at_kill"] if t == "F_feed"] == plan["F_feed"][: KILL_AT + 1]
    assert seen["release_at_kill"] == ("running", KILL_AT)  # steps 0..KILL_AT-1 confirmed, KILL_AT only claimed
    for tag in plan:
        assert [v for t, v in accepted if t == tag] == plan[tag], (tag, log.read_text())
    assert len(accepted) == STEPS * len(plan)
    assert seen["final"]["F_feed"] == pytest.approx(plan["F_feed"][-1])

    from twinops.audit.models import AuditEvent
    from twinops.releases.models import ReleaseWrite

    release = release_latest(line=release_line)
    assert release.recommendation_id == seen["rec"].pk
    assert release.status == "finished" and release.steps_done == release.steps == STEPS, release.reason
    rows = ReleaseWrite.objects.filter(release=release)
    assert rows.count() == STEPS * len(plan) and {r.status for r in rows} == {"verified"}
    assert all(r.read_back == r.value for r in rows)
    writes = AuditEvent.objects.filter(action="release.write").order_by("id")
    assert [e.after["step"] for e in writes] == list(range(STEPS))  # each step audited once, none skipped
    settled = writes.get(after__step=KILL_AT)
    assert "settled by read-back after the release agent restarted (not written again)" in settled.reason
    assert [w["read_back"] for w in settled.after["writes"] if w["tag"] == "F_feed"] == [plan["F_feed"][KILL_AT]]
    assert list(AuditEvent.objects.filter(action__startswith="release.").values_list("action", flat=True)) == [
        "release.started",
        *["release.write"] * STEPS,
        "release.finished",
    ]


def _release_row(release_latest: Callable[..., Any], line: Any) -> tuple[str, int]:
    try:
        r = release_latest(line=line)
        return r.status, r.steps_done
    finally:
        connection.close()
