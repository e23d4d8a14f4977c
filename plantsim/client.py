"""Platform-side OPC UA client that pins the server certificate by its SHA-256 fingerprint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509

from plantsim.certs import certificate_fingerprint, ensure_certificate, fingerprints_match

CLIENT_APP_URI = "urn:twinops:platform:opcua-client"
_MODES = {"Sign": ua.MessageSecurityMode.Sign, "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}


class CertificatePinError(Exception):
    """The server presented a certificate other than the pinned one; nothing was sent to it."""


async def server_certificate(url: str, *, mode: str = "SignAndEncrypt", timeout_s: float = 10.0) -> bytes:
    """Return the DER certificate the server advertises for Basic256Sha256 in mode (discovery, no session)."""
    probe = Client(url, timeout=timeout_s)
    endpoints = await probe.connect_and_get_server_endpoints()
    for ep in endpoints:
        if ep.SecurityPolicyUri == SecurityPolicyBasic256Sha256.URI and ep.SecurityMode == _MODES[mode]:
            return bytes(ep.ServerCertificate)
    raise CertificatePinError(f"{url} offers no Basic256Sha256 {mode} endpoint")


@asynccontextmanager
async def connect_pinned(url: str, *, fingerprint: str, client_cert_dir: Path, username: str | None = None,
                         password: str | None = None, mode: str = "SignAndEncrypt",
                         timeout_s: float = 10.0) -> AsyncIterator[Client]:
    """Connect with Basic256Sha256 only if the server's certificate has the pinned fingerprint; yield the client."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    der = await server_certificate(url, mode=mode, timeout_s=timeout_s)
    actual = certificate_fingerprint(der)
    if not fingerprints_match(actual, fingerprint):
        raise CertificatePinError(f"server certificate {actual} does not match the pinned fingerprint {fingerprint}")

    async def still_pinned(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        # the certificate in CreateSession must be the one pinned too (a swap between discovery and session)
        from cryptography.hazmat.primitives.serialization import Encoding

        if not fingerprints_match(certificate_fingerprint(cert.public_bytes(Encoding.DER)), fingerprint):
            raise CertificatePinError("server certificate changed between discovery and session")

    mine = ensure_certificate(Path(client_cert_dir), name="twinops-client", app_uri=CLIENT_APP_URI, server=False)
    client = Client(url, timeout=timeout_s)
    client.application_uri = CLIENT_APP_URI
    client.certificate_validator = still_pinned
    await client.set_security(SecurityPolicyBasic256Sha256, str(mine.cert), str(mine.key), server_certificate=der,
                              mode=_MODES[mode])
    if username is not None:
        client.set_user(username)
        client.set_password(password or "")
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()
