"""Benchmark the simulated plant: simulation speed per line and OPC UA value publication rate of a PLC.

Run: `PYTHONPATH=. python bench/plant.py [--quick]` (prints JSON); the CLI `twinops bench plant --json` calls `run`.
sim_seconds_per_wall_second: full realism (noise, faults, drift, rate limits), stepping at the line's sample period,
as the history export does. opcua_publish_values_per_s: server-side node value updates per second of one PLC
(heat-train, Basic256Sha256 endpoint; each update cycle includes one simulator step), alone and with one
SignAndEncrypt client in the same process subscribed to every measured tag (its decoding shares the CPU);
opcua_notifications_per_publish: data-change notifications that client received per update cycle (8 measured tags;
stuck sensors repeat a value, which is not a change).
Collector figures (only under `twinops bench plant`, which sets Django up), end to end: a PLC in its own process
(bench/_plc_feed.py: heat-train, one simulator step per publication) → Basic256Sha256 SignAndEncrypt subscription
with a pinned certificate → a `twinops collect` Collector with its defaults in this process → the ingest service →
PostgreSQL (a scratch database `twinops_bench_plant`, emptied first). The PLC publishes at 2,000 and 5,000 values/s,
then as fast as it can, each for the same time (collector_levels). offered_values_per_s: the PLC's own count of
CV/DV values that changed (PlcServer.tag_values_changed: what a data-change subscription reports); stored: values
the collector stored meanwhile (repeats of unchanged values are off); values_lost: offered minus stored, summed over
the levels (values_not_received: of those, lost before the collector's buffer); lag_s: how long after the PLC stopped
the last value was stored. collector_offered_values_per_s, collector_values_per_s: the fastest level.
collector_capacity_values_per_s: values stored per second of the collector process's own CPU time (OPC UA
decryption and decoding, buffering, the ingest service's Python side; PostgreSQL's work is not in it): what one
collector process stores with a core to itself. plc_cpu_share: CPU seconds per wall second of the PLC's process; near
1 at the fastest level (or below it only because the machine's cores are all busy), the simulated PLC (asyncua's
server deep-copies each data change for each subscription), not the collector, sets the pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import PIPE
from typing import Any

from plantsim import available_lines, build_simulator
from plantsim.plc import PlcConfig, PlcServer
from twinops.opcua.certs import client_certificate_ensure
from twinops.opcua.client import connect_pinned


def sim_speed(line_id: str, steps: int) -> float:
    """Return simulated seconds per wall second of one line at its sample period."""
    sim = build_simulator(line_id, seed=0)
    dt = sim.line.sample_period_s
    start = time.perf_counter()
    for _ in range(steps):
        sim.step(dt)
    return steps * dt / (time.perf_counter() - start)


async def _publish_rate(publishes: int, cert_dir: Path) -> dict[str, float]:
    cfg = PlcConfig(
        line_id="heat-train",
        operator_password="bench",
        reader_password="bench-reader",
        port=0,
        cert_dir=cert_dir,
        trusted_client_certs=(client_certificate_ensure(cert_dir / "client").cert,),
        tick_s=3600.0,
    )
    out: dict[str, float] = {}
    async with PlcServer(cfg) as plc:
        out["opcua_publish_values_per_s"] = await _time_publishes(plc, publishes)

        class Count:
            n = 0

            def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
                Count.n += 1

        async with connect_pinned(
            plc.endpoint_url,
            fingerprint=plc.certificate_fingerprint or "",
            client_cert_dir=cert_dir / "client",
            username="collector",
            password="bench-reader",
        ) as client:
            sub = await client.create_subscription(50, Count())
            nodes = [client.get_node(t.opcua_node) for t in plc.line.tags if t.role != "MV"]
            await sub.subscribe_data_change(nodes, queuesize=publishes + 10)
            await asyncio.sleep(0.5)
            Count.n = 0
            out["opcua_publish_values_per_s_with_subscriber"] = await _time_publishes(plc, publishes)
            await asyncio.sleep(1.0)
            out["opcua_notifications_per_publish"] = Count.n / publishes
            await sub.delete()
    return out


async def _time_publishes(plc: PlcServer, publishes: int) -> float:
    before = plc.values_published
    start = time.perf_counter()
    for _ in range(publishes):
        plc.simulator.step(plc.line.sample_period_s)
        await plc.publish()
        await asyncio.sleep(0)  # let the server send notifications and answer publish requests
    return (plc.values_published - before) / (time.perf_counter() - start)


async def _collect(line: Any, levels: list[tuple[float, float]], cert_dir: Path) -> dict[str, Any]:
    from twinops.telemetry.collector import Collector, CollectorConfig

    plc_config = {
        "cert_dir": str(cert_dir),
        "trusted": str(client_certificate_ensure(cert_dir / "client").cert),
        # the simulated clock runs 3 h per publication ahead of it: start far enough back never to be future-dated
        "start_time": (datetime.now(UTC) - timedelta(days=365)).isoformat(),
    }
    plc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench._plc_feed", json.dumps(plc_config), stdin=PIPE, stdout=PIPE
    )
    assert plc.stdin is not None and plc.stdout is not None
    try:
        served = json.loads(await asyncio.wait_for(plc.stdout.readline(), timeout=60))
        config = CollectorConfig(  # `twinops collect`'s defaults, as the demo runs it
            url=served["url"],
            fingerprint=served["fingerprint"],
            cert_dir=cert_dir / "client",
            username="collector",  # the read-only account, as `twinops demo` gives its collectors
            password="bench-reader",
            max_interval_s=3600.0,  # no repeats of unchanged values in the window: stored values are reported ones
        )
        collector = await asyncio.to_thread(lambda: Collector(line=line, config=config))
        stop = asyncio.Event()
        task = asyncio.create_task(collector.run(stop))
        while collector.stored == 0:  # connected, subscribed, first values (the initial ones) stored
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * config.flush_ms / 1000)
        rows = []
        for publishes_per_s, seconds in levels:
            received0, stored0 = collector.received, collector.stored
            cpu0, start = time.process_time(), time.perf_counter()
            plc.stdin.write(f"{publishes_per_s} {seconds}\n".encode())
            fed = json.loads(await plc.stdout.readline())
            done, last = time.perf_counter(), collector.stored
            while collector.stored - stored0 < fed["tag_values_changed"] and time.perf_counter() - done < 30:
                await asyncio.sleep(0.05)
                if collector.stored != last:
                    done, last = time.perf_counter(), collector.stored
            stored = collector.stored - stored0
            rows.append(
                {
                    "offered_values_per_s": fed["tag_values_changed"] / fed["elapsed_s"],
                    "stored_values_per_s": stored / fed["elapsed_s"],
                    "values_lost": fed["tag_values_changed"] - stored,
                    "values_not_received": fed["tag_values_changed"] - (collector.received - received0),
                    "lag_s": done - start - fed["elapsed_s"],  # last value stored after the PLC stopped publishing
                    "plc_cpu_share": fed["cpu_s"] / fed["elapsed_s"],  # near 1: the PLC's process is what limits
                    "cpu_s": time.process_time() - cpu0,
                    "stored": stored,
                }
            )
        stop.set()
        await task
    finally:
        if plc.returncode is None:
            plc.stdin.write(b"\n")
            try:
                await asyncio.wait_for(plc.wait(), timeout=15)
            except TimeoutError:
                plc.kill()
                await plc.wait()
    top = rows[-1]
    return {
        "collector_offered_values_per_s": top["offered_values_per_s"],
        "collector_values_per_s": top["stored_values_per_s"],
        "values_lost": sum(r["values_lost"] for r in rows),
        "collector_lag_s": top["lag_s"],
        "plc_cpu_share": top["plc_cpu_share"],
        # values one collector process stores per second of its own CPU time (its whole process: OPC UA decryption
        # and decoding, buffering, the ingest service's side of the flush; PostgreSQL's work is not in it)
        "collector_capacity_values_per_s": sum(r["stored"] for r in rows) / max(1e-9, sum(r["cpu_s"] for r in rows)),
        "collector_levels": [{k: round(v, 2) for k, v in r.items() if k not in ("cpu_s", "stored")} for r in rows],
    }


def collector_rate(seconds: float) -> dict[str, float]:
    """Measure live OPC UA collection into PostgreSQL (needs Django set up, as `twinops bench plant` does)."""
    import yaml
    from django.db import connection

    from bench.ingest import scratch_database
    from plantsim.spec import line_spec
    from twinops.lines.models import Line
    from twinops.onboarding.services import line_onboard

    with scratch_database("twinops_bench_plant"), tempfile.TemporaryDirectory(prefix="plantsim-bench-") as tmp:
        line = Line.objects.filter(key="heat-train").first()
        if line is None:
            text = yaml.safe_dump(line_spec(build_simulator("heat-train", seed=0).line), sort_keys=False)
            line = line_onboard(text=text, filename="heat-train.yaml", actor="system:bench").line
        with connection.cursor() as cur:  # the scratch database's samples of an earlier run would be duplicates
            cur.execute("TRUNCATE telemetry_sample")
            cur.execute("DELETE FROM telemetry_rollup_minute; DELETE FROM telemetry_rollup_hour")
        # heat-train publishes 8 CV/DV values per publication: 2,000 and 5,000 values/s offered, then as fast as it can
        levels = [(250.0, seconds), (625.0, seconds), (0.0, seconds)]
        return asyncio.run(_collect(line, levels, Path(tmp)))


def run(*, quick: bool = False) -> dict[str, Any]:
    """Run the plant benchmark and return its figures."""
    steps = 1000 if quick else 10000
    result: dict[str, Any] = {
        "sim_seconds_per_wall_second": {line: round(sim_speed(line, steps), 1) for line in available_lines()},
        "steps_per_line": steps,
    }
    with tempfile.TemporaryDirectory(prefix="plantsim-bench-") as tmp:
        rates = asyncio.run(_publish_rate(200 if quick else 2000, Path(tmp)))
    result.update({k: round(v, 1) for k, v in rates.items()})
    from django.conf import settings

    if settings.configured:
        result.update(
            {k: round(v, 1) if isinstance(v, float) else v for k, v in collector_rate(3.0 if quick else 10.0).items()}
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(quick=parser.parse_args().quick), indent=2))
