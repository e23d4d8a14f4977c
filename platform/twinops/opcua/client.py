"""Connect to an OPC UA server whose certificate is pinned by its SHA-256 fingerprint; read and write values.

`connect_pinned` is the production path: Basic256Sha256 (SignAndEncrypt by default), the platform's own client
certificate, a user login, and no byte sent to a server whose certificate is not the pinned one. `connect_insecure`
(security mode None) exists for development servers only.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from twinops.opcua.certs import CLIENT_APP_URI, certificate_fingerprint, client_certificate_ensure, fingerprints_match

log = logging.getLogger(__name__)
MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class CertificatePinError(Exception):
    """The server presented a certificate other than the pinned one; nothing was sent to it."""


async def server_certificate(url: str, *, mode: str = "SignAndEncrypt", timeout_s: float = 10.0) -> bytes:
    """Return the DER certificate the server advertises for Basic256Sha256 in mode (discovery, no session)."""
    probe = Client(url, timeout=timeout_s)
    endpoints = await probe.connect_and_get_server_endpoints()
    for ep in endpoints:
        if ep.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI and ep.SecurityMode == MODES[mode]:
            return bytes(ep.ServerCertificate)
    raise CertificatePinError(f"{url} offers no Basic256Sha256 {mode} endpoint")


@asynccontextmanager
async def connect_pinned(
    url: str,
    *,
    fingerprint: str,
    client_cert_dir: Path,
    username: str | None = None,
    password: str | None = None,
    mode: str = "SignAndEncrypt",
    timeout_s: float = 10.0,
) -> AsyncIterator[Client]:
    """Connect with Basic256Sha256 only if the server's certificate has the pinned fingerprint; yield the client."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    der = await server_certificate(url, mode=mode, timeout_s=timeout_s)
    actual = certificate_fingerprint(der)
    if not fingerprints_match(actual, fingerprint):
        raise CertificatePinError(f"server certificate {actual} does not match the pinned fingerprint {fingerprint}")

    async def still_pinned(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        # the certificate in CreateSession must be the pinned one too (no swap between discovery and session)
        if not fingerprints_match(certificate_fingerprint(cert.public_bytes(Encoding.DER)), fingerprint):
            raise CertificatePinError("server certificate changed between discovery and session")

    mine = client_certificate_ensure(Path(client_cert_dir))
    client = Client(url, timeout=timeout_s)
    client.application_uri = CLIENT_APP_URI
    client.certificate_validator = still_pinned
    await client.set_security(
        SecurityPolicyBasic256Sha256, str(mine.cert), str(mine.key), server_certificate=der, mode=MODES[mode]
    )
    _login(client, username, password)
    await client.connect()
    try:
        yield client
    finally:
        await _disconnect_quietly(client)


@asynccontextmanager
async def connect_insecure(
    url: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 10.0
) -> AsyncIterator[Client]:
    """Connect with security mode None (development servers only); yield the client."""
    client = Client(url, timeout=timeout_s)
    _login(client, username, password)
    await client.connect()
    try:
        yield client
    finally:
        await _disconnect_quietly(client)


async def read_values(client: Client, node_ids: Sequence[str]) -> dict[str, Any]:
    """Read the current values of the nodes in one request; return them by node id."""
    values = await client.read_values([client.get_node(n) for n in node_ids])
    return dict(zip(node_ids, values, strict=True))


async def write_values(client: Client, values: Mapping[str, float]) -> None:
    """Write values in one request, each in its node's own data type; raise if the server refuses any."""
    nodes = [client.get_node(n) for n in values]
    types = [await node.read_data_type_as_variant_type() for node in nodes]
    variants = [ua.Variant(v, t) for v, t in zip(values.values(), types, strict=True)]
    await client.write_values(nodes, variants)


def _login(client: Client, username: str | None, password: str | None) -> None:
    if username is not None:
        client.set_user(username)
        client.set_password(password or "")


async def _disconnect_quietly(client: Client) -> None:
    try:
        await client.disconnect()
    except Exception as e:  # the connection is gone already; nothing to tell
        log.debug("disconnect: %s", e)
