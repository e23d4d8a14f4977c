"""A collector process killed with -9 and started again stores every value the server published, even meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from urllib.parse import urlparse

import pytest
from asyncua import ua
from django.db import connection

from .conftest import line_make
from .test_collector import NODES, _free_port, _server, _stored_closing, _until

pytestmark = pytest.mark.django_db(transaction=True)  # the collector processes store on their own connections

COLLECT = textwrap.dedent("""
    import logging, sys, django
    django.setup()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("twinops.telemetry.collector").setLevel(logging.INFO)
    from django.core.management import call_command
    call_command("collect", "reactor", "--url", sys.argv[1], "--insecure", "--publishing-ms", "500", "--flush-ms", "100")
""")


def _stored_t() -> list[float]:
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT s.value FROM telemetry_sample s JOIN lines_tag t ON t.id = s.tag_id WHERE t.name = 'T' "
                "ORDER BY s.ts"
            )
            return [v for (v,) in cur.fetchall()]
    finally:
        connection.close()


def test_a_killed_collector_started_again_stores_every_value_published_in_flight_and_while_it_was_dead(
    tmp_path,
) -> None:
    written, logs = _kill_and_restart(tmp_path, rebind=True)
    stored = _stored_t()
    assert stored == written[written.index(stored[0]) :]  # every value from the first stored on, once, in order
    assert len(stored) > 60
    assert "took over subscription" in logs[1].read_text()


def test_a_subscription_taken_over_that_never_publishes_is_replaced_and_collecting_goes_on(tmp_path) -> None:
    written, logs = _kill_and_restart(tmp_path, rebind=False)  # asyncua's own server: the take-over stays silent
    log = logs[1].read_text()
    assert "took over subscription" in log and "subscribing anew" in log
    assert written[-1] in _stored_t()  # collecting went on: the last value written was stored


def _kill_and_restart(tmp_path, *, rebind: bool) -> tuple[list[float], list]:
    """Collect in a process, kill it -9 mid-stream, start another 2 s later; return the values written and the logs."""
    line_make("reactor", {"T": ("CV", 0, 1e6), "F": ("MV", 0, 50)}, opcua=NODES)
    port = _free_port()
    url = f"opc.tcp://127.0.0.1:{port}/twinops-test/"
    test_db = urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{connection.settings_dict['NAME']}").geturl()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "twinops.config.settings",
        "DATABASE_URL": test_db,
        "TWINOPS_HOME": str(tmp_path),
    }
    written: list[float] = []
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    def collector(log) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-c", COLLECT, url], env=env, stdout=out, stderr=subprocess.STDOUT)

    async def until(check, timeout_s: float = 60.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await asyncio.to_thread(check):
            assert asyncio.get_running_loop().time() < deadline, "timed out: " + logs[0].read_text()[-2000:]
            await asyncio.sleep(0.2)

    async def scenario() -> None:
        server, nodes = await _server(port, rebind=rebind)
        writing = asyncio.Event()
        writing.set()

        async def writer() -> None:  # a PLC publishing a new value of T every 50 ms
            while writing.is_set():
                value = float(len(written) + 1)
                dv = ua.DataValue(ua.Variant(value, ua.VariantType.Double), SourceTimestamp=datetime.now(UTC))
                await nodes["T"].write_value(dv)
                written.append(value)
                await asyncio.sleep(0.05)

        task = asyncio.create_task(writer())
        first = collector(logs[0])
        try:
            await until(lambda: len(_stored_t()) >= 10)
            first.kill()  # mid-stream: with 500 ms publishing, values sit in the server's queue for it
            await asyncio.to_thread(first.wait, 30)
            await asyncio.sleep(2.0)  # ~40 values published while no collector runs
            second = collector(logs[1])
            try:
                mark = len(written)
                await until(lambda: any(v > mark for v in _stored_t()))
                writing.clear()
                await task
                await until(lambda: written[-1] in _stored_t())
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.to_thread(second.wait, 30)
        finally:
            writing.clear()
            first.kill()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
    return written, logs


def test_after_a_server_restart_the_collector_leaves_another_clients_subscription_of_the_same_id_alone() -> None:
    from asyncua import Client

    from twinops.telemetry.collector import Collector, CollectorConfig

    line = line_make("reactor", {"T": ("CV", 0, 200), "F": ("MV", 0, 50)}, opcua=NODES)
    port = _free_port()
    url = f"opc.tcp://127.0.0.1:{port}/twinops-test/"
    config = CollectorConfig(url=url, insecure=True, flush_ms=200, publishing_ms=50, reconnect_max_s=1.0)
    collector = Collector(line=line, config=config)
    theirs: list[float] = []

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            theirs.append(val)

    async def scenario() -> None:
        server, nodes = await _server(port)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        other = Client(url)
        try:
            await _until(lambda: collector.stored >= 2)
            ours = collector._sub.subscription_id
            await server.stop()  # the PLC restarts; another client subscribes first and gets our old id
            server, nodes = await _server(port)
            await other.connect()
            sub = await other.create_subscription(50, Handler())
            assert sub.subscription_id == ours  # asyncua numbers subscriptions the same way after each start
            await sub.subscribe_data_change([other.get_node(NODES["T"])])
            await _until(lambda: collector._sub is not None and collector._sub.subscription_id != ours, 30)
            await nodes["T"].write_value(42.0)
            await _until(lambda: 42.0 in theirs)  # the other client still gets its values
            while not any(r[:2] == ("T", 42.0) for r in await asyncio.to_thread(_stored_closing, line)):
                await asyncio.sleep(0.2)  # and so does the collector, on a subscription of its own
        finally:
            stop.set()
            await task
            await other.disconnect()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))
