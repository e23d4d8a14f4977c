"""The collector stores every value of a burst that a PLC writes faster than it publishes, none lost or doubled."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import Server, ua

from twinops.telemetry.collector import Collector, CollectorConfig

from .conftest import line_make

pytestmark = pytest.mark.django_db(transaction=True)  # the collector stores on its own connection
NODES = {"T": "ns=2;s=burst.T", "P": "ns=2;s=burst.P", "F": "ns=2;s=burst.F"}
PER_TAG = 600  # values written to each tag while the collector publishes every 200 ms
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _burst_rows(line) -> list[tuple]:
    from django.db import connection

    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT t.name, s.ts, s.value, s.quality FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id "
                "WHERE t.line_id = %s AND s.ts >= %s AND s.ts < %s ORDER BY t.name, s.ts",
                [line.pk, START, START + timedelta(hours=1)],
            )
            return cur.fetchall()
    finally:
        connection.close()


def _value(i: int, name: str) -> ua.DataValue:
    stamp = START + timedelta(seconds=i)
    if name == "P" and i % 100 == 50:  # a sensor failure now and then: stored as bad, counted like any value
        status = ua.StatusCode(ua.StatusCodes.BadSensorFailure)
        return ua.DataValue(ua.Variant(0.0, ua.VariantType.Double), StatusCode=status, SourceTimestamp=stamp)
    # 1 + i % 97: never the node's initial 0.0 nor the previous value, so each write is a data change
    return ua.DataValue(ua.Variant(float(1 + i % 97), ua.VariantType.Double), SourceTimestamp=stamp)


def test_a_burst_of_values_written_between_two_publishes_is_stored_completely(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="asyncua")
    line = line_make("burst", {"T": ("CV", 0, 200), "P": ("DV", 0, 200), "F": ("MV", 0, 200)}, opcua=NODES)
    port = _free_port()
    config = CollectorConfig(
        url=f"opc.tcp://127.0.0.1:{port}/twinops-test/",
        insecure=True,
        flush_values=500,  # a burst this size also flushes by count, not only on the timer
        max_interval_s=3600.0,
    )
    collector = Collector(line=line, config=config)

    async def scenario() -> None:
        server = Server()
        await server.init()
        server.set_endpoint(config.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace("urn:twinops:test")
        plc = await server.nodes.objects.add_object(idx, "burst")
        nodes = {n: await plc.add_variable(ua.NodeId.from_string(node), n, 0.0) for n, node in NODES.items()}
        await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        try:
            while collector.stored < len(NODES):  # subscribed: the initial values are stored
                await asyncio.sleep(0.05)
            received0 = collector.received
            for i in range(PER_TAG):
                for name, node in nodes.items():
                    await node.write_value(_value(i, name))
                if i % 50 == 0:
                    await asyncio.sleep(0)
            deadline = asyncio.get_running_loop().time() + 20
            while collector.received - received0 < PER_TAG * len(NODES):
                assert asyncio.get_running_loop().time() < deadline, "the collector did not receive every value"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=90))
    rows = _burst_rows(line)
    assert len(rows) == PER_TAG * len(NODES)  # every value once: none lost, none doubled
    for name in NODES:
        mine = [r for r in rows if r[0] == name]
        assert [r[1] for r in mine] == [START + timedelta(seconds=i) for i in range(PER_TAG)]
    assert sum(1 for r in rows if r[0] == "P" and r[3] == 2) == PER_TAG // 100
    assert ("T", START + timedelta(seconds=300), float(1 + 300 % 97), 0) in rows
