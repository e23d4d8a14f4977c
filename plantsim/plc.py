"""The PLC of a line: an OPC UA server that runs the simulator in (accelerated) real time.

Nodes (string ids in namespace `urn:twinops:plantsim`, index 2): `<line>.<tag>` per tag (MV nodes are the writable
setpoints), `<line>.<mv>.pv` actuator positions, `<line>.mode` (LOCAL/REMOTE), `<line>.heartbeat` (written by the
platform), `<line>.fallback_active`, `<line>.message`, `<line>.sim_time`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyFactory, SecurityPolicyNone

from plantsim.certs import CertificateFiles, ensure_certificate
from plantsim.opcua_access import (
    ClientTrustList,
    DiscoveryOnlyRuleset,
    GuardedAttributeService,
    GuardedInternalServer,
    LoginThrottle,
    OperatorUserManager,
    PlcRuleset,
    transfer_rebinding,
)
from plantsim.realism import Realism
from plantsim.simulator import LineSimulator, build_simulator

NAMESPACE_URI = "urn:twinops:plantsim"
MODES = ("LOCAL", "REMOTE")
_log = logging.getLogger(__name__)
_INT_TYPES = {
    ua.VariantType.Int16,
    ua.VariantType.Int32,
    ua.VariantType.Int64,
    ua.VariantType.UInt16,
    ua.VariantType.UInt32,
    ua.VariantType.UInt64,
}


@dataclass(frozen=True)
class PlcConfig:
    """How one line's PLC is served."""

    line_id: str
    operator_password: str  # password of the operator account; no default password ships
    operator_user: str = "operator"  # the account allowed to write setpoints and the heartbeat
    reader_user: str = "collector"  # the read-only account (read, browse, subscribe): what a collector needs
    reader_password: str | None = None  # None: no reader account
    host: str = "127.0.0.1"
    port: int = 4840  # 0: pick a free port at start
    cert_dir: Path | None = None  # server certificate generated here on first start, reused afterwards
    # DER client certificates allowed to open a secured session; every other certificate is refused (none: all are)
    trusted_client_certs: tuple[Path, ...] = ()
    allow_insecure: bool = False  # development only: also offer security mode None
    allow_anonymous_read: bool = False  # anonymous sessions may read/browse/subscribe (never write)
    login_free_failures: int = 3  # failed logins from one address before each further one costs a wait
    login_delay_s: float = 1.0  # the first wait; it doubles with each further failure, up to a minute
    speed: float = 60.0  # simulated seconds per wall second
    tick_s: float | None = None  # wall seconds between publications; default min(1, sample period / speed)
    heartbeat_timeout_s: float = 10.0  # wall seconds without a heartbeat change (in REMOTE) before fallback
    initial_mode: str = "REMOTE"
    seed: int = 0
    realism: Realism | None = None
    start_time: datetime | None = None  # simulated clock origin (UTC); default: wall clock at start
    # Append each published CV/DV value that changed (what a data-change subscription reports) to this file, one
    # `tag<TAB>source timestamp<TAB>value<TAB>wall-clock time` line each, written out at every publication: the
    # record `bench chaos` checks the stored samples against. None: no log.
    published_log: Path | None = None


