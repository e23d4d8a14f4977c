"""A spec's `plc` block may say where the PLC is (endpoint, pinned certificate, accounts); a bad one names its field."""

from __future__ import annotations

import pytest

from twinops.lines.spec import SpecError, SpecProblem, spec_parse
from twinops.releases.plc import plc_endpoint

from .conftest import SMALL_SPEC

FINGERPRINT = ":".join(["AB"] * 32)
NODES = """\
plc:
  mode_node: ns=2;s=demo.mode
  heartbeat_node: ns=2;s=demo.heartbeat
  fallback_active_node: ns=2;s=demo.fallback_active
"""
ENDPOINT = f"""\
  endpoint: opc.tcp://plc-7.plant.example:4840/demo
  server_fingerprint: "{FINGERPRINT}"
  write_account: twinops-release
  read_account: twinops-collector
"""


def with_plc(block: str) -> str:
    return SMALL_SPEC + block


def problems(text: str) -> dict[str, SpecProblem]:
    with pytest.raises(SpecError) as caught:
        spec_parse(text=text, filename="line.yaml")
    return {p.field: p for p in caught.value.problems}


def test_a_plc_block_with_its_endpoint_parses_and_says_how_to_reach_the_plc() -> None:
    parsed = spec_parse(text=with_plc(NODES + ENDPOINT), filename="line.yaml")
    endpoint = plc_endpoint(parsed.document)
    assert endpoint is not None
    assert endpoint.url == "opc.tcp://plc-7.plant.example:4840/demo"
    assert (endpoint.fingerprint, endpoint.certificate) == (FINGERPRINT, None)
    assert (endpoint.write_account, endpoint.read_account, endpoint.security_mode) == (
        "twinops-release",
        "twinops-collector",
        "SignAndEncrypt",
    )


def test_specs_without_an_endpoint_or_without_a_plc_block_stay_valid_and_name_no_endpoint() -> None:
    for text in (SMALL_SPEC, with_plc(NODES)):
        assert plc_endpoint(spec_parse(text=text, filename="line.yaml").document) is None


def test_an_endpoint_that_is_no_opc_tcp_url_is_refused_at_its_line() -> None:
    text = with_plc(NODES + ENDPOINT.replace("opc.tcp://plc-7.plant.example:4840/demo", "http://plc-7/demo"))
    found = problems(text)
    assert list(found) == ["plc.endpoint"]
    assert "must be an OPC UA endpoint such as opc.tcp://" in found["plc.endpoint"].reason
    assert found["plc.endpoint"].line == text.splitlines().index("  endpoint: http://plc-7/demo") + 1


def test_an_endpoint_needs_a_pinned_certificate_and_a_write_account() -> None:
    text = with_plc(NODES + "  endpoint: opc.tcp://10.0.0.7:4840\n")
    found = problems(text)
    assert set(found) == {"plc.server_fingerprint", "plc.write_account"}
    assert "server_fingerprint or server_certificate" in found["plc.server_fingerprint"].reason
    assert "may write setpoints" in found["plc.write_account"].reason


def test_a_fingerprint_and_a_certificate_file_together_are_refused() -> None:
    found = problems(with_plc(NODES + ENDPOINT + "  server_certificate: plc-certs/demo.der\n"))
    assert list(found) == ["plc.server_certificate"]
    assert "not both" in found["plc.server_certificate"].reason


def test_a_malformed_fingerprint_is_refused() -> None:
    found = problems(with_plc(NODES + ENDPOINT.replace(FINGERPRINT, "AB:CD")))
    assert list(found) == ["plc.server_fingerprint"]
    assert "64 hex digits" in found["plc.server_fingerprint"].reason


def test_the_collector_may_not_log_in_with_the_write_account() -> None:
    found = problems(
        with_plc(NODES + ENDPOINT.replace("read_account: twinops-collector", "read_account: twinops-release"))
    )
    assert list(found) == ["plc.read_account"]
    assert "must differ from write_account" in found["plc.read_account"].reason


def test_security_weaker_than_sign_and_encrypt_is_refused() -> None:
    found = problems(with_plc(NODES + ENDPOINT + "  security_mode: None\n"))
    assert list(found) == ["plc.security_mode"]
    assert "SignAndEncrypt" in found["plc.security_mode"].reason


def test_a_password_in_the_spec_is_refused_as_an_unknown_field() -> None:
    found = problems(with_plc(NODES + ENDPOINT + "  write_password: hunter2\n"))
    assert list(found) == ["plc.write_password"]
    assert found["plc.write_password"].reason.startswith("unknown field")


def test_accounts_or_a_certificate_without_an_endpoint_are_refused() -> None:
    found = problems(with_plc(NODES + f'  server_fingerprint: "{FINGERPRINT}"\n  write_account: op\n'))
    assert set(found) == {"plc.server_fingerprint", "plc.write_account"}
    assert all("only with an endpoint" in p.reason for p in found.values())
