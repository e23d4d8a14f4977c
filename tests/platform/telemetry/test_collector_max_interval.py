"""A tag whose OPC UA value holds still is still stored once per sample period, but only while the PLC is connected."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest
from asyncua import ua

from twinops.telemetry.collector import Collector, CollectorConfig

from .conftest import line_make
from .test_collector import NODES, _free_port, _server, _until

pytestmark = pytest.mark.django_db(transaction=True)  # the collector stores on its own connection
PERIOD_S = 0.5


def _rows(line, name: str) -> list[tuple]:
    from django.db import connection

    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT s.ts, s.value, s.quality, r.text FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id "
                "LEFT JOIN telemetry_reason r ON r.id = s.reason_id WHERE t.line_id = %s AND t.name = %s ORDER BY s.ts",
                [line.pk, name],
            )
            return cur.fetchall()
    finally:
        connection.close()


def test_a_setpoint_that_holds_still_is_stored_every_sample_period_with_its_quality(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="asyncua")
    line = line_make("reactor", {"T": ("CV", 0, 200), "F": ("MV", 0, 50)}, period_s=PERIOD_S, opcua=NODES)
    port = _free_port()
    config = CollectorConfig(
        url=f"opc.tcp://127.0.0.1:{port}/twinops-test/", insecure=True, flush_ms=100, publishing_ms=50
    )
    collector = Collector(line=line, config=config)
    found: dict[str, object] = {}

    async def scenario() -> None:
        server, nodes = await _server(port)
        await nodes["F"].write_value(12.5)  # the setpoint, never written again
        await nodes["T"].write_value(
            ua.DataValue(
                ua.Variant(0.0, ua.VariantType.Double),
                StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
                SourceTimestamp=datetime.now(UTC),
            )
        )
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        try:
            await _until(lambda: len(collector.last) == 2)  # both first values arrived
            await asyncio.sleep(8 * PERIOD_S)
            found["F"] = await asyncio.to_thread(_rows, line, "F")
            found["T"] = await asyncio.to_thread(_rows, line, "T")
            await server.stop()  # the PLC goes away: its last values are no longer vouched for
            await _until(lambda: not collector.last)
            await asyncio.sleep(0.3)  # the last flush lands
            before = len(await asyncio.to_thread(_rows, line, "F"))
            await asyncio.sleep(4 * PERIOD_S)
            found["F gone"] = (before, len(await asyncio.to_thread(_rows, line, "F")))
        finally:
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    f_rows = found["F"]
    assert len(f_rows) >= 7, f_rows  # about one per period in 4 s, though the value never changed
    assert {(v, q) for _, v, q, _ in f_rows} == {(12.5, 0)}  # the same good value each time
    gaps = [(b[0] - a[0]).total_seconds() for a, b in zip(f_rows[1:], f_rows[2:], strict=False)]
    assert gaps and max(gaps) <= PERIOD_S * 1.5, gaps  # repeats arrive at the sample period
    t_rows = found["T"]
    assert len(t_rows) >= 7 and {(q, r) for _, _, q, r in t_rows} == {(2, "BadSensorFailure")}  # still bad
    before, after = found["F gone"]
    assert after == before, "values were repeated while the PLC was unreachable"
