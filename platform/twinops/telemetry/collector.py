"""Live OPC UA collector: subscribe to a line's tags, buffer data changes, flush them through the ingest service.

Values arrive as data-change notifications; they are buffered and flushed every `flush_ms` milliseconds or every
`flush_values` values, whichever comes first, through `samples_ingest` (source "opcua"). A status other than Good
becomes a bad-quality sample with the status name as reason. A lost connection is re-established with back-off;
values the database refused stay buffered (up to `max_buffer`) and go with the next flush. A server certificate
that does not match the pinned fingerprint stops the collector (CertificatePinError): that is no outage to wait out.

Exception reporting with a maximum interval: OPC UA reports a value only when it changes, so a setpoint that holds
still would look stale. While the subscription is live, a tag that reported nothing for one maximum interval (the
line's sample period by default) has its last value (or bad status) stored again at the current time. After a lost
connection nothing is repeated until the server reports values again: a value is only vouched for while connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from django.db import close_old_connections, connections

from twinops.lines.models import Line
from twinops.lines.selectors import line_tags
from twinops.opcua.client import connect_insecure, connect_pinned
from twinops.telemetry.batch import ImportResult, RawBatch
from twinops.telemetry.services import samples_ingest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectorConfig:
    """Where and how to collect."""

    url: str  # opc.tcp://host:port/path
    flush_ms: int = 1000  # longest time a value waits in the buffer
    flush_values: int = 5000  # flush earlier once this many values are buffered
    publishing_ms: int = 200  # subscription publishing interval asked of the server
    username: str | None = None
    password: str | None = None
    insecure: bool = False  # security mode None (development only)
    fingerprint: str | None = None  # SHA-256 of the server certificate (required unless insecure)
    cert_dir: Path | None = None  # where the client's own certificate and key live (generated once)
    reconnect_max_s: float = 30.0  # back-off ceiling between reconnection attempts
    max_buffer: int = 1_000_000  # values kept while the database is unreachable; the oldest go beyond this
    timeout_s: float = 10.0
    max_interval_s: float | None = None  # store each tag at least this often (default: the line's sample period)


class _Handler:
    """Receives data-change notifications from the subscription (on the event loop) into the buffer."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        name = self.collector.names.get(node.nodeid.to_string())
        if name is None:
            return
        when = dv.SourceTimestamp or dv.ServerTimestamp or datetime.now(UTC)
        status = dv.StatusCode
        if status is not None and not status.is_good():
            value: float | str = status.name
        elif isinstance(val, bool | int | float):
            value = float(val)
        else:
            value = f"not a number: {val!r}"[:200]
        self.collector.keep(name, when, value)
        if len(self.collector.buffer) >= self.collector.config.flush_values:
            self.collector.wake.set()

    def status_change_notification(self, status: Any) -> None:
        log.warning("OPC UA subscription status changed: %s", status)
        self.collector.lost.set()


