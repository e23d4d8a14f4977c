"""The PLC's own count of changed tag values equals what a data-change subscription to the line's tags reports."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from plantsim import FaultRates, Realism
from plantsim.plc import PlcServer

from .conftest import READER, READER_PASSWORD


def test_the_plcs_count_of_changed_values_is_what_a_subscriber_receives_stuck_and_failed_sensors_included(
    plc_config, connect
) -> None:
    # frequent stuck and failed sensors: a repeated value or a sensor still failed is no change, so neither is counted
    realism = Realism(faults=FaultRates(dropout_per_h=10.0, stuck_per_h=5.0))
    received = 0

    class Count:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            nonlocal received
            received += 1

    async def scenario() -> None:
        async with (
            PlcServer(plc_config(line_id="heat-train", tick_s=3600.0, realism=realism)) as plc,
            connect(plc, username=READER, password=READER_PASSWORD) as client,
        ):
            sub = await client.create_subscription(50, Count())
            measured = [t for t in plc.line.tags if t.role != "MV"]
            await sub.subscribe_data_change([client.get_node(t.opcua_node) for t in measured], queuesize=5000)
            await asyncio.sleep(0.5)  # the initial values
            nonlocal received
            received, changed0 = 0, plc.tag_values_changed
            for _ in range(400):
                plc.simulator.step(plc.line.sample_period_s)
                await plc.publish()
                await asyncio.sleep(0)
            changed = plc.tag_values_changed - changed0
            deadline = asyncio.get_running_loop().time() + 10
            while received < changed and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # nothing more than counted arrives either
            assert received == changed
            assert changed < 400 * len(measured)  # some values did repeat: the count is of changes, not writes

    asyncio.run(scenario())


def test_the_published_log_lists_exactly_the_values_a_subscriber_receives(plc_config, connect, tmp_path) -> None:
    realism = Realism(faults=FaultRates(dropout_per_h=10.0, stuck_per_h=5.0))
    log_path = tmp_path / "published.tsv"
    received: list[tuple[str, str]] = []

    class Record:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            stamp = data.monitored_item.Value.SourceTimestamp
            received.append((node.nodeid.Identifier.split(".", 1)[1], stamp.replace(tzinfo=UTC).isoformat()))

    async def scenario() -> None:
        config = plc_config(line_id="heat-train", tick_s=3600.0, realism=realism, published_log=log_path)
        async with (
            PlcServer(config) as plc,
            connect(plc, username=READER, password=READER_PASSWORD) as client,
        ):
            sub = await client.create_subscription(50, Record())
            measured = [t for t in plc.line.tags if t.role != "MV"]
            await sub.subscribe_data_change([client.get_node(t.opcua_node) for t in measured], queuesize=5000)
            await asyncio.sleep(0.5)  # the initial values
            for _ in range(100):
                plc.simulator.step(plc.line.sample_period_s)
                await plc.publish()
                await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + 10
            while len(received) < plc.tag_values_changed and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    logged = [tuple(line.split("\t")[:2]) for line in log_path.read_text().splitlines()]
    assert len(logged) > 100
    assert sorted(logged) == sorted(received)  # every value a subscriber got is in the log once, and nothing else
