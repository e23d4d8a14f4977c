"""Helpers for plantsim tests: PLC configs on free ports and pinned operator/reader clients (the platform's own)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client

from plantsim.plc import PlcConfig, PlcServer
from twinops.opcua.certs import client_certificate_ensure
from twinops.opcua.client import connect_pinned

OPERATOR = "operator"
PASSWORD = "s3cret-operator-pw"
READER = "collector"
READER_PASSWORD = "s3cret-reader-pw"


@pytest.fixture
def plc_config(tmp_path: Path) -> Callable[..., PlcConfig]:
    """Return a factory of PLC configs: free port, certs under tmp_path (the test client's trusted), fast time."""

    def make(**overrides: Any) -> PlcConfig:
        client = client_certificate_ensure(tmp_path / "client-certs")  # what `connect` presents
        base: dict[str, Any] = dict(
            line_id="vdv-reactor",
            operator_user=OPERATOR,
            operator_password=PASSWORD,
            reader_user=READER,
            reader_password=READER_PASSWORD,
            trusted_client_certs=(client.cert,),
            port=0,
            cert_dir=tmp_path / "server-certs",
            speed=600.0,
            tick_s=0.05,
            heartbeat_timeout_s=60.0,
            seed=7,
        )
        base.update(overrides)
        return PlcConfig(**base)

    return make


@pytest.fixture
def connect(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[Client]]:
    """Return a function opening a pinned SignAndEncrypt session to a PLC (operator unless told otherwise)."""

    def open_session(
        plc: PlcServer,
        *,
        username: str | None = OPERATOR,
        password: str | None = PASSWORD,
        mode: str = "SignAndEncrypt",
    ) -> AbstractAsyncContextManager[Client]:
        assert plc.certificate_fingerprint is not None
        return connect_pinned(
            plc.endpoint_url,
            fingerprint=plc.certificate_fingerprint,
            username=username,
            password=password,
            client_cert_dir=tmp_path / "client-certs",
            mode=mode,
        )

    return open_session
