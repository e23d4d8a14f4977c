"""The release agent of one line: holds a pinned SignAndEncrypt session to its PLC, writes the heartbeat, releases.

Every `heartbeat_s` it changes the PLC's heartbeat counter (a PLC that sees it stop applies its safe setpoints).
Every `poll_s` it asks the database for the line's running release (starting the newest approved proposal's) and,
when the next step is due (release start + k sample periods, and one period after the previous write), reads the
PLC, re-checks everything (twinops.releases.checks), claims the step, writes it, reads it back until equal or
`readback_timeout_s`, and records the outcome. A refused write, a read-back that differs, or a lost connection
ends the release with an alarm and nothing more is written (the PLC holds the setpoints it has). After a restart,
a step claimed but never confirmed is settled by reading the PLC back, never written again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from asyncua import Client, ua
from asyncua.ua.uaerrors import UaStatusCodeError
from django.db import close_old_connections, connections
from django.utils import timezone

from twinops.lines.models import Line
from twinops.lines.selectors import line_tags
from twinops.opcua.client import connect_insecure, connect_pinned, read_values, write_values
from twinops.recommendations.models import Recommendation
from twinops.releases import conf
from twinops.releases.checks import PlcReading, plan_step, release_recheck
from twinops.releases.models import Release, ReleaseWrite
from twinops.releases.plc import plc_nodes
from twinops.releases.selectors import writes_unconfirmed
from twinops.releases.services import (
    WriteOutcome,
    WriteStatus,
    release_claim,
    release_halt,
    release_next,
    release_unreachable,
    release_write_record,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
REFUSALS = {
    ua.StatusCodes.BadOutOfRange: "the PLC refused the value as out of range",
    ua.StatusCodes.BadInvalidState: "the PLC refused the write (LOCAL mode or fallback active)",
    ua.StatusCodes.BadUserAccessDenied: "the PLC refused the write: this account may not write setpoints",
    ua.StatusCodes.BadNotWritable: "the PLC refused the write: the node is not writable",
    ua.StatusCodes.BadTypeMismatch: "the PLC refused the write: wrong data type",
}
LOST = (OSError, TimeoutError, ConnectionError, ua.UaError)


@dataclass(frozen=True)
class AgentConfig:
    """Where the line's PLC is and how to release to it."""

    url: str
    fingerprint: str | None = None  # SHA-256 of the PLC's certificate (required unless insecure)
    cert_dir: Path | None = None  # this client's certificate and key
    username: str | None = None  # an account that may write setpoints (the PLC's operator account)
    password: str | None = None
    insecure: bool = False  # security mode None: development only
    speed: float = 1.0  # plant seconds per wall second (an accelerated simulated plant): steps come that much faster
    poll_s: float = 0.25  # how often the database is asked for work
    heartbeat_s: float | None = None  # default TWINOPS_RELEASE_HEARTBEAT_S
    reconnect_max_s: float = 30.0
    timeout_s: float = 10.0


