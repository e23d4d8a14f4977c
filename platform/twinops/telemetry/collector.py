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

A collector killed with `kill -9` (or out of memory) loses nothing it had received: with a spool file, each value is
appended to it as it arrives (one JSON line; a write to the OS survives the process) and the spool is set aside at
each flush and deleted once stored; a collector starting finds what a dead one left and stores it first (storing a
value twice stores it once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from asyncua import Client, ua
from asyncua.common.subscription import Subscription
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
    queue_size: int = 1000  # values the server keeps per tag between two publish responses (1 would drop changes)
    username: str | None = None
    password: str | None = None
    insecure: bool = False  # security mode None (development only)
    fingerprint: str | None = None  # SHA-256 of the server certificate (required unless insecure)
    cert_dir: Path | None = None  # where the client's own certificate and key live (generated once)
    reconnect_max_s: float = 30.0  # back-off ceiling between reconnection attempts
    max_buffer: int = 1_000_000  # values kept while the database is unreachable; the oldest go beyond this
    timeout_s: float = 10.0
    max_interval_s: float | None = None  # store each tag at least this often (default: the line's sample period)
    spool: Path | None = None  # values received and not yet stored, kept here too (None: in memory only)


class _Batches(Subscription):
    """A subscription that hands each publish response's data changes to the collector in one call.

    asyncua's handler path makes an event object and an asyncio task per value (measured: most of the collector's
    CPU time at a few thousand values per second); here one loop over the response appends plain tuples.
    """

    def __init__(self, client: Client, params: ua.CreateSubscriptionParameters, collector: Collector) -> None:
        super().__init__(client.uaclient.session, params, None)
        self.collector = collector
        self.names: dict[int, str] = {}  # client handle of a monitored item -> tag name (filled on first sight)

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        """Buffer every data change of one publish response; a status change means the subscription is lost."""
        self.last_publish_at = time.monotonic()
        message = publish_result.NotificationMessage
        if message.NotificationData is None:
            return
        self.last_sequence_number = int(message.SequenceNumber)
        for notification in message.NotificationData:
            if isinstance(notification, ua.DataChangeNotification):
                self.collector.take(notification.MonitoredItems, self.names, self.tag_of)
            elif isinstance(notification, ua.StatusChangeNotification):
                log.warning("OPC UA subscription status changed: %s", notification.Status)
                self.collector.lost.set()

    def tag_of(self, handle: int) -> str | None:
        """Return the tag name of a monitored item (None if it is not one of the line's), remembering it."""
        item = self._monitored_items.get(handle)  # filled before the items are created on the server
        name = self.collector.names.get(item.node.nodeid.to_string()) if item and item.node else None
        if name is not None:
            self.names[handle] = name
        return name


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
        self.received = 0  # values the server reported (repeats not counted)
        self.max_interval_s = float(config.max_interval_s or line.sample_period_s)
        if not self.max_interval_s > 0:
            raise ValueError(f"the maximum interval of line {line.key!r} must be positive, not {self.max_interval_s!r}")
        # tag -> (last value or bad status, its time, monotonic time it was last stored); only while subscribed
        self.last: dict[str, tuple[float | str, datetime, float]] = {}
        self._spool: TextIO | None = None
        self._spooled = 0  # spool files set aside for flushes not yet stored
        if config.spool is not None:
            self.buffer = _spool_recover(config.spool)  # what a collector killed before us had not stored
            suffixes = [p.suffix[1:] for p in config.spool.parent.glob(config.spool.name + ".*")]
            self._spooled = max((int(x) for x in suffixes if x.isdigit()), default=0)  # the next set aside: one more
            self._spool = open(config.spool, "a", encoding="utf-8")  # noqa: SIM115 (closed when run ends)

    def take(
        self,
        items: list[ua.MonitoredItemNotification],
        names: dict[int, str],
        tag_of: Callable[[int], str | None],
    ) -> None:
        """Buffer the values of one notification and remember each as its tag's last, to repeat if nothing new comes."""
        buffer, last = self.buffer, self.last
        start = len(buffer)
        now_mono, now = time.monotonic(), None
        for item in items:
            name = names.get(item.ClientHandle) or tag_of(item.ClientHandle)
            if name is None:
                continue
            dv = item.Value
            when = dv.SourceTimestamp or dv.ServerTimestamp or now or (now := datetime.now(UTC))
            status = dv.StatusCode
            val = dv.Value.Value if dv.Value is not None else None
            if status is not None and not status.is_good():
                value: float | str = status.name
            elif isinstance(val, bool | int | float):
                value = float(val)
            else:
                value = f"not a number: {val!r}"[:200]
            buffer.append((name, when, value))
            last[name] = (value, when, now_mono)
        self.received += len(items)
        if self._spool is not None:
            self._spool_write(buffer[start:])
        if len(buffer) >= self.config.flush_values:
            self.wake.set()

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
                if self._spool is not None:
                    self._spool_write(self.buffer[-1:])
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
            if self._spool is not None:
                self._spool.close()

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
        c = self.config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=c.publishing_ms,
            RequestedLifetimeCount=10000,
            RequestedMaxKeepAliveCount=client.get_keepalive_count(c.publishing_ms),
            MaxNotificationsPerPublish=0,  # no limit: a publish response carries all values since the last one
            PublishingEnabled=True,
        )
        sub = _Batches(client, params, self)
        revised = client.get_subscription_revised_params(params, await sub.init())
        if revised:
            await sub.update(revised)
        nodes = [client.get_node(n) for n in self.names]
        await sub.subscribe_data_change(nodes, queuesize=c.queue_size)
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
        self._spool_set_aside()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._db, self._ingest, records)
        except Exception:
            log.exception("storing %d OPC UA values failed; kept for the next flush", len(records))
            self.buffer = (records + self.buffer)[-self.config.max_buffer :]
            return None
        self._spool_drop()  # every value set aside is stored: those of earlier failed flushes went with these
        self.stored += result.samples_inserted
        if self.on_flush:
            self.on_flush(result)
        return result

    def _spool_write(self, records: list[tuple[str, datetime, float | str]]) -> None:
        assert self._spool is not None
        self._spool.write("".join(json.dumps([n, w.isoformat(), v]) + "\n" for n, w, v in records))
        self._spool.flush()  # into the OS: a killed process's writes are kept

    def _spool_set_aside(self) -> None:
        """Rename the spool to `<spool>.<n>` (the values being flushed) and start a new one."""
        if self._spool is None or self.config.spool is None:
            return
        self._spool.close()
        self._spooled += 1
        self.config.spool.rename(f"{self.config.spool}.{self._spooled}")
        self._spool = open(self.config.spool, "a", encoding="utf-8")  # noqa: SIM115 (closed when run ends)

    def _spool_drop(self) -> None:
        if self.config.spool is not None:
            for path in self.config.spool.parent.glob(self.config.spool.name + ".*"):
                path.unlink(missing_ok=True)
            self._spooled = 0

    def _ingest(self, records: list[tuple[str, datetime, float | str]]) -> ImportResult:
        close_old_connections()
        return samples_ingest(
            line=self.line, batch=RawBatch.from_records(records), source="opcua", actor="system:opcua-collector"
        )


def _close_connections() -> None:
    connections.close_all()


def _spool_recover(spool: Path) -> list[tuple[str, datetime, float | str]]:
    """Return the values a collector left in its spool files (a torn last line, from a kill mid-write, is skipped)."""
    spool.parent.mkdir(parents=True, exist_ok=True)
    records: list[tuple[str, datetime, float | str]] = []
    for path in sorted(spool.parent.glob(spool.name + "*"), key=lambda p: (p != spool, p.name)):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                name, when, value = json.loads(line)
            except ValueError:
                continue
            records.append((name, datetime.fromisoformat(when), value))
    return records
