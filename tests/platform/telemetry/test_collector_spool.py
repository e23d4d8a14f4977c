"""A collector killed before it flushed loses nothing: the next one stores what the dead one had received."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from asyncua import ua
from django.db import connections

from twinops.telemetry.collector import Collector, CollectorConfig

from .conftest import line_make
from .test_collector import NODES, _stored_closing

pytestmark = pytest.mark.django_db(transaction=True)  # the collector stores on its own connection
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _notifications(values: list[tuple[int, float, datetime]]) -> list[ua.MonitoredItemNotification]:
    out = []
    for handle, value, when in values:
        item = ua.MonitoredItemNotification()
        item.ClientHandle = handle
        item.Value = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=when)
        out.append(item)
    return out


def test_values_received_by_a_killed_collector_are_stored_by_the_next_one_once(tmp_path) -> None:
    line = line_make("reactor", {"T": ("CV", 0, 500), "F": ("MV", 0, 10)}, opcua=NODES)
    config = CollectorConfig(url="opc.tcp://127.0.0.1:1/unused", insecure=True, spool=tmp_path / "spool" / "c.jsonl")
    names = {1: "T", 2: "F"}

    first = Collector(line=line, config=config)
    first.take(_notifications([(1, 100.0, T0), (2, 1.0, T0)]), names, names.get)
    asyncio.run(first.flush())  # stored: set aside, then deleted
    first.take(_notifications([(1, 101.0, T0 + timedelta(seconds=1))]), names, names.get)
    first.buffer.append(("T", T0 + timedelta(seconds=2), 102.0))  # a flush that failed would put values back
    first._spool_set_aside()
    first.take(_notifications([(1, 103.0, T0 + timedelta(seconds=3))]), names, names.get)
    _close(first)  # kill -9: no flush, the buffer gone with the process (the OS closes its connection)
    del first

    second = Collector(line=line, config=config)
    assert sorted(v for _, _, v in second.buffer) == [101.0, 103.0]  # the values spooled, not the 102.0 never spooled
    asyncio.run(second.flush())
    assert [v for _, v, _, _ in _stored_closing(line)] == [100.0, 1.0, 101.0, 103.0]
    assert list((tmp_path / "spool").iterdir()) == [tmp_path / "spool" / "c.jsonl"]
    assert (tmp_path / "spool" / "c.jsonl").read_text() == ""  # everything stored: nothing left to recover

    _close(second)
    third = Collector(line=line, config=config)
    assert third.buffer == []


def _close(collector: Collector) -> None:
    collector._db.submit(connections.close_all).result()
    collector._db.shutdown()