class Collector:
    """Collects one line's tags from one OPC UA server until `stop` is set."""

    def __init__(
        self, *, line: Line, config: CollectorConfig, on_flush: Callable[[ImportResult], None] | None = None
    ) -> None:
        self.line, self.config, self.on_flush = line, config, on_flush
        tags = line_tags(line=line).exclude(opcua_node="")
        self.names = {ua.NodeId.from_string(t.opcua_node).to_string(): t.name for t in tags}
        if not self.names:
            raise ValueError(f"line {line.key!r} has no active tag with an OPC UA node id")
        self.buffer: list[tuple[str, datetime, float | str]] = []
        self.wake, self.lost = asyncio.Event(), asyncio.Event()
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collector-db")  # one Django connection
        self.stored = 0
        self.max_interval_s = float(config.max_interval_s or line.sample_period_s)
        if not self.max_interval_s > 0:
            raise ValueError(f"the maximum interval of line {line.key!r} must be positive, not {self.max_interval_s!r}")
        # tag -> (last value or bad status, its time, monotonic time it was last stored); only while subscribed
        self.last: dict[str, tuple[float | str, datetime, float]] = {}

    def keep(self, name: str, when: datetime, value: float | str) -> None:
        """Buffer a reported value and remember it as the tag's last one, to repeat if nothing new comes."""
        self.buffer.append((name, when, value))
        self.last[name] = (value, when, time.monotonic())

    def repeat_due(self) -> float:
        """Buffer the last value of each tag silent for a maximum interval, stamped now; return seconds to the next."""
        now_mono, now = time.monotonic(), datetime.now(UTC)
        wait = self.max_interval_s
        for name, (value, when, stored_at) in list(self.last.items()):
            left = stored_at + self.max_interval_s - now_mono
            if left > 0:
                wait = min(wait, left)
                continue
            if now > when:  # a plant clock running ahead of ours: its newest value is newer than now, nothing to add
                self.buffer.append((name, now, value))
                when = now
            self.last[name] = (value, when, now_mono)
        return wait

    async def run(self, stop: asyncio.Event) -> None:
        """Subscribe, flush periodically, reconnect on loss; flush what is left when stopped."""
        halt = asyncio.Event()  # set when run ends for any reason, so the flusher ends too
        flusher = asyncio.create_task(self._flush_loop(halt))
        repeater = asyncio.create_task(self._repeat_loop(halt))
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    async with self._connect() as client:
                        try:
                            await self._subscribe(client)
                            backoff = 1.0
                            await self._watch(client, stop)
                        finally:
                            self.last.clear()  # no longer connected: nothing to vouch for until values come again
                except (OSError, TimeoutError, ConnectionError, ua.UaError) as e:
                    log.warning(
                        "OPC UA connection to %s lost or refused (%s); retrying in %.0f s", self.config.url, e, backoff
                    )
                if not stop.is_set():
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    except TimeoutError:
                        pass
                    backoff = min(self.config.reconnect_max_s, backoff * 2)
        finally:
            halt.set()
            self.wake.set()
            await flusher
            await repeater
            await self.flush()
            await asyncio.get_running_loop().run_in_executor(self._db, _close_connections)
            self._db.shutdown(wait=True)

    def _connect(self) -> AbstractAsyncContextManager[Client]:
        c = self.config
        if c.insecure:
            return connect_insecure(c.url, username=c.username, password=c.password, timeout_s=c.timeout_s)
        if not c.fingerprint or c.cert_dir is None:
            raise ValueError(
                "a secure connection needs the server certificate's fingerprint and a certificate "
                "directory (or --insecure for development)"
            )
        return connect_pinned(
            c.url,
            fingerprint=c.fingerprint,
            client_cert_dir=c.cert_dir,
            username=c.username,
            password=c.password,
            timeout_s=c.timeout_s,
        )

    async def _subscribe(self, client: Client) -> None:
        self.lost.clear()
        sub = await client.create_subscription(self.config.publishing_ms, _Handler(self))
        await sub.subscribe_data_change([client.get_node(n) for n in self.names])
        log.info("collecting %d tags of %s from %s", len(self.names), self.line.key, self.config.url)

    async def _watch(self, client: Client, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.lost.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                await client.check_connection()

    async def _repeat_loop(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            wait = self.repeat_due() if not self.lost.is_set() else self.max_interval_s
            try:
                await asyncio.wait_for(halt.wait(), timeout=max(0.01, wait))
            except TimeoutError:
                pass

    async def _flush_loop(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.config.flush_ms / 1000)
            except TimeoutError:
                pass
            self.wake.clear()
            await self.flush()

    async def flush(self) -> ImportResult | None:
        """Send the buffered values through the ingest service; keep them if the database refuses."""
        if not self.buffer:
            return None
        records, self.buffer = self.buffer, []
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._db, self._ingest, records)
        except Exception:
            log.exception("storing %d OPC UA values failed; kept for the next flush", len(records))
            self.buffer = (records + self.buffer)[-self.config.max_buffer :]
            return None
        self.stored += result.samples_inserted
        if self.on_flush:
            self.on_flush(result)
        return result

    def _ingest(self, records: list[tuple[str, datetime, float | str]]) -> ImportResult:
        close_old_connections()
        return samples_ingest(
            line=self.line, batch=RawBatch.from_records(records), source="opcua", actor="system:opcua-collector"
        )


def _close_connections() -> None:
    connections.close_all()
