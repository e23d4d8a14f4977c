"""The platform's OPC UA client against a real secured PLC: pinning, its own certificate, typed reads and writes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from asyncua.ua.uaerrors import BadUserAccessDenied

from plantsim.plc import PlcConfig, PlcServer
from twinops.opcua.certs import client_certificate_ensure
from twinops.opcua.client import CertificatePinError, connect_pinned, read_values, write_values

OPERATOR, PASSWORD = "operator", "s3cret-operator-pw"


@pytest.fixture(autouse=True)
def _quiet_asyncua(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="asyncua")


def _plc(tmp_path: Path, cert_dir: str = "server-certs", *, allow_anonymous_read: bool = False) -> PlcServer:
    return PlcServer(
        PlcConfig(
            line_id="vdv-reactor",
            operator_user=OPERATOR,
            operator_password=PASSWORD,
            port=0,
            cert_dir=tmp_path / cert_dir,
            trusted_client_certs=(client_certificate_ensure(tmp_path / "client").cert,),  # the tests' client
            allow_anonymous_read=allow_anonymous_read,
            speed=600.0,
            tick_s=0.05,
            heartbeat_timeout_s=60.0,
            seed=7,
        )
    )


def test_pinning_refuses_a_server_whose_certificate_has_another_fingerprint(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _plc(tmp_path) as plc:
            wrong = "00:" * 31 + "00"
            with pytest.raises(CertificatePinError):
                async with connect_pinned(
                    plc.endpoint_url,
                    fingerprint=wrong,
                    username="operator",
                    password="s3cret-operator-pw",
                    client_cert_dir=tmp_path / "client",
                ):
                    pass
            # another PLC (another certificate) behind the expected fingerprint is refused too
            async with _plc(tmp_path, "other-certs") as impostor:
                assert impostor.certificate_fingerprint != plc.certificate_fingerprint
                with pytest.raises(CertificatePinError):
                    async with connect_pinned(
                        impostor.endpoint_url,
                        fingerprint=plc.certificate_fingerprint or "",
                        client_cert_dir=tmp_path / "client",
                    ):
                        pass

    asyncio.run(scenario())


def test_an_operator_writes_setpoints_in_each_nodes_own_type_and_reads_them_back(tmp_path: Path) -> None:
    async def scenario() -> dict[str, object]:
        async with _plc(tmp_path) as plc:
            f, heartbeat = plc.node_id("F"), plc.node_id("heartbeat")  # a Double and an Int64 node
            async with connect_pinned(
                plc.endpoint_url,
                fingerprint=plc.certificate_fingerprint or "",
                client_cert_dir=tmp_path / "client",
                username=OPERATOR,
                password=PASSWORD,
            ) as client:
                await write_values(client, {f: 21.5, heartbeat: 3})
                return await read_values(client, [f, heartbeat])

    assert asyncio.run(scenario()) == {"ns=2;s=vdv-reactor.F": 21.5, "ns=2;s=vdv-reactor.heartbeat": 3}


def test_an_anonymous_session_reads_but_its_writes_are_refused(tmp_path: Path) -> None:
    async def scenario() -> float:
        async with _plc(tmp_path, allow_anonymous_read=True) as plc:  # off by default
            async with connect_pinned(
                plc.endpoint_url, fingerprint=plc.certificate_fingerprint or "", client_cert_dir=tmp_path / "client"
            ) as client:
                with pytest.raises(BadUserAccessDenied):
                    await write_values(client, {plc.node_id("F"): 30.0})
                return (await read_values(client, [plc.node_id("T_R")]))[plc.node_id("T_R")]

    assert asyncio.run(scenario()) > 50.0


def test_the_client_makes_its_certificate_once_and_keeps_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with _plc(tmp_path, allow_anonymous_read=True) as plc:
            for _ in range(2):
                async with connect_pinned(
                    plc.endpoint_url, fingerprint=plc.certificate_fingerprint or "", client_cert_dir=tmp_path / "client"
                ):
                    pass

    asyncio.run(scenario())
    cert = tmp_path / "client" / "twinops-client-cert.der"
    first = cert.read_bytes()
    asyncio.run(scenario())
    assert cert.read_bytes() == first and (tmp_path / "client" / "twinops-client-key.pem").stat().st_mode & 0o077 == 0