class ReleaseAgent:
    """Releases one line's approved proposals to its PLC until `stop` is set."""

    def __init__(self, *, line: Line, config: AgentConfig) -> None:
        spec = line.current_spec
        nodes = plc_nodes(spec.document) if spec is not None else None
        if nodes is None:
            raise ValueError(
                f"line {line.key!r} has no plc block in its spec (mode, heartbeat and fallback nodes): "
                "add one with `twinops line update` to release to it"
            )
        if not config.speed > 0:
            raise ValueError(f"speed must be positive, not {config.speed!r}")
        self.line, self.config, self.nodes = line, config, nodes
        self.mv_nodes = {t.name: t.opcua_node for t in line_tags(line=line).filter(role="MV").exclude(opcua_node="")}
        self.heartbeat_s = config.heartbeat_s or conf.heartbeat_every_s()
        self.heartbeat = int(time.time())  # a restarted agent goes on changing the counter, never repeats it
        self.writes = 0  # setpoint write requests sent (tests and the benchmark)
        self.on_write: Callable[[int, dict[str, float], float], None] | None = None  # (step, values, readback s)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="release-db")  # one Django connection
        self._session = asyncio.Lock()  # made anew for each PLC session (see _serve)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve the line, reconnect on loss with back-off; close the database connection at the end."""
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    async with self._connect() as client:
                        backoff = 1.0
                        await self._serve(client, stop)
                except LOST as e:
                    log.warning(
                        "release agent of %s: PLC at %s lost or refused (%s)", self.line.key, self.config.url, e
                    )
                    await self._call(release_unreachable, line=self.line, error=f"{type(e).__name__}: {e}".strip())
                if not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    except TimeoutError:
                        pass
                    backoff = min(self.config.reconnect_max_s, backoff * 2)
        finally:
            await asyncio.get_running_loop().run_in_executor(self._db, connections.close_all)
            self._db.shutdown(wait=True)

    # ---- one session ------------------------------------------------------------------------------------------------

    def _connect(self) -> AbstractAsyncContextManager[Client]:
        c = self.config
        if c.insecure:
            return connect_insecure(c.url, username=c.username, password=c.password, timeout_s=c.timeout_s)
        if not c.fingerprint or c.cert_dir is None:
            raise ValueError("a secure connection needs the PLC certificate's fingerprint and a certificate directory")
        return connect_pinned(
            c.url,
            fingerprint=c.fingerprint,
            client_cert_dir=c.cert_dir,
            username=c.username,
            password=c.password,
            timeout_s=c.timeout_s,
        )

    async def _serve(self, client: Client, stop: asyncio.Event) -> None:
        # One request sequence on the PLC session at a time (a step's read, write and read-back are not interleaved
        # with a heartbeat write). Added while chasing a stall that turned out to be a 0-step release (89bba85); kept
        # because it costs nothing measurable, not because interleaving was shown to fail.
        self._session = asyncio.Lock()
        await self._beat(client)  # first heartbeat at once: a PLC in fallback gets its heartbeat back
        beating = asyncio.create_task(self._heartbeat_loop(client))
        try:
            async with self._session:
                await self._settle_claims(client)
            while not stop.is_set():
                if beating.done():
                    beating.result()  # raises the heartbeat's connection error
                async with self._session:  # one request sequence on the PLC session at a time
                    await self._tick(client)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.config.poll_s)
                except TimeoutError:
                    pass
        finally:
            beating.cancel()

    async def _beat(self, client: Client) -> None:
        self.heartbeat += 1
        async with self._session:
            await write_values(client, {self.nodes.heartbeat: self.heartbeat})

    async def _heartbeat_loop(self, client: Client) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self._beat(client)

    async def _settle_claims(self, client: Client) -> None:
        """Read back the steps claimed but never confirmed (an agent died mid-step) and record what the PLC holds."""
        for (_release, step), rows in _by_step(await self._call(writes_unconfirmed, line=self.line)).items():
            values = await read_values(client, [w.node_id for w in rows])
            now = timezone.now()
            outcomes = []
            for w in rows:
                got = _number(values[w.node_id])
                same = got is not None and _equal(got, w.value)
                status = WriteStatus.VERIFIED if same else WriteStatus.MISMATCH
                error = (
                    "" if same else "claimed before the agent stopped and never confirmed; the PLC holds another value"
                )
                outcomes.append(WriteOutcome(tag=w.tag, status=status, read_back=got, read_at=now, error=error))
            await self._call(
                release_write_record,
                release=rows[0].release,
                step=step,
                outcomes=outcomes,
                reason="settled by read-back after the release agent restarted (not written again)",
            )

    async def _tick(self, client: Client) -> None:
        release = await self._call(release_next, line=self.line)
        if release is None or not self._due(release):
            return
        rec: Recommendation = release.recommendation
        step = release.steps_done
        reading = await self._read(client)
        problem = await self._call(
            release_recheck,
            release=release,
            step=step,
            plc=reading,
            remote_value=self.nodes.remote_value,
            now=timezone.now(),
        )
        if problem:
            await self._call(
                release_halt, release=release, reason=f"re-check before step {step} failed: {problem}; nothing written"
            )
            return
        targets = plan_step(rec, step)
        writes = {tag: (self.mv_nodes[tag], value) for tag, value in targets.items()}
        if not await self._call(release_claim, release=release, step=step, writes=writes):
            return
        await self._write_step(client, release, step, writes)

    def _due(self, release: Release) -> bool:
        period = float((release.recommendation.approved_plan or {}).get("sample_period_s") or self.line.sample_period_s)
        wall = timedelta(seconds=period / self.config.speed)
        due = release.started_at + release.steps_done * wall
        if release.last_written_at is not None:  # after a stall or restart: catch up no faster than one step a period
            due = max(due, release.last_written_at + wall)
        return timezone.now() >= due and release.steps_done < release.steps

    async def _read(self, client: Client) -> PlcReading:
        ids = [self.nodes.mode, self.nodes.fallback_active, *self.mv_nodes.values()]
        values = await read_values(client, ids)
        return PlcReading(
            mode=str(values[self.nodes.mode]),
            fallback_active=bool(values[self.nodes.fallback_active]),
            mv={tag: float(values[node]) for tag, node in self.mv_nodes.items()},
        )

    async def _write_step(
        self, client: Client, release: Release, step: int, writes: dict[str, tuple[str, float]]
    ) -> None:
        started = time.perf_counter()
        try:
            self.writes += 1
            await write_values(client, {node: value for node, value in writes.values()})
        except UaStatusCodeError as e:
            why = REFUSALS.get(e.code)
            if why is None:
                await self._record_lost(release, step, writes, e)
                raise
            values = await read_values(client, [n for n, _ in writes.values()])
            now = timezone.now()
            outcomes = [
                WriteOutcome(
                    tag=t,
                    status=WriteStatus.REFUSED,
                    read_back=_number(values[n]),
                    read_at=now,
                    error=f"{why} ({e})",
                )
                for t, (n, _) in writes.items()
            ]
            await self._call(release_write_record, release=release, step=step, outcomes=outcomes)
            return
        except LOST as e:
            await self._record_lost(release, step, writes, e)
            raise
        written_at = timezone.now()
        deadline = time.perf_counter() + conf.readback_timeout_s()
        while True:
            try:
                values = await read_values(client, [n for n, _ in writes.values()])
            except LOST as e:
                await self._record_lost(release, step, writes, e)
                raise
            read_at = timezone.now()
            got = {t: _number(values[n]) for t, (n, _) in writes.items()}
            same = all(g is not None and _equal(g, v) for g, (_, v) in zip(got.values(), writes.values(), strict=True))
            if same or time.perf_counter() >= deadline:
                break
            await asyncio.sleep(0.05)
        readback_s = time.perf_counter() - started
        outcomes = []
        for tag, (_, value) in writes.items():
            ok = got[tag] is not None and _equal(got[tag], value)  # type: ignore[arg-type]
            outcomes.append(
                WriteOutcome(
                    tag=tag,
                    status=WriteStatus.VERIFIED if ok else WriteStatus.MISMATCH,
                    read_back=got[tag],
                    written_at=written_at,
                    read_at=read_at,
                    error=""
                    if ok
                    else f"the PLC reads another value {conf.readback_timeout_s():g} s after the write (clamped or overwritten)",
                )
            )
        await self._call(release_write_record, release=release, step=step, outcomes=outcomes)
        if self.on_write is not None:
            self.on_write(step, {t: v for t, (_, v) in writes.items()}, readback_s)

    async def _record_lost(
        self, release: Release, step: int, writes: dict[str, tuple[str, float]], e: BaseException
    ) -> None:
        outcomes = [
            WriteOutcome(tag=t, status=WriteStatus.LOST, error=f"connection lost: {type(e).__name__}: {e}")
            for t in writes
        ]
        await self._call(release_write_record, release=release, step=step, outcomes=outcomes)

    async def _call(self, fn: Callable[..., T], **kwargs: Any) -> T:
        """Run a database function on the agent's one database thread."""

        def call() -> T:
            close_old_connections()
            return fn(**kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._db, call)


def _by_step(rows: list[ReleaseWrite]) -> dict[tuple[int, int], list[ReleaseWrite]]:
    out: dict[tuple[int, int], list[ReleaseWrite]] = {}
    for w in rows:
        out.setdefault((w.release_id, w.step), []).append(w)
    return out


def _number(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))
