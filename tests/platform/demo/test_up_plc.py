"""`twinops up` serves a line whose spec names its PLC: collector and release agent run, beat, and stop with it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.platform.proctable import descendants, proc_table, wait_all_gone
from twinops.opcua.certs import certificate_fingerprint, client_certificate_ensure
from twinops.opcua.client import connect_pinned

LINE = "heat-train"
WRITE, READ = "op-secret-for-tests", "reader-secret-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check, what: str, log: Path, timeout_s: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {timeout_s} s:\n{log.read_text(errors='replace')[-3000:]}")


def _plc_state(url: str, home: Path) -> tuple[int, bool]:
    """Return the PLC's heartbeat counter and fallback flag, read with the read-only account."""
    fingerprint = certificate_fingerprint((home / "plc-certs" / f"{LINE}-server-cert.der").read_bytes())

    async def read() -> tuple[int, bool]:
        async with connect_pinned(
            url, fingerprint=fingerprint, client_cert_dir=home / "opcua", username="collector", password=READ
        ) as client:
            beat = await client.get_node(f"ns=2;s={LINE}.heartbeat").read_value()
            fallback = await client.get_node(f"ns=2;s={LINE}.fallback_active").read_value()
            return int(beat), bool(fallback)

    return asyncio.run(read())


@pytest.mark.slow  # a PLC, the web server, PostgreSQL and Redis, a collector and a release agent: ~1 min on 2 cores
def test_up_runs_a_configured_lines_collector_and_release_agent_which_beat_and_stop_with_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "TWINOPS_ENV"}}
    env |= {"TWINOPS_HOME": str(home)}
    client_cert = client_certificate_ensure(home / "opcua")  # what up's children present (their default)
    plc_port = _free_port()
    url = f"opc.tcp://127.0.0.1:{plc_port}/twinops/{LINE}"
    plc_log = tmp_path / "plc.log"
    with open(plc_log, "wb") as out:
        plc = subprocess.Popen(
            [sys.executable, "-m", "plantsim", "serve", "--line", LINE, "--port", str(plc_port), "--speed", "1"]
            + ["--cert-dir", str(home / "plc-certs"), "--trust-client", str(client_cert.cert)]
            + ["--heartbeat-timeout", "5"],
            env={**env, "PLANTSIM_OPERATOR_PASSWORD": WRITE, "PLANTSIM_READER_PASSWORD": READ},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    up = None
    try:
        _wait(lambda: "Ctrl-C stops." in plc_log.read_text(), "the PLC listening", plc_log, 60)
        spec = subprocess.run(
            [sys.executable, "-m", "plantsim", "spec", "--line", LINE], capture_output=True, text=True, check=True
        ).stdout
        spec += (  # the certificate by file, relative to TWINOPS_HOME; the accounts, never their passwords
            f"  endpoint: {url}\n  server_certificate: plc-certs/{LINE}-server-cert.der\n"
            "  write_account: operator\n  read_account: collector\n"
        )
        (tmp_path / "spec.yaml").write_text(spec)
        subprocess.run(
            [sys.executable, "-m", "twinops", "line", "onboard", str(tmp_path / "spec.yaml")], env=env, check=True
        )
        secret = home / "plc-secrets" / f"{LINE}.write-password"
        secret.parent.mkdir()
        secret.write_text(WRITE)
        secret.chmod(0o600)

        log = tmp_path / "up.log"
        with open(log, "wb") as out:
            up = subprocess.Popen(
                [sys.executable, "-m", "twinops", "up", "--no-worker", "--no-beat", "--port", str(_free_port())],
                env={**env, "TWINOPS_PLC_HEAT_TRAIN_READ_PASSWORD": READ},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(lambda: "release agent heat-train: started" in log.read_text(), "up with the agent", log, 240)
        started = descendants(up.pid, proc_table())
        names = " | ".join(p.cmdline for p in started)
        assert f"collect {LINE}" in names and f"release-agent {LINE}" in names
        assert WRITE not in names and READ not in names  # passwords travel in the environment, not in ps

        first, _ = _plc_state(url, home)  # 0 until a platform beats: the PLC fell back 5 s after it started
        _wait(lambda: _plc_state(url, home)[0] != first, "the release agent's first heartbeat", log, 90)
        time.sleep(7)  # longer than the PLC's heartbeat timeout: only a beating agent keeps it out of fallback
        beat, fallback = _plc_state(url, home)
        time.sleep(3)
        assert _plc_state(url, home)[0] != beat and not fallback, "the agent started by up stopped beating"
        collector_log = home / "logs" / f"collector-{LINE}.log"
        assert "Collecting" in collector_log.read_text(), collector_log.read_text()[-2000:]

        up.send_signal(signal.SIGTERM)
        left = wait_all_gone(started, timeout_s=90)
        assert not left, "left behind: " + "; ".join(f"{p.pid} {p.cmdline}" for p in left)
        up.wait(timeout=30)
        assert up.returncode == 0 and "Stopped." in log.read_text()
        _wait(lambda: _plc_state(url, home)[1], "the PLC's fallback once up stopped", plc_log, 20)
    finally:
        if up is not None and up.poll() is None:
            up.kill()
            up.wait()
        plc.send_signal(signal.SIGTERM)
        plc.wait(timeout=30)
