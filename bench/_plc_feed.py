"""A PLC in its own process for `bench plant`'s collector figures, so the collector's process has its CPU alone.

Run by bench/plant.py as `python -m bench._plc_feed CONFIG_JSON` (CONFIG_JSON: cert_dir, trusted, start_time).
Prints one JSON line {url, fingerprint} once serving, then for each stdin line `PUBLISHES_PER_S SECONDS` publishes
the simulator's samples at that pace (0: as fast as it can), one simulator step each, and prints
{tag_values_changed, publishes, elapsed_s, cpu_s}: the PLC's own count of CV/DV values that changed, which is what a
subscription to the line's tags reports. An empty line or end of input stops it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from plantsim.plc import PlcConfig, PlcServer


async def _feed(plc: PlcServer, publishes_per_s: float, seconds: float) -> dict[str, float]:
    changed0, start, cpu0, n = plc.tag_values_changed, time.perf_counter(), time.process_time(), 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + n / publishes_per_s if publishes_per_s > 0 else now
        await asyncio.sleep(max(0.0, due - now))  # 0 still lets the server send notifications
        plc.simulator.step(plc.line.sample_period_s)
        await plc.publish()
        n += 1
    elapsed = time.perf_counter() - start
    return {
        "tag_values_changed": plc.tag_values_changed - changed0,
        "publishes": n,
        "elapsed_s": elapsed,
        "cpu_s": time.process_time() - cpu0,
    }


async def _main(config: dict[str, str]) -> None:
    cfg = PlcConfig(
        line_id="heat-train",
        operator_password="bench-operator",
        reader_password="bench-reader",
        port=0,
        cert_dir=Path(config["cert_dir"]),
        trusted_client_certs=(Path(config["trusted"]),),
        tick_s=3600.0,  # the bench paces the publications itself
        heartbeat_timeout_s=3600.0,
        start_time=datetime.fromisoformat(config["start_time"]),
    )
    async with PlcServer(cfg) as plc:
        print(json.dumps({"url": plc.endpoint_url, "fingerprint": plc.certificate_fingerprint}), flush=True)
        while line := (await asyncio.to_thread(sys.stdin.readline)).strip():
            rate, seconds = (float(x) for x in line.split())
            print(json.dumps(await _feed(plc, rate, seconds)), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(json.loads(sys.argv[1])))
