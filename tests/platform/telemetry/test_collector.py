"""The OPC UA collector stores what a live asyncua server publishes, bad statuses included, across a restart."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from asyncua import Server, ua

from plantsim.opcua_access import transfer_rebinding
from twinops.telemetry.collector import Collector, CollectorConfig

from .conftest import line_make

pytestmark = pytest.mark.django_db(transaction=True)  # the collector stores on its own connection
NODES = {"T": "ns=2;s=reactor.T", "F": "ns=2;s=reactor.F"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _server(port: int, *, rebind: bool = True) -> tuple[Server, dict[str, object]]:
    server = Server()
    await server.init()
    if rebind:  # as the demo's PLCs: a subscription taken over keeps publishing (asyncua 2.1.0 bug otherwise)
        transfer_rebinding(server)
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/twinops-test/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace("urn:twinops:test")
    assert idx == 2
    plc = await server.nodes.objects.add_object(idx, "reactor")
    nodes = {name: await plc.add_variable(ua.NodeId.from_string(node), name, 0.0) for name, node in NODES.items()}
    await server.start()
    return server, nodes


async def _until(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _stored(line) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT t.name, s.value, s.quality, r.text FROM telemetry_sample s JOIN lines_tag t ON t.id = "
            "s.tag_id LEFT JOIN telemetry_reason r ON r.id = s.reason_id WHERE t.line_id = %s "
            "ORDER BY s.ts",
            [line.pk],
        )
        return cur.fetchall()


def _stored_closing(line) -> list[tuple]:
    from django.db import connection

    try:
        return _stored(line)
    finally:
        connection.close()


def test_the_collector_stores_values_and_bad_statuses_from_a_live_server_and_reconnects(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="asyncua")
    line = line_make("reactor", {"T": ("CV", 0, 200), "F": ("MV", 0, 50)}, opcua=NODES)
    port = _free_port()
    config = CollectorConfig(
        url=f"opc.tcp://127.0.0.1:{port}/twinops-test/",
        insecure=True,
        flush_ms=200,
        publishing_ms=50,
        reconnect_max_s=1.0,
    )
    collector = Collector(line=line, config=config)

    async def scenario() -> None:
        server, nodes = await _server(port)
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        try:
            await _until(lambda: collector.stored >= 2)  # the initial values of both tags
            await nodes["T"].write_value(71.5)
            await asyncio.sleep(0.2)
            await nodes["F"].write_value(
                ua.DataValue(
                    ua.Variant(0.0, ua.VariantType.Double),
                    StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure),
                    SourceTimestamp=datetime.now(UTC),
                )
            )
            await _until(lambda: collector.stored >= 4)
            await server.stop()  # the PLC goes away …
            await asyncio.sleep(1.5)
            server, nodes = await _server(port)  # … and comes back: the collector reconnects by itself
            await nodes["T"].write_value(72.5)
            while not any(r[:2] == ("T", 72.5) for r in await asyncio.to_thread(_stored_closing, line)):
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await task
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    rows = _stored(line)
    assert ("T", 71.5, 0, None) in rows and ("T", 72.5, 0, None) in rows
    assert ("F", None, 2, "BadSensorFailure") in rows


async def _in_thread(fn: Callable[[], object]) -> object:
    """Run ORM code off the event loop, closing that thread's connection afterwards."""

    def call() -> object:
        from django.db import connection

        try:
            return fn()
        finally:
            connection.close()

    return await asyncio.to_thread(call)


def test_the_collector_uses_sign_and_encrypt_with_a_pinned_certificate_and_refuses_another(tmp_path, caplog) -> None:
    from plantsim.plc import PlcConfig, PlcServer
    from twinops.opcua.client import CertificatePinError

    caplog.set_level(logging.ERROR, logger="asyncua")
    from twinops.opcua.certs import client_certificate_ensure

    cfg = PlcConfig(
        line_id="vdv-reactor",
        operator_password="s3cret-operator-pw",
        reader_user="collector",
        reader_password="s3cret-reader-pw",
        port=0,
        cert_dir=tmp_path / "plc-certs",
        trusted_client_certs=(client_certificate_ensure(tmp_path / "client-certs").cert,),
        speed=600.0,
        tick_s=0.05,
        heartbeat_timeout_s=60.0,
    )

    async def scenario() -> tuple[int, type[BaseException] | None]:
        async with PlcServer(cfg) as plc:
            line = await _in_thread(
                lambda: line_make(
                    "vdv",
                    {"T_R": ("CV", -50, 500), "F": ("MV", 0, 1000)},
                    opcua={"T_R": plc.node_id("T_R"), "F": plc.node_id("F")},
                )
            )
            secure = CollectorConfig(
                url=plc.endpoint_url,
                fingerprint=plc.certificate_fingerprint,
                cert_dir=tmp_path / "client-certs",
                username="collector",  # the PLC's read-only account: a collector never writes
                password="s3cret-reader-pw",
                flush_ms=200,
                publishing_ms=50,
            )
            collector = await _in_thread(lambda: Collector(line=line, config=secure))
            stop = asyncio.Event()
            task = asyncio.create_task(collector.run(stop))
            try:
                await _until(lambda: collector.stored >= 10)
            finally:
                stop.set()
                await task
            impostor = CollectorConfig(**{**secure.__dict__, "fingerprint": "00:" * 31 + "00"})
            refused = await _in_thread(lambda: Collector(line=line, config=impostor))
            try:
                await refused.run(asyncio.Event())
            except CertificatePinError as e:
                return collector.stored, type(e)
            return collector.stored, None

    stored, refusal = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert stored >= 10 and refusal is CertificatePinError


def test_the_collect_command_refuses_an_unpinned_secure_connection_and_an_unknown_line(db) -> None:
    from django.core.management import CommandError, call_command

    line_make("reactor", {"T": ("CV", 0, 200)}, opcua={"T": NODES["T"]})
    with pytest.raises(CommandError, match="--fingerprint"):
        call_command("collect", "reactor", "--url", "opc.tcp://127.0.0.1:4840/")
    with pytest.raises(CommandError, match="no line 'nope'"):
        call_command("collect", "nope", "--url", "opc.tcp://127.0.0.1:4840/", "--insecure")
