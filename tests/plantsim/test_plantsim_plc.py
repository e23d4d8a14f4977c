"""The PLC over real OPC UA: reads, writes, subscriptions, refused writes, heartbeat fallback."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

from plantsim import FaultRates, Realism, make_line
from plantsim.plc import PlcServer
from plantsim.spec import line_spec

from .conftest import READER, READER_PASSWORD


async def _wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _code(exc: pytest.ExceptionInfo[UaStatusCodeError]) -> int:
    return exc.value.code


@pytest.mark.parametrize("line_id", ["vdv-reactor", "heat-train"])
def test_every_spec_node_exists_on_the_plc_and_reads_a_plausible_value(plc_config, connect, line_id: str) -> None:
    async def scenario() -> None:
        async with (
            PlcServer(plc_config(line_id=line_id)) as plc,
            connect(plc, username=READER, password=READER_PASSWORD) as client,
        ):
            for tag in line_spec(make_line(line_id))["tags"]:
                dv = await client.get_node(tag["opcua_node"]).read_data_value(raise_on_bad_status=False)
                low, high = tag["physical_range"]
                assert dv.StatusCode.is_good() or dv.StatusCode.value == ua.StatusCodes.BadSensorFailure
                assert dv.StatusCode.is_bad() or low <= dv.Value.Value <= high, tag["name"]
            ns = await client.get_namespace_index("urn:twinops:plantsim")
            assert ns == 2
            assert await client.get_node(f"ns=2;s={line_id}.mode").read_value() == "REMOTE"
            block = line_spec(make_line(line_id))["plc"]  # the line-level nodes the release agent uses
            assert await client.get_node(block["mode_node"]).read_value() == "REMOTE"
            assert await client.get_node(block["fallback_active_node"]).read_value() is False
            assert isinstance(await client.get_node(block["heartbeat_node"]).read_value(), int)

    asyncio.run(scenario())


def test_an_operator_writes_a_setpoint_that_the_plant_follows_at_its_ramp_rate(plc_config, connect) -> None:
    async def scenario() -> None:
        # 30x: the actuator needs 0.7 simulated minutes (1.4 s wall) for 18 -> 25 at 10 per minute
        async with PlcServer(plc_config(speed=30.0)) as plc, connect(plc) as client:
            setpoint = client.get_node(plc.node_id("F"))
            await setpoint.write_value(25.0)
            assert await setpoint.read_value() == 25.0
            position = client.get_node(plc.node_id("F.pv"))

            async def reached() -> bool:
                return abs(await position.read_value() - 25.0) < 1e-9

            first = await position.read_value()
            assert first < 25.0  # the actuator ramps (10 per minute), it does not jump
            await _wait_for(reached)
            assert plc.simulator.setpoints["F"] == 25.0
            stamp = (await client.get_node(plc.node_id("T_R")).read_data_value()).SourceTimestamp
            assert stamp is not None

    asyncio.run(scenario())


def test_a_subscription_receives_data_change_notifications(plc_config, connect) -> None:
    class Handler:
        def __init__(self) -> None:
            self.seen: dict[str, list[float]] = {}

        def datachange_notification(self, node: Any, value: float, data: Any) -> None:
            self.seen.setdefault(node.nodeid.Identifier, []).append(value)

    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc, connect(plc, username=READER, password=READER_PASSWORD) as client:
            handler = Handler()
            sub = await client.create_subscription(50, handler)
            await sub.subscribe_data_change([client.get_node(plc.node_id(n)) for n in ("T_R", "C_b", "sim_time")])

            async def enough() -> bool:
                return len(handler.seen) == 3 and all(len(v) >= 4 for v in handler.seen.values())

            await _wait_for(enough)
            await sub.delete()
        assert len(set(handler.seen["vdv-reactor.T_R"])) > 1

    asyncio.run(scenario())


def test_anonymous_sessions_can_read_but_their_writes_are_refused(plc_config, connect) -> None:
    async def scenario() -> None:
        async with (
            PlcServer(plc_config(allow_anonymous_read=True)) as plc,  # off by default (test_plantsim_security)
            connect(plc, username=None, password=None) as client,
        ):
            node = client.get_node(plc.node_id("F"))
            before = await node.read_value()
            with pytest.raises(UaStatusCodeError) as exc:
                await node.write_value(20.0)
            assert _code(exc) == ua.StatusCodes.BadUserAccessDenied
            with pytest.raises(UaStatusCodeError):
                await client.get_node(plc.node_id("heartbeat")).write_value(1)
            assert await node.read_value() == before == plc.simulator.setpoints["F"]

    asyncio.run(scenario())


def test_a_wrong_password_is_refused_at_login(plc_config, connect) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc:
            with pytest.raises(UaStatusCodeError) as exc:
                async with connect(plc, password="not-the-password"):
                    pass
            assert _code(exc) == ua.StatusCodes.BadUserAccessDenied

    asyncio.run(scenario())


def test_setpoint_writes_are_refused_in_local_mode_and_the_mode_is_not_writable_remotely(plc_config, connect) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc, connect(plc) as client:
            await plc.set_mode("LOCAL")
            mode = client.get_node(plc.node_id("mode"))
            assert await mode.read_value() == "LOCAL"
            with pytest.raises(UaStatusCodeError) as exc:
                await client.get_node(plc.node_id("F")).write_value(20.0)
            assert _code(exc) == ua.StatusCodes.BadInvalidState
            with pytest.raises(UaStatusCodeError) as exc:
                await mode.write_value("REMOTE")
            assert _code(exc) == ua.StatusCodes.BadNotWritable
            await plc.set_mode("REMOTE")
            await client.get_node(plc.node_id("F")).write_value(20.0)
            assert plc.simulator.line.id == "vdv-reactor"

    asyncio.run(scenario())


def test_setpoints_outside_the_mv_limits_or_of_the_wrong_type_are_refused(plc_config, connect) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc, connect(plc) as client:
            node = client.get_node(plc.node_id("Q_dot"))
            for bad in (500.0, -9000.0, math.nan, math.inf):
                with pytest.raises(UaStatusCodeError) as exc:
                    await node.write_value(bad)
                assert _code(exc) == ua.StatusCodes.BadOutOfRange, bad
            with pytest.raises(UaStatusCodeError) as exc:
                await node.write_value(ua.Variant(-4000, ua.VariantType.Int32))
            assert _code(exc) == ua.StatusCodes.BadTypeMismatch
            with pytest.raises(UaStatusCodeError) as exc:
                await client.get_node(plc.node_id("T_R")).write_value(100.0)
            assert _code(exc) == ua.StatusCodes.BadNotWritable
            await node.write_value(-8500.0)  # the limit itself is allowed
            assert await node.read_value() == -8500.0

    asyncio.run(scenario())


def test_heartbeat_loss_applies_the_safe_setpoints_and_flags_it(plc_config, connect) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config(heartbeat_timeout_s=1.5)) as plc, connect(plc) as client:
            heartbeat = client.get_node(plc.node_id("heartbeat"))
            fallback = client.get_node(plc.node_id("fallback_active"))
            feed = client.get_node(plc.node_id("F"))
            for beat in range(1, 12):  # a live platform: beat every 0.15 s for about two seconds
                await heartbeat.write_value(beat)
                if beat == 1:
                    await feed.write_value(22.0)
                await asyncio.sleep(0.15)
            assert await fallback.read_value() is False
            assert await feed.read_value() == 22.0

            async def fell_back() -> bool:
                return bool(await fallback.read_value())

            await _wait_for(fell_back)  # the platform went silent
            safe = make_line("vdv-reactor").mv_tuning
            assert await feed.read_value() == safe["F"].safe
            assert await client.get_node(plc.node_id("Q_dot")).read_value() == safe["Q_dot"].safe
            assert plc.simulator.setpoints == {"F": safe["F"].safe, "Q_dot": safe["Q_dot"].safe}
            assert "heartbeat lost" in await client.get_node(plc.node_id("message")).read_value()
            with pytest.raises(UaStatusCodeError) as exc:
                await feed.write_value(22.0)
            assert _code(exc) == ua.StatusCodes.BadInvalidState

            await heartbeat.write_value(100)  # the platform is back: flag cleared, safe setpoints held
            assert await fallback.read_value() is False
            assert "restored" in await client.get_node(plc.node_id("message")).read_value()
            assert await feed.read_value() == safe["F"].safe
            await feed.write_value(22.0)

    asyncio.run(scenario())


def test_a_sensor_dropout_is_published_with_a_bad_status(plc_config, connect) -> None:
    faults = FaultRates(dropout_per_h=2000.0, stuck_per_h=0.0, spike_per_h=0.0, dropout_mean_s=30.0)

    async def scenario() -> None:
        async with PlcServer(plc_config(realism=Realism(faults=faults))) as plc, connect(plc) as client:
            node = client.get_node(plc.node_id("C_b"))

            async def bad_seen() -> bool:
                dv = await node.read_data_value(raise_on_bad_status=False)
                return dv.StatusCode.value == ua.StatusCodes.BadSensorFailure

            await _wait_for(bad_seen)

    asyncio.run(scenario())
