"""PLC security: Basic256Sha256 with a kept self-signed certificate, pinning, no unsecured sessions by default."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadCertificateUntrusted, BadUserAccessDenied, UaError

from plantsim.plc import PlcConfig, PlcServer, free_port
from twinops.opcua.certs import client_certificate_ensure
from twinops.opcua.client import connect_pinned

from .conftest import OPERATOR, PASSWORD, READER, READER_PASSWORD


def test_sign_and_encrypt_works_with_a_certificate_made_on_first_start_and_reused_after_restart(
    plc_config, connect, tmp_path: Path
) -> None:
    async def scenario() -> tuple[str, str]:
        cfg = plc_config()
        cert_dir = Path(cfg.cert_dir)
        assert not cert_dir.exists()
        async with PlcServer(cfg) as plc:
            assert plc.certificate is not None and plc.certificate.created
            first = plc.certificate_fingerprint
            cert_bytes = plc.certificate.der()
            endpoints = await Client(plc.endpoint_url).connect_and_get_server_endpoints()
            offered = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
            assert offered == {
                ("Basic256Sha256", ua.MessageSecurityMode.Sign),
                ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
            }
            async with connect(plc) as client:
                assert await client.get_node(plc.node_id("T_R")).read_value() > 50.0
        async with PlcServer(cfg) as plc:  # restart with the same directory
            assert plc.certificate is not None and not plc.certificate.created
            assert plc.certificate.der() == cert_bytes
            async with connect(plc, mode="SignAndEncrypt") as client:
                await client.get_node(plc.node_id("F")).write_value(21.0)
            async with connect(plc, mode="Sign") as client:
                assert await client.get_node(plc.node_id("F")).read_value() == 21.0
            return first, plc.certificate_fingerprint or ""

    first, second = asyncio.run(scenario())
    assert first == second


def test_unsecured_sessions_are_refused_unless_the_development_flag_allows_them(plc_config, monkeypatch) -> None:
    async def scenario() -> None:
        # anonymous reads allowed, so that it is the unsecured channel itself that gets nothing
        async with PlcServer(plc_config(allow_anonymous_read=True)) as plc:
            with pytest.raises(UaError):  # the client finds no None endpoint
                async with Client(plc.endpoint_url):
                    pass
            client = Client(plc.endpoint_url)
            with monkeypatch.context() as patch:
                # a client that skips endpoint matching and opens a session on an unsecured channel anyway
                patch.setattr(Client, "find_endpoint", staticmethod(lambda eps, mode, uri: _pretend_none(eps[0])))
                await client.connect()
                try:
                    with pytest.raises(BadUserAccessDenied):
                        await client.get_node(plc.node_id("T_R")).read_value()
                    with pytest.raises(BadUserAccessDenied):
                        await client.get_node(plc.node_id("F")).write_value(20.0)
                finally:
                    await client.disconnect()

        async with PlcServer(plc_config(allow_insecure=True, cert_dir=None, allow_anonymous_read=True)) as plc:
            assert plc.certificate_fingerprint is None
            async with Client(plc.endpoint_url) as client:
                assert await client.get_node(plc.node_id("T_R")).read_value() > 50.0

    asyncio.run(scenario())


def test_a_plc_without_a_certificate_directory_needs_the_explicit_insecure_flag() -> None:
    with pytest.raises(ValueError, match="cert_dir"):
        PlcServer(PlcConfig(line_id="vdv-reactor", operator_password="pw"))


def _pretend_none(endpoint: ua.EndpointDescription) -> ua.EndpointDescription:
    endpoint.SecurityMode = ua.MessageSecurityMode.None_
    endpoint.SecurityPolicyUri = "http://opcfoundation.org/UA/SecurityPolicy#None"
    return endpoint


def test_the_serve_command_prints_the_fingerprint_to_pin_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plantsim",
            "serve",
            "--line",
            "vdv-reactor",
            "--port",
            str(port),
            "--speed",
            "120",
            "--cert-dir",
            str(tmp_path / "certs"),
            "--operator-password",
            "pw-from-cli",
            "--trust-client",
            str(client_certificate_ensure(tmp_path / "client").cert),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        printed = []
        for line in proc.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if line.startswith("Ctrl-C stops."):
                break
        text = "".join(printed)
        fingerprint = re.search(r"sha256 ([0-9A-F:]{95})", text)
        assert fingerprint, text
        url = f"opc.tcp://127.0.0.1:{port}/twinops/vdv-reactor"

        async def operate() -> float:
            async with connect_pinned(
                url,
                fingerprint=fingerprint.group(1),
                username="operator",
                password="pw-from-cli",
                client_cert_dir=tmp_path / "client",
            ) as client:
                await client.get_node("ns=2;s=vdv-reactor.F").write_value(20.0)
                return await client.get_node("ns=2;s=vdv-reactor.F").read_value()

        assert asyncio.run(operate()) == 20.0
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read()  # type: ignore[union-attr]


def test_the_reader_account_reads_and_subscribes_but_cannot_write_setpoints_or_the_heartbeat(
    plc_config, connect
) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc, connect(plc, username=READER, password=READER_PASSWORD) as client:
            setpoint = client.get_node(plc.node_id("F"))
            before = await setpoint.read_value()
            assert await client.get_node(plc.node_id("T_R")).read_value() > 50.0
            with pytest.raises(BadUserAccessDenied):
                await setpoint.write_value(before + 1.0)
            with pytest.raises(BadUserAccessDenied):
                await client.get_node(plc.node_id("heartbeat")).write_value(ua.Variant(1, ua.VariantType.Int64))
            assert await setpoint.read_value() == before == plc.simulator.setpoints["F"]

    asyncio.run(scenario())


def test_a_client_certificate_not_on_the_plcs_trust_list_is_refused(plc_config, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc:
            assert plc.certificate_fingerprint is not None
            with pytest.raises(BadCertificateUntrusted):  # right account, unknown certificate
                async with connect_pinned(
                    plc.endpoint_url,
                    fingerprint=plc.certificate_fingerprint,
                    username=OPERATOR,
                    password=PASSWORD,
                    client_cert_dir=tmp_path / "a-stranger",
                ):
                    pass
            # discovery still answers anyone: that is how a client learns the endpoints and the certificate to pin
            endpoints = await Client(plc.endpoint_url).connect_and_get_server_endpoints()
            assert endpoints

    asyncio.run(scenario())


def test_anonymous_sessions_are_refused_unless_the_plc_allows_them(plc_config, connect) -> None:
    async def scenario() -> None:
        async with PlcServer(plc_config()) as plc:
            assert not plc.config.allow_anonymous_read
            with pytest.raises(BadUserAccessDenied):
                async with connect(plc, username=None, password=None) as client:
                    await client.get_node(plc.node_id("T_R")).read_value()

    asyncio.run(scenario())


def test_repeated_wrong_passwords_make_the_source_wait_longer_and_longer(plc_config, connect) -> None:
    async def attempt(plc: PlcServer, password: str) -> bool:
        try:
            async with connect(plc, username=READER, password=password):
                return True
        except BadUserAccessDenied:
            return False

    async def scenario() -> None:
        async with PlcServer(plc_config(login_free_failures=2, login_delay_s=1.5)) as plc:
            assert not await attempt(plc, "guess-1")
            assert not await attempt(plc, "guess-2")
            assert await attempt(plc, READER_PASSWORD)  # within the free failures: checked at once; clears the count
            for guess in ("guess-3", "guess-4", "guess-5"):
                assert not await attempt(plc, guess)
            # the third failure in a row costs a 1.5 s wait: even the right password is not checked meanwhile
            assert not await attempt(plc, READER_PASSWORD)
            await asyncio.sleep(1.6)
            assert not await attempt(plc, "guess-6")  # checked (and wrong): the next wait is twice as long
            await asyncio.sleep(1.6)
            assert not await attempt(plc, READER_PASSWORD)  # 1.6 s later, more than the first wait: still refused
            await asyncio.sleep(1.6)
            assert await attempt(plc, READER_PASSWORD)

    asyncio.run(scenario())
