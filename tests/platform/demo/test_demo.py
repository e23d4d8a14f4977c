"""`twinops demo` brings the whole platform up against the simulated plant, collects every tag, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(pattern: str, log: Path, proc: subprocess.Popen[bytes], timeout_s: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        assert proc.poll() is None, f"demo exited early:\n{log.read_text(errors='replace')[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"{pattern!r} not seen within {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.mark.slow  # starts the whole platform and plant: about a minute on 2 cores
def test_the_demo_collects_every_tag_of_both_lines_and_stops_cleanly(tmp_path: Path) -> None:
    # Its own data directory and no DATABASE_URL/REDIS_URL: the demo starts its own embedded servers, as on a
    # fresh machine.
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TWINOPS_ENV"}}
    env["TWINOPS_HOME"] = str(tmp_path / "home")
    web, plc = _free_port(), _free_port() + 10
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twinops",
                "demo",
                "--days",
                "0.1",
                "--no-train",
                "--port",
                str(web),
                "--plc-port",
                str(plc),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = _wait_for(r"database: \S+ via (\S+)", log, proc, timeout_s=240).group(1)
        assert f"http://127.0.0.1:{web}/" in log.read_text()
        with psycopg.connect(url) as conn:
            tags = conn.execute(
                "SELECT l.key, t.name, t.id FROM lines_tag t JOIN lines_line l ON l.id = t.line_id WHERE t.active"
            ).fetchall()
            assert {key for key, _, _ in tags} == {"vdv-reactor", "heat-train"}
            modes = dict(conn.execute("SELECT key, mode FROM lines_line").fetchall())
            assert modes == {"vdv-reactor": "advisory", "heat-train": "advisory"}  # the demo shows the whole loop
            # The backfilled history ends where each line's generated CSV ends; anything later came in live.
            history_end = max(
                datetime.fromisoformat(csv.read_text().rstrip().rsplit("\n", 1)[1].split(",", 1)[0])
                for csv in (tmp_path / "home" / "demo" / "onboarding").glob("*.csv")
            )
            deadline = time.monotonic() + 120
            missing: list[str] = []
            while time.monotonic() < deadline:  # live samples (newer than start-up) for every tag of both lines
                rows = conn.execute(
                    "SELECT DISTINCT tag_id FROM telemetry_sample WHERE ts > %s", (history_end,)
                ).fetchall()
                fresh = {r[0] for r in rows}
                missing = [f"{k}.{n}" for k, n, i in tags if i not in fresh]
                if not missing:
                    break
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                time.sleep(2)
            assert not missing, f"no live samples for {missing}"
        _the_plc_grants_least_privilege(tmp_path / "home", plc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        proc.wait(timeout=90)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "Stopped." in text


def _the_plc_grants_least_privilege(home: Path, plc_port: int) -> None:
    """The collectors' read-only account cannot write setpoints; only the platform's client certificate is trusted."""
    from asyncua.ua.uaerrors import BadCertificateUntrusted, BadUserAccessDenied

    from twinops.opcua.certs import certificate_fingerprint
    from twinops.opcua.client import connect_pinned

    url = f"opc.tcp://127.0.0.1:{plc_port}/twinops/vdv-reactor"
    fingerprint = certificate_fingerprint((home / "demo" / "plc-certs" / "vdv-reactor-server-cert.der").read_bytes())
    reader = (home / "demo" / "plc-reader-password").read_text().strip()

    async def check() -> None:
        async with connect_pinned(
            url, fingerprint=fingerprint, client_cert_dir=home / "opcua", username="collector", password=reader
        ) as client:
            with pytest.raises(BadUserAccessDenied):
                await client.get_node("ns=2;s=vdv-reactor.F").write_value(1.0)
        with pytest.raises(BadCertificateUntrusted):
            async with connect_pinned(
                url, fingerprint=fingerprint, client_cert_dir=home / "stranger", username="collector", password=reader
            ):
                pass

    asyncio.run(check())
