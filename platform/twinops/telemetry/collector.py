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

Nor does it lose what the server had not yet sent it. OPC UA keeps a subscription alive after its client's connection
drops (until the session times out), queueing the values that change meanwhile (`queue_size` per tag) and keeping
the publish responses not acknowledged. A client acknowledges a response only after its values are spooled. So the
collector remembers its subscription (beside the spool, or in memory across a reconnection) and, on connecting,
first takes it over (TransferSubscriptions) and asks again for each response not acknowledged (Republish): the values
published while it was dead, and those in flight when it died, arrive as if nothing had happened. A subscription the
server no longer has (restarted, timed out, or a server without the service) is replaced by a new one: then what
changed in between is lost, as OPC UA reports only current values to a new subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
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
    keepalive_s: float = 5.0  # a quiet subscription still answers this often; silent 3x as long, it is dead
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
        self.last_publish_at = time.monotonic()  # a data change or keep-alive: the subscription is alive

    def handles(self) -> dict[int, str]:
        """Return every monitored item's client handle and tag name (to take the subscription over later)."""
        return {h: n for h in self._monitored_items if (n := self.tag_of(h)) is not None}

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
        self._held: _Held | None = None  # the server-side subscription to take over after a lost connection
        self._sub: _Batches | None = None  # the subscription now publishing to us
        self._silence_s = 60.0  # longer without a response (data or keep-alive) and the subscription is dead
        self._held_file = config.spool.with_name(config.spool.stem + ".subscription.json") if config.spool else None
        if self._held_file is not None:
            self._held = _Held.read(self._held_file)  # a dead collector's subscription
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
            self._hold(None)  # stopped: the session closed with its subscription (or it times out on the server)
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
            RequestedMaxKeepAliveCount=max(1, math.ceil(c.keepalive_s * 1000 / c.publishing_ms)),
            MaxNotificationsPerPublish=0,  # no limit: a publish response carries all values since the last one
            PublishingEnabled=True,
        )
        self._silence_s = 3 * params.RequestedMaxKeepAliveCount * c.publishing_ms / 1000 + c.timeout_s
        started = await _server_started(client)
        self._sub = await self._take_over(client, params, started)
        if self._sub is not None:
            return
        self._sub = sub = _Batches(client, params, self)
        created = await sub.init()
        revised = client.get_subscription_revised_params(params, created)
        if revised:
            await sub.update(revised)
        keepalive_ms = created.RevisedMaxKeepAliveCount * created.RevisedPublishingInterval
        self._silence_s = max(self._silence_s, 3 * keepalive_ms / 1000 + c.timeout_s)
        nodes = [client.get_node(n) for n in self.names]
        await sub.subscribe_data_change(nodes, queuesize=c.queue_size)
        self._hold(_Held(url=c.url, started=started, subscription_id=int(sub.subscription_id), names=sub.handles()))
        log.info("collecting %d tags of %s from %s", len(self.names), self.line.key, self.config.url)

    async def _take_over(
        self, client: Client, params: ua.CreateSubscriptionParameters, started: str
    ) -> _Batches | None:
        """Take over the subscription a dead collector or a lost connection left on the server; None if gone."""
        held = self._held
        if held is None or held.url != self.config.url or set(held.names.values()) != set(self.names.values()):
            return None
        session = client.uaclient.session
        try:
            if started != held.started:  # a restarted server: the id may be another's now
                raise ua.UaError(f"the server restarted since (started {held.started})")
            transfer = ua.TransferSubscriptionsParameters(SubscriptionIds=[held.subscription_id])
            result = (await session.transfer_subscriptions(transfer))[0]  # SendInitialValues False: queued ones come
        except (ua.UaError, IndexError) as e:
            log.info("taking over subscription %d failed (%s); subscribing anew", held.subscription_id, e)
            self._hold(None)
            return None
        if not result.StatusCode.is_good():
            log.info("subscription %d is gone (%s); subscribing anew", held.subscription_id, result.StatusCode.name)
            self._hold(None)
            return None
        sub = _Batches(client, params, self)
        sub.subscription_id, sub.names = held.subscription_id, dict(held.names)
        session._subscription_callbacks[held.subscription_id] = sub.publish_callback  # asyncua has no public way
        session.ensure_publish_loop()
        for number in result.AvailableSequenceNumbers or []:  # sent to the dead client, never acknowledged
            message = await session.republish(held.subscription_id, number)
            await sub.publish_callback(
                ua.PublishResult(SubscriptionId=held.subscription_id, NotificationMessage=message)
            )
        log.info(
            "took over subscription %d of %s from %s (%d responses sent again)",
            held.subscription_id, self.line.key, self.config.url, len(result.AvailableSequenceNumbers or []),
        )  # fmt: skip
        return sub

    def _hold(self, held: _Held | None) -> None:
        """Remember the subscription to take over (in memory, and beside the spool for the next process)."""
        self._held = held
        if self._held_file is None:
            return
        if held is None:
            self._held_file.unlink(missing_ok=True)
        else:
            tmp = self._held_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(held)))
            tmp.replace(self._held_file)

    async def _watch(self, client: Client, stop: asyncio.Event) -> None:
        while not stop.is_set() and not self.lost.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                await client.check_connection()
                silent = time.monotonic() - self._sub.last_publish_at if self._sub is not None else 0.0
                if silent > self._silence_s:  # not even a keep-alive: the server no longer publishes it
                    log.warning("subscription silent for %.0f s; subscribing anew", silent)
                    self._hold(None)
                    return

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


@dataclass(frozen=True)
class _Held:
    """A subscription on the server: where, its id, and each monitored item's client handle -> tag name."""

    url: str
    started: str  # the server's start time: a restarted server has none of the old subscriptions
    subscription_id: int
    names: dict[int, str]

    @staticmethod
    def read(path: Path) -> _Held | None:
        """Return the subscription a collector left in `path`; None if there is none or it cannot be read."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            names = {int(h): str(n) for h, n in data["names"].items()}
            return _Held(str(data["url"]), str(data["started"]), int(data["subscription_id"]), names)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


async def _server_started(client: Client) -> str:
    """Return when the server started (ServerStatus.StartTime), as text."""
    node = client.get_node(ua.NodeId(ua.ObjectIds.Server_ServerStatus_StartTime))
    return str(await node.read_value())


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