class _PlcOpcServer(Server):
    """asyncua server that, unless insecure is allowed, confines unsecured channels to discovery."""

    def __init__(self, *args: Any, discovery_only_none: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._discovery_only_none = discovery_only_none

    async def _setup_server_nodes(self) -> None:
        await super()._setup_server_nodes()
        if self._discovery_only_none:
            # asyncua otherwise lets a client open a session over the default unsecured channel
            self._policies.append(
                SecurityPolicyFactory(
                    SecurityPolicyNone, ua.MessageSecurityMode.None_, permission_ruleset=DiscoveryOnlyRuleset()
                )
            )


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class PlcServer:
    """One line's OPC UA PLC; use `async with PlcServer(cfg) as plc:` or `await start()` / `await stop()`."""

    def __init__(
        self, config: PlcConfig, *, simulator: LineSimulator | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if config.initial_mode not in MODES:
            raise ValueError(f"initial_mode must be one of {MODES}, got {config.initial_mode!r}")
        if config.cert_dir is None and not config.allow_insecure:
            raise ValueError("cert_dir is required: the PLC only offers Basic256Sha256 unless allow_insecure=True")
        if not config.speed > 0:
            raise ValueError(f"speed must be positive, got {config.speed!r}")
        self.config = config
        self.simulator = simulator or build_simulator(config.line_id, seed=config.seed, realism=config.realism)
        self.line = self.simulator.line
        self._clock = clock
        self.tick_s = config.tick_s or min(1.0, self.line.sample_period_s / config.speed)
        self.mode = config.initial_mode
        self.fallback_active = False
        self.message = "started"
        self.certificate: CertificateFiles | None = None
        self.port = config.port
        self.values_published = 0  # node value updates written since start
        # CV/DV tag values published that differ from the tag's previous one (what an OPC UA data-change
        # subscription to the line's tags reports: a stuck sensor repeating its value, or a failed one staying failed
        # (NaN, BadSensorFailure), is no change)
        self.tag_values_changed = 0
        self._last_values: dict[str, float] = {}
        self._published_log: TextIO | None = None
        self._server: _PlcOpcServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._mv_nodes: dict[ua.NodeId, str] = {}
        self._heartbeat_value: Any = None
        self._heartbeat_seen_at = 0.0
        self._sim_origin = datetime.now(UTC)

    # ---- public API -------------------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """Return the opc.tcp URL clients connect to."""
        return f"opc.tcp://{self.config.host}:{self.port}/twinops/{self.line.id}"

    @property
    def certificate_fingerprint(self) -> str | None:
        """Return the SHA-256 fingerprint of the server certificate (None when serving insecure only)."""
        return self.certificate.fingerprint() if self.certificate else None

    def node_id(self, name: str) -> str:
        """Return the string node id of a tag or line-level node (e.g. 'F', 'mode', 'heartbeat')."""
        return f"ns=2;s={self.line.id}.{name}"

    async def start(self) -> None:
        """Build the address space, open the endpoint and start the real-time loop."""
        cfg = self.config
        if self.port == 0:
            self.port = free_port(cfg.host)
        users = OperatorUserManager(
            {cfg.operator_user: cfg.operator_password},
            readers={cfg.reader_user: cfg.reader_password} if cfg.reader_password is not None else None,
            allow_anonymous=cfg.allow_anonymous_read,
        )
        trust = ClientTrustList(Path(p).read_bytes() for p in cfg.trusted_client_certs) if cfg.cert_dir else None
        iserver = GuardedInternalServer(
            user_manager=users,
            login_throttle=LoginThrottle(free_failures=cfg.login_free_failures, delay_s=cfg.login_delay_s),
            client_trust=trust,
        )
        server = _PlcOpcServer(iserver=iserver, discovery_only_none=not cfg.allow_insecure)
        await server.init()
        transfer_rebinding(server)  # a collector started again takes its subscription over: nothing published is lost
        server.set_endpoint(self.endpoint_url)
        server.set_server_name(f"TwinOps plantsim PLC {self.line.id}")
        app_uri = f"urn:twinops:plantsim:{self.line.id}"
        await server.set_application_uri(app_uri)
        server.allow_remote_admin(False)
        server.set_identity_tokens([ua.AnonymousIdentityToken, ua.UserNameIdentityToken])
        policies = []
        if cfg.cert_dir is not None:
            self.certificate = ensure_certificate(
                Path(cfg.cert_dir), name=f"{self.line.id}-server", app_uri=app_uri, hostnames=_hostnames(cfg.host)
            )
            await server.load_certificate(str(self.certificate.cert))
            await server.load_private_key(str(self.certificate.key))
            policies += [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
        if cfg.allow_insecure:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies, permission_ruleset=PlcRuleset())  # type: ignore[arg-type]
        await self._build_address_space(server)
        server.iserver.attribute_service = GuardedAttributeService(server.iserver.aspace, self._guard_write)
        self._server = server
        self._sim_origin = (cfg.start_time or datetime.now(UTC)).astimezone(UTC)
        self._heartbeat_seen_at = self._clock()
        await server.start()
        if cfg.published_log is not None:
            self._published_log = open(cfg.published_log, "a", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        await self.publish()
        self._task = asyncio.create_task(self._run(), name=f"plc-{self.line.id}")

    async def stop(self) -> None:
        """Stop the loop and close the endpoint."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self._published_log is not None:
            self._published_log.close()
            self._published_log = None

    async def __aenter__(self) -> PlcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def set_mode(self, mode: str) -> None:
        """Switch LOCAL/REMOTE as the local panel does (not writable over OPC UA)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "REMOTE" and self.mode != "REMOTE":
            self._heartbeat_seen_at = self._clock()  # grace period for the platform to resume its heartbeat
        self.mode = mode
        await self._write_status(f"mode {mode}")

    async def tick(self, dt_sim_s: float) -> None:
        """Read setpoints from the nodes, step the simulator by dt_sim_s, watch the heartbeat, publish."""
        server = self._require_server()
        for node, name in self._mv_nodes.items():
            variant = server.iserver.aspace.read_attribute_value(node, ua.AttributeIds.Value).Value
            value = variant.Value if variant is not None else None
            if isinstance(value, float) and math.isfinite(value) and value != self.simulator.setpoints[name]:
                self.simulator.write_setpoint(name, value)
        self.simulator.step(dt_sim_s)
        await self._watch_heartbeat()
        await self.publish()

    async def publish(self) -> None:
        """Write the simulator's latest sample to the nodes (source timestamp = simulated time)."""
        server = self._require_server()
        sample = self.simulator.last
        stamp = self._sim_origin + timedelta(seconds=sample.time_s)
        now = datetime.now(UTC)
        writes = 0
        changed: list[str] = []
        for tag in self.line.tags:
            if tag.role == "MV":
                pv = sample.actuators[tag.name]
                await server.write_attribute_value(self._nodes[f"{tag.name}.pv"], _dv(pv, stamp, now))
            else:
                value = sample.values[tag.name]
                await server.write_attribute_value(self._nodes[tag.name], _dv(value, stamp, now))
                last = self._last_values.get(tag.name)
                if value != last and not (math.isnan(value) and last is not None and math.isnan(last)):
                    self.tag_values_changed += 1
                    changed.append(tag.name)
                self._last_values[tag.name] = value
            writes += 1
        await server.write_attribute_value(
            self._nodes["sim_time"],
            ua.DataValue(
                ua.Variant(stamp, ua.VariantType.DateTime),
                SourceTimestamp=_ua_time(stamp),
                ServerTimestamp=_ua_time(now),
            ),
        )
        self.values_published += writes + 1
        if self._published_log is not None and changed:
            when = stamp.isoformat()
            wall = now.isoformat()
            self._published_log.write("".join(f"{n}\t{when}\t{sample.values[n]!r}\t{wall}\n" for n in changed))
            self._published_log.flush()  # a PLC killed later keeps its record

    # ---- internals --------------------------------------------------------------------------------------------------

    def _require_server(self) -> _PlcOpcServer:
        if self._server is None:
            raise RuntimeError("PLC is not started")
        return self._server

    async def _build_address_space(self, server: Server) -> None:
        idx = await server.register_namespace(NAMESPACE_URI)
        if idx != 2:
            raise RuntimeError(f"namespace {NAMESPACE_URI} got index {idx}, the line spec expects ns=2")
        lid = self.line.id
        folder = await server.nodes.objects.add_object(ua.NodeId(ua.String(lid), ua.Int16(idx)), f"{idx}:{lid}")

        async def var(name: str, value: Any, vtype: ua.VariantType, writable: bool = False, desc: str = "") -> None:
            node = await folder.add_variable(
                ua.NodeId(ua.String(f"{lid}.{name}"), ua.Int16(idx)), f"{idx}:{name}", value, varianttype=vtype
            )
            if desc:
                await node.write_attribute(
                    ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(desc)))
                )
            if writable:
                await node.set_writable()
            self._nodes[name] = node.nodeid

        for tag in self.line.tags:
            desc = f"{tag.description} [{tag.unit}]"
            if tag.role == "MV":
                await var(tag.name, self.simulator.setpoints[tag.name], ua.VariantType.Double, True, desc)
                self._mv_nodes[self._nodes[tag.name]] = tag.name
                await var(
                    f"{tag.name}.pv",
                    self.simulator.setpoints[tag.name],
                    ua.VariantType.Double,
                    desc=f"Actuator position of {tag.name} [{tag.unit}]",
                )
            else:
                await var(tag.name, 0.0, ua.VariantType.Double, desc=desc)
        await var("mode", self.mode, ua.VariantType.String, desc="LOCAL: setpoint writes refused; REMOTE: accepted")
        await var("heartbeat", 0, ua.VariantType.Int64, True, desc="Counter the platform changes periodically")
        await var("fallback_active", False, ua.VariantType.Boolean, desc="True: heartbeat lost, safe setpoints applied")
        await var("message", self.message, ua.VariantType.String, desc="Latest PLC status message")
        await var("sim_time", self._sim_origin, ua.VariantType.DateTime, desc="Simulated time of the latest sample")

    async def _guard_write(self, user: User, item: ua.WriteValue) -> ua.StatusCode | None:
        """Decide one remote write: operator only, REMOTE only, no fallback, numeric and within limits."""
        node = item.NodeId
        is_mv = node in self._mv_nodes
        is_heartbeat = node == self._nodes.get("heartbeat")
        if not (is_mv or is_heartbeat) or item.AttributeId != ua.AttributeIds.Value:
            return _bad(ua.StatusCodes.BadNotWritable)
        if user.role != UserRole.User:
            return _bad(ua.StatusCodes.BadUserAccessDenied)
        variant = item.Value.Value if item.Value is not None else None
        if is_heartbeat:
            if variant is None or variant.VariantType not in _INT_TYPES:
                return _bad(ua.StatusCodes.BadTypeMismatch)
            await self._heartbeat(variant.Value)
            return None
        if self.mode != "REMOTE":
            return _bad(ua.StatusCodes.BadInvalidState)
        if self.fallback_active:
            return _bad(ua.StatusCodes.BadInvalidState)
        if variant is None or variant.VariantType != ua.VariantType.Double:
            return _bad(ua.StatusCodes.BadTypeMismatch)
        low, high = self.line.tag(self._mv_nodes[node]).operating_bounds()
        value = variant.Value
        if not (isinstance(value, float) and math.isfinite(value) and low <= value <= high):
            return _bad(ua.StatusCodes.BadOutOfRange)
        return None

    async def _heartbeat(self, value: Any) -> None:
        if value != self._heartbeat_value:
            self._heartbeat_value = value
            self._heartbeat_seen_at = self._clock()
            if self.fallback_active:
                self.fallback_active = False
                await self._write_status("heartbeat restored; safe setpoints held until new ones are written")

    async def _watch_heartbeat(self) -> None:
        if self.mode != "REMOTE" or self.fallback_active:
            return
        silent_s = self._clock() - self._heartbeat_seen_at
        if silent_s <= self.config.heartbeat_timeout_s:
            return
        safe = self.simulator.apply_safe_setpoints()
        server = self._require_server()
        for name, value in safe.items():
            await server.write_attribute_value(
                self._nodes[name], ua.DataValue(ua.Variant(value, ua.VariantType.Double))
            )
        self.fallback_active = True
        applied = ", ".join(f"{k}={v:g}" for k, v in safe.items())
        await self._write_status(f"heartbeat lost for {silent_s:.1f} s: safe setpoints applied ({applied})")
        _log.warning("%s: %s", self.line.id, self.message)

    async def _write_status(self, message: str) -> None:
        self.message = message
        if self._server is None:
            return
        await self._server.write_attribute_value(
            self._nodes["mode"], ua.DataValue(ua.Variant(self.mode, ua.VariantType.String))
        )
        await self._server.write_attribute_value(
            self._nodes["fallback_active"], ua.DataValue(ua.Variant(self.fallback_active, ua.VariantType.Boolean))
        )
        await self._server.write_attribute_value(
            self._nodes["message"], ua.DataValue(ua.Variant(message, ua.VariantType.String))
        )

    async def _run(self) -> None:
        """Pace the simulator: each tick advances (wall time elapsed) * speed simulated seconds."""
        last = self._clock()
        deadline = last
        while True:
            deadline += self.tick_s
            await asyncio.sleep(max(0.0, deadline - self._clock()))
            now = self._clock()
            wall_dt = min(now - last, 5 * self.tick_s)  # after a stall, do not jump the plant far ahead
            last = now
            if now - deadline > 5 * self.tick_s:
                deadline = now
            if wall_dt > 0:
                try:
                    await self.tick(wall_dt * self.config.speed)
                except Exception:  # a failed tick must not kill the PLC; the next one retries
                    _log.exception("%s: tick failed", self.line.id)


def _dv(value: float, source: datetime, server: datetime) -> ua.DataValue:
    status = ua.StatusCode(ua.UInt32(ua.StatusCodes.Good if math.isfinite(value) else ua.StatusCodes.BadSensorFailure))
    return ua.DataValue(
        ua.Variant(value, ua.VariantType.Double),
        StatusCode=status,
        SourceTimestamp=_ua_time(source),
        ServerTimestamp=_ua_time(server),
    )


def _bad(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _ua_time(stamp: datetime) -> ua.DateTime:
    """Type a datetime as asyncua's DateTime (asyncua encodes any datetime; its stubs ask for the subclass)."""
    return cast(ua.DateTime, stamp)


def _hostnames(host: str) -> list[str]:
    names = ["localhost", socket.gethostname(), "127.0.0.1"]
    return [host, *names] if host not in names and host not in ("0.0.0.0", "::") else names
