"""`twinops release status LINE` and `twinops release stop LINE --reason …` as an engineer at a terminal meets them."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from plantsim.plc import PlcServer

from .conftest import LINE, OPERATOR, PASSWORD, SPEED, approve, fresh_data, ramp_plan, until


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("release", *args, stdout=out)
    return out.getvalue()


def _running(line: Any, engineer: Any, *, verified_steps: int = 1) -> Any:
    """Start a release of a 3-step plan (no PLC) with its first steps written and read back, as the agent records."""
    from django.utils import timezone

    from twinops.releases.services import WriteOutcome, release_claim, release_next, release_write_record

    start = {"F_feed": 20.0, "F_oil": 10.0, "m_steam": 500.0, "Q_fired": 300.0}
    rec = approve(line, start, ramp_plan(start), engineer=engineer)
    release = release_next(line=line)
    assert release is not None and release.recommendation_id == rec.pk
    for step in range(verified_steps):
        plan = {t: v[step] for t, v in rec.approved_plan["mv_plan"].items()}
        assert release_claim(release=release, step=step, writes={t: (f"ns=2;s={LINE}.{t}", v) for t, v in plan.items()})
        now = timezone.now()
        release = release_write_record(
            release=release,
            step=step,
            outcomes=[WriteOutcome(t, "verified", read_back=v, written_at=now, read_at=now) for t, v in plan.items()],
        )
    return release


def _actions() -> list[tuple[str, str, str]]:
    from twinops.audit.models import AuditEvent

    return list(
        AuditEvent.objects.filter(action__startswith="release.")
        .order_by("id")
        .values_list("action", "actor_label", "reason")
    )


@pytest.mark.django_db
@pytest.mark.parametrize("action", [["status"], ["stop", "--reason", "hold"]])
def test_an_unknown_line_is_named_in_one_line(action: list[str]) -> None:
    with pytest.raises(CommandError, match=r"^no line 'no-such-line'$"):
        run(action[0], "no-such-line", *action[1:])


@pytest.mark.django_db
def test_status_of_a_line_that_never_released_says_so(release_line) -> None:
    assert run("status", LINE) == f"{LINE}: no release yet (line mode advisory).\n"


@pytest.mark.django_db
def test_status_lists_each_write_with_its_read_back_and_the_alarm(release_line, make_user) -> None:
    from django.utils import timezone

    from twinops.releases.services import WriteOutcome, release_claim, release_write_record

    release = _running(release_line, make_user("engineer"))
    writes = {t: (f"ns=2;s={LINE}.{t}", v) for t, v in {"F_feed": 20.6, "F_oil": 10.0}.items()}
    assert release_claim(release=release, step=1, writes=writes)
    now = timezone.now()
    release_write_record(
        release=release,
        step=1,
        outcomes=[
            WriteOutcome("F_feed", "mismatch", read_back=20.4, written_at=now, read_at=now, error="clamped"),
            WriteOutcome("F_oil", "verified", read_back=10.0, written_at=now, read_at=now),
        ],
    )
    lines = run("status", LINE).splitlines()
    assert lines[0].startswith(f"{LINE}: release of proposal {release.recommendation_id} failed, 1 of 3 steps, started")
    assert "ALARM: " in lines[2] and "F_feed written 20.6, read 20.4" in lines[2]
    f_feed = [line.split() for line in lines if line.startswith("  step") and " F_feed " in line]
    assert [(w[1], w[3], w[6], w[7]) for w in f_feed] == [
        ("0", "20.3", "20.3", "verified"),
        ("1", "20.6", "20.4", "mismatch"),
    ]


@pytest.mark.django_db
def test_stop_needs_a_reason_and_stops_nothing_without_one(release_line, make_user) -> None:
    release = _running(release_line, make_user("engineer"))
    with pytest.raises(CommandError, match="the following arguments are required: --reason"):
        run("stop", LINE)
    with pytest.raises(CommandError, match=r"^give a reason for stopping the release$"):
        run("stop", LINE, "--reason", "   ")
    release.refresh_from_db()
    assert release.status == "running" and [a for a, _, _ in _actions()] == ["release.started", "release.write"]


@pytest.mark.django_db
def test_stop_without_a_running_release_says_so(release_line) -> None:
    with pytest.raises(CommandError, match=f"^no release is running on line {LINE}$"):
        run("stop", LINE, "--reason", "hold")


@pytest.mark.django_db
def test_only_an_engineer_or_admin_stops_a_release(release_line, make_user) -> None:
    release = _running(release_line, make_user("engineer"))
    make_user("auditor")
    with pytest.raises(CommandError, match="auditor-user may not"):
        run("stop", LINE, "--reason", "hold", "--as", "auditor-user")
    with pytest.raises(CommandError, match=r"^no user named 'ghost'$"):
        run("stop", LINE, "--reason", "hold", "--as", "ghost")
    release.refresh_from_db()
    assert release.status == "running"


@pytest.mark.django_db
def test_stop_from_the_shell_is_audited_and_nothing_more_can_be_claimed(release_line, make_user) -> None:
    from twinops.releases.models import ReleaseWrite
    from twinops.releases.services import release_claim

    release = _running(release_line, make_user("engineer"))
    out = run("stop", LINE, "--reason", "lab sample pending")
    assert out == f"Release of proposal {release.recommendation_id} stopped after 1 of 3 steps; setpoints held.\n"
    release.refresh_from_db()
    assert release.status == "stopped" and "lab sample pending" in release.reason
    action, actor, reason = _actions()[-1]
    assert action == "release.stopped" and actor.startswith("cli:") and "lab sample pending" in reason
    assert not release_claim(release=release, step=1, writes={"F_feed": (f"ns=2;s={LINE}.F_feed", 20.6)})
    assert not ReleaseWrite.objects.filter(release=release, step=1).exists()
    assert "stopped, 1 of 3 steps" in run("status", LINE)


@pytest.mark.django_db(transaction=True)  # the agent works on its own connection
def test_an_engineer_stops_a_release_from_the_shell_and_the_plc_holds_its_setpoints(
    release_line, plc_config, tmp_path, make_user
) -> None:
    from twinops.releases.agent import AgentConfig, ReleaseAgent
    from twinops.releases.selectors import release_latest

    engineer = make_user("engineer", username="erin")
    seen: dict[str, Any] = {}

    def in_thread(fn: Any) -> Any:
        from django.db import connection

        try:
            return fn()
        finally:
            connection.close()

    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc:
            config = AgentConfig(
                url=plc.endpoint_url,
                fingerprint=plc.certificate_fingerprint,
                cert_dir=tmp_path / "client",
                username=OPERATOR,
                password=PASSWORD,
                speed=SPEED,
                poll_s=0.05,
            )
            agent = await asyncio.to_thread(ReleaseAgent, line=release_line, config=config)
            stop = asyncio.Event()
            task = asyncio.create_task(agent.run(stop))
            try:

                def approved() -> None:
                    fresh_data(release_line, plc)
                    start = dict(plc.simulator.setpoints)
                    approve(release_line, start, ramp_plan(start, steps=20), engineer=engineer)

                await asyncio.to_thread(in_thread, approved)
                await until(lambda: (r := release_latest(line=release_line)) is not None and r.steps_done >= 2)
                seen["out"] = await asyncio.to_thread(
                    in_thread, lambda: run("stop", LINE, "--reason", "operator asked to hold", "--as", "erin")
                )
                held = dict(plc.simulator.setpoints)
                await asyncio.sleep(1.5)  # three more periods: nothing more is written
                seen["held"], seen["now"], seen["writes"] = held, dict(plc.simulator.setpoints), agent.writes
            finally:
                stop.set()
                await task

    asyncio.run(asyncio.wait_for(scenario(), timeout=90))
    release = release_latest(line=release_line)
    assert "setpoints held" in seen["out"] and release.status == "stopped" and release.ended_by_label == "erin"
    assert seen["now"] == seen["held"]
    assert release.writes.count() == release.steps_done * 4 and release.steps_done < 20
    action, actor, reason = _actions()[-1]
    assert (action, actor) == ("release.stopped", "erin") and "operator asked to hold" in reason
