"""The processes that serve a line's PLC (its collector and release agent), from one definition of how to reach it.

`twinops up` reads each line's endpoint from its spec (`plc.endpoint`, the pinned certificate, the accounts) and
the passwords from the environment or a 0600 file in TWINOPS_HOME; `twinops demo` describes its simulated PLCs the
same way. Both start what `plc_children` returns. Passwords never travel on a command line, in a spec or in the
database: they reach the children in their environment.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from twinops.config.embedded import data_home
from twinops.lines.models import Line
from twinops.lines.selectors import line_list
from twinops.opcua.certs import certificate_fingerprint
from twinops.processes import twinops_cmd
from twinops.releases.plc import NO_ENDPOINT, NO_PLC, PlcEndpoint, plc_endpoint, plc_nodes

SECRETS_DIR = "plc-secrets"  # under TWINOPS_HOME: <line>.write-password, <line>.read-password


class PlcConfigError(ValueError):
    """A line's PLC cannot be served as configured: a password or the pinned certificate is missing or unsafe."""


@dataclass(frozen=True)
class PlcLink:
    """Everything the processes serving one line's PLC need, passwords included (kept out of command lines)."""

    line_key: str
    url: str
    fingerprint: str  # SHA-256 of the PLC's certificate, pinned
    write_account: str  # the release agent's login, allowed to write setpoints
    write_password: str = field(repr=False)
    read_account: str | None = None  # the collector's read-only login; None: anonymous
    read_password: str | None = field(default=None, repr=False)
    cert_dir: Path | None = None  # this client's certificate and key; None: <TWINOPS_HOME>/opcua
    speed: float = 1.0  # plant seconds per wall second (an accelerated simulated plant)
    release: bool = True  # False: collect only (the spec has no mode, heartbeat and fallback nodes)


@dataclass(frozen=True)
class Child:
    """A process to start: its name (and log file), command line and the environment it adds (its password)."""

    name: str
    cmd: list[str]
    env: dict[str, str] = field(repr=False)


def plc_children(link: PlcLink) -> list[Child]:
    """Return the line's collector (read-only account) and, if it releases, its release agent (write account)."""
    common = ["--url", link.url, "--fingerprint", link.fingerprint]
    if link.cert_dir is not None:
        common += ["--cert-dir", str(link.cert_dir)]
    collect = twinops_cmd("collect", link.line_key, *common)
    collect_env = {}
    if link.read_account:
        collect += ["--username", link.read_account]
        collect_env["TWINOPS_OPCUA_PASSWORD"] = link.read_password or ""
    children = [Child(f"collector {link.line_key}", collect, collect_env)]
    if link.release:
        agent = twinops_cmd(
            "release-agent", link.line_key, *common, "--username", link.write_account, "--speed", str(link.speed)
        )
        children.append(
            Child(f"release agent {link.line_key}", agent, {"TWINOPS_OPCUA_WRITE_PASSWORD": link.write_password})
        )
    return children


def plc_children_all() -> tuple[list[Child], list[tuple[str, str]]]:
    """Return the collector and release agent of every line with a PLC endpoint, and (line key, why not) for the others."""
    links, without = plc_links()
    return [child for link in links for child in plc_children(link)], without


def plc_links() -> tuple[list[PlcLink], list[tuple[str, str]]]:
    """Return the link of every line whose spec names a PLC endpoint, and (line key, why not) for each other line.

    Raises PlcConfigError listing every configured line whose password or certificate is missing, one per line.
    """
    links, without, errors = [], [], []
    for line in line_list():
        try:
            link = plc_link_of(line)
        except PlcConfigError as e:
            errors.append(str(e))
            continue
        if link is not None:
            links.append(link)
        else:
            spec = line.current_spec
            without.append((line.key, NO_ENDPOINT if spec and plc_nodes(spec.document) else NO_PLC))
    if errors:
        raise PlcConfigError("\n".join(errors))
    return links, without


def plc_link_of(line: Line) -> PlcLink | None:
    """Return how to reach the line's PLC from its current spec, or None when the spec names no endpoint.

    Raises PlcConfigError naming the environment variable or file when a password is missing, or the certificate
    file when it cannot be read.
    """
    spec = line.current_spec
    endpoint = plc_endpoint(spec.document) if spec is not None else None
    if spec is None or endpoint is None:
        return None
    return PlcLink(
        line_key=line.key,
        url=endpoint.url,
        fingerprint=_pinned_fingerprint(line.key, endpoint),
        write_account=endpoint.write_account,
        write_password=plc_password(line.key, "write", endpoint.write_account),
        read_account=endpoint.read_account,
        read_password=plc_password(line.key, "read", endpoint.read_account) if endpoint.read_account else None,
        release=plc_nodes(spec.document) is not None,
    )


def plc_password(line_key: str, kind: str, account: str) -> str:
    """Return the password of a line's PLC account (`kind` write or read): its variable, else its 0600 file."""
    var = password_variable(line_key, kind)
    if os.environ.get(var):
        return os.environ[var]
    path = password_file(line_key, kind)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise PlcConfigError(
            f"no password for the {kind} account {account!r} of line {line_key}'s PLC: "
            f"set {var} or write it to {path} (mode 0600)"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PlcConfigError(
            f"{path} (the PLC password of line {line_key}) is open to other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
        )
    password = path.read_text().strip()
    if not password:
        raise PlcConfigError(f"{path} (the PLC password of line {line_key}) is empty")
    return password


def password_variable(line_key: str, kind: str) -> str:
    """Return the environment variable holding a line's PLC password, e.g. TWINOPS_PLC_HEAT_TRAIN_WRITE_PASSWORD."""
    return f"TWINOPS_PLC_{line_key.upper().replace('-', '_')}_{kind.upper()}_PASSWORD"


def password_file(line_key: str, kind: str) -> Path:
    """Return the file that may hold a line's PLC password (mode 0600), e.g. plc-secrets/heat-train.write-password."""
    return data_home() / SECRETS_DIR / f"{line_key}.{kind}-password"


def _pinned_fingerprint(line_key: str, endpoint: PlcEndpoint) -> str:
    """Return the pinned fingerprint: the spec's, or that of the certificate file it names."""
    if endpoint.fingerprint:
        return endpoint.fingerprint
    path = Path(endpoint.certificate or "")
    path = path if path.is_absolute() else data_home() / path
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PlcConfigError(
            f"line {line_key}: cannot read plc.server_certificate {path} ({e.strerror or e})"
        ) from None
    try:
        der = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER) if b"-----BEGIN" in data else data
        x509.load_der_x509_certificate(der)
    except ValueError:
        raise PlcConfigError(
            f"line {line_key}: plc.server_certificate {path} is not a DER or PEM certificate"
        ) from None
    return certificate_fingerprint(der)
