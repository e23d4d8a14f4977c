"""`twinops up` serves each line whose spec names its PLC: a collector and a release agent, passwords kept out of sight.

Lines without a PLC get no process and say so, with who can act; a missing or exposed password stops start-up
naming the variable and the file.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.core.management import call_command
from django.test import Client

from twinops.opcua.certs import certificate_fingerprint, client_certificate_ensure
from twinops.releases.plc import NO_ENDPOINT, NO_PLC
from twinops.releases.plc_link import PlcConfigError, plc_children_all, plc_links

FINGERPRINT = ":".join(["5A"] * 32)
WRITE_VAR = "TWINOPS_PLC_PRESS_LINE_WRITE_PASSWORD"
READ_VAR = "TWINOPS_PLC_PRESS_LINE_READ_PASSWORD"


def spec(key: str, plc: str = "") -> str:
    return f"""\
schema_version: 1
line: {{id: {key}, name: {key}, sample_period_s: 10}}
tags:
  - {{name: T, role: CV, unit: degC, physical_range: [0, 200], opcua_node: "ns=2;s={key}.T"}}
  - {{name: F, role: MV, unit: m3/h, physical_range: [0, 50], limits: {{low: 5, high: 40}}, opcua_node: "ns=2;s={key}.F"}}
{plc}"""


NODES = """\
plc:
  mode_node: ns=2;s=x.mode
  heartbeat_node: ns=2;s=x.heartbeat
  fallback_active_node: ns=2;s=x.fallback_active
"""
ENDPOINT = f"""\
  endpoint: opc.tcp://plc-7.plant.example:4840/press
  server_fingerprint: "{FINGERPRINT}"
  write_account: twinops-release
  read_account: twinops-collector
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TWINOPS_HOME of the test's own for the secret files; no PLC password in the environment."""
    monkeypatch.setenv("TWINOPS_HOME", str(tmp_path))
    for var in (WRITE_VAR, READ_VAR):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def onboard(key: str, plc: str = "") -> Any:
    from twinops.onboarding.services import line_onboard

    return line_onboard(text=spec(key, plc), filename=f"{key}.yaml", actor="system:test").line


def secret(home: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = home / "plc-secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


@pytest.mark.django_db
def test_a_configured_line_gets_a_collector_and_a_release_agent_and_the_others_none(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    onboard("press-line", NODES + ENDPOINT)
    onboard("paint-line")  # no plc block at all
    onboard("kiln-line", NODES)  # nodes, but no endpoint: run by hand or by the demo
    monkeypatch.setenv(WRITE_VAR, "write-secret")
    monkeypatch.setenv(READ_VAR, "read-secret")

    children, without = plc_children_all()

    assert [c.name for c in children] == ["collector press-line", "release agent press-line"]
    collector, agent = children
    assert agent.cmd[-10:] == [
        "release-agent",
        "press-line",
        "--url",
        "opc.tcp://plc-7.plant.example:4840/press",
        "--fingerprint",
        FINGERPRINT,
        "--username",
        "twinops-release",
        "--speed",
        "1.0",
    ]
    assert agent.env == {"TWINOPS_OPCUA_WRITE_PASSWORD": "write-secret"}
    assert collector.cmd[collector.cmd.index("--username") + 1] == "twinops-collector"  # read-only, not the writer
    assert collector.env == {"TWINOPS_OPCUA_PASSWORD": "read-secret"}
    assert not any("secret" in arg for c in children for arg in c.cmd), "a password on a command line shows in ps"
    assert dict(without) == {"kiln-line": NO_ENDPOINT, "paint-line": NO_PLC}


@pytest.mark.django_db
def test_a_missing_write_password_names_the_variable_and_the_file(home: Path) -> None:
    onboard("press-line", NODES + ENDPOINT)
    secret(home, "press-line.read-password", "read-secret")
    with pytest.raises(PlcConfigError) as caught:
        plc_links()
    message = str(caught.value)
    assert WRITE_VAR in message
    assert str(home / "plc-secrets" / "press-line.write-password") in message
    assert "'twinops-release'" in message and "press-line" in message


@pytest.mark.django_db
def test_passwords_come_from_0600_files_and_a_file_others_can_read_is_refused(home: Path) -> None:
    onboard("press-line", NODES + ENDPOINT)
    secret(home, "press-line.write-password", "write-secret")
    exposed = secret(home, "press-line.read-password", "read-secret", mode=0o644)
    with pytest.raises(PlcConfigError, match=r"open to other users \(mode 0644\): chmod 600 it") as caught:
        plc_links()
    assert str(exposed) in str(caught.value)

    exposed.chmod(0o600)
    (link,), _ = plc_links()
    assert (link.write_password, link.read_password) == ("write-secret", "read-secret")
    assert "secret" not in repr(link)  # logs and tracebacks never print them


@pytest.mark.django_db
def test_a_certificate_file_is_pinned_by_its_fingerprint_and_a_missing_one_is_named(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    der = client_certificate_ensure(home / "certs").cert.read_bytes()
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    (home / "plc.pem").write_bytes(pem)
    block = ENDPOINT.replace(f'server_fingerprint: "{FINGERPRINT}"', "server_certificate: plc.pem")
    onboard("press-line", NODES + block)
    monkeypatch.setenv(WRITE_VAR, "w")
    monkeypatch.setenv(READ_VAR, "r")
    (link,), _ = plc_links()
    assert link.fingerprint == certificate_fingerprint(der)

    (home / "plc.pem").unlink()
    with pytest.raises(PlcConfigError, match=r"line press-line: cannot read plc.server_certificate .*plc\.pem"):
        plc_links()


@pytest.mark.django_db
def test_release_status_of_a_line_without_plc_says_who_can_add_one(home: Path) -> None:
    onboard("paint-line")
    out = io.StringIO()
    call_command("release", "status", "paint-line", stdout=out)
    assert "no PLC configured" in out.getvalue() and "the data team can add one in the spec" in out.getvalue()

    onboard("press-line", NODES)
    out = io.StringIO()
    call_command("release", "status", "press-line", stdout=out)
    assert "no PLC configured" not in out.getvalue()


@pytest.mark.django_db
def test_the_line_page_says_when_no_plc_is_configured_and_who_can_add_one(home: Path, make_user: Any) -> None:
    onboard("paint-line")
    onboard("press-line", NODES)
    client = Client()
    client.force_login(make_user("engineer", username="erin"))

    page = client.get("/lines/paint-line/").content.decode()
    assert 'id="no-plc"' in page and "No PLC configured" in page and "the data team can add one in the spec" in page
    assert "/lines/paint-line/versions/" in page
    assert 'id="no-plc"' not in client.get("/lines/press-line/").content.decode()
