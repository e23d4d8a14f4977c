"""Command line: serve the PLCs, export spec + history, print a spec."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from plantsim.history import export_line
from plantsim.plc import PlcConfig, PlcServer
from plantsim.simulator import available_lines, make_line
from plantsim.spec import line_spec


def _lines(arg: list[str]) -> list[str]:
    chosen = available_lines() if "all" in arg else arg
    for line_id in chosen:
        if line_id not in available_lines():
            raise SystemExit(f"unknown line {line_id!r}; choose from {', '.join(available_lines())} or all")
    return list(dict.fromkeys(chosen))


def _progress_bar(label: str):  # type: ignore[no-untyped-def]
    shown = [-1]

    def draw(done: int, total: int) -> None:
        width = 40
        if 100 * done // total == shown[0]:
            return
        shown[0] = 100 * done // total
        filled = int(width * done / total)
        sys.stderr.write(f"\r{label:<12} [{'#' * filled}{'.' * (width - filled)}] {100 * done // total:3d}%")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return draw


def _export(args: argparse.Namespace) -> int:
    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")) if args.end else datetime.now(UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    for line_id in _lines(args.line):
        period = make_line(line_id).sample_period_s
        # end on a whole sample period so re-exports line up with each other
        end_aligned = datetime.fromtimestamp(end.timestamp() // period * period, UTC)
        spec_path, csv_path = export_line(
            line_id,
            Path(args.out),
            days=args.days,
            end=end_aligned,
            seed=args.seed,
            on_progress=_progress_bar(line_id),
            bad_token=args.bad_token,
        )
        print(f"{line_id}: spec {spec_path}  history {csv_path}")
    return 0


def _spec(args: argparse.Namespace) -> int:
    for line_id in _lines(args.line):
        sys.stdout.write(yaml.safe_dump(line_spec(make_line(line_id)), sort_keys=False))
    return 0


async def _serve(args: argparse.Namespace) -> int:
    password = args.operator_password or os.environ.get("PLANTSIM_OPERATOR_PASSWORD")
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    reader_password = args.reader_password or os.environ.get("PLANTSIM_READER_PASSWORD")
    for cert in args.trust_client:
        if not cert.is_file():
            raise SystemExit(f"--trust-client {cert}: no such certificate file")
    if args.published_log:
        args.published_log.mkdir(parents=True, exist_ok=True)
    plcs = []
    for i, line_id in enumerate(_lines(args.line)):
        cfg = PlcConfig(
            line_id=line_id,
            operator_user=args.operator_user,
            operator_password=password,
            reader_user=args.reader_user,
            reader_password=reader_password,
            host=args.host,
            port=args.port + i if args.port else 0,
            cert_dir=args.cert_dir,
            trusted_client_certs=tuple(args.trust_client),
            allow_insecure=args.allow_insecure,
            allow_anonymous_read=args.allow_anonymous_read,
            speed=args.speed,
            heartbeat_timeout_s=args.heartbeat_timeout,
            initial_mode=args.mode,
            seed=args.seed + i,
            published_log=args.published_log / f"{line_id}.tsv" if args.published_log else None,
        )
        plcs.append(PlcServer(cfg))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for plc in plcs:
            await plc.start()
            security = "Basic256Sha256 Sign, SignAndEncrypt" + (" + None (insecure)" if args.allow_insecure else "")
            print(f"{plc.line.id}: {plc.endpoint_url}  [{security}]  speed {args.speed:g}x")
            if plc.certificate_fingerprint:
                print(f"  server certificate {plc.certificate.cert} sha256 {plc.certificate_fingerprint}")  # type: ignore[union-attr]
        print(f"operator account: {args.operator_user}" + (f" / {password} (generated)" if generated else ""))
        if reader_password:
            print(f"reader account (read-only): {args.reader_user}")
        if args.cert_dir is not None:
            trusted = len(args.trust_client)
            print(
                f"trusted client certificates: {trusted}" + ("" if trusted else " (every secured session is refused)")
            )
        print("Ctrl-C stops.", flush=True)
        await stop.wait()
    finally:
        for plc in plcs:
            await plc.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `python -m plantsim`."""
    parser = argparse.ArgumentParser(prog="python -m plantsim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    line_help = f"line id ({', '.join(available_lines())}) or all; repeatable"

    serve = sub.add_parser("serve", help="run the lines' PLCs (OPC UA servers) until Ctrl-C")
    serve.add_argument("--line", action="append", required=True, help=line_help)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4840, help="first line's port; next lines use the following ones")
    serve.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second")
    serve.add_argument("--cert-dir", type=Path, help="server certificates are generated here once, then reused")
    serve.add_argument("--allow-insecure", action="store_true", help="development only: also offer security None")
    serve.add_argument("--operator-user", default="operator")
    serve.add_argument("--operator-password", help="default: $PLANTSIM_OPERATOR_PASSWORD, else a generated one")
    serve.add_argument("--reader-user", default="collector", help="the read-only account (read, browse, subscribe)")
    serve.add_argument("--reader-password", help="default: $PLANTSIM_READER_PASSWORD; neither: no reader account")
    serve.add_argument(
        "--trust-client",
        action="append",
        type=Path,
        default=[],
        metavar="CERT",
        help="a client certificate (DER) allowed to open a session; repeatable; any other is refused",
    )
    serve.add_argument(
        "--allow-anonymous-read", action="store_true", help="anonymous sessions may read (never write); default off"
    )
    serve.add_argument("--heartbeat-timeout", type=float, default=10.0, help="wall seconds before safe fallback")
    serve.add_argument("--mode", choices=["LOCAL", "REMOTE"], default="REMOTE")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--published-log",
        type=Path,
        help="directory: append each changed CV/DV value published to <line>.tsv (tag, source time, value)",
    )

    export = sub.add_parser("export", help="write <line>.yaml (spec) and <line>.csv (history with step tests)")
    export.add_argument("--line", action="append", required=True, help=line_help)
    export.add_argument("--days", type=float, default=3.0)
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--end", help="ISO-8601 UTC end of the history (default: now)")
    export.add_argument("--bad-token", default="", help="how bad values are written: '' (default) or e.g. Bad")

    spec = sub.add_parser("spec", help="print the line spec YAML")
    spec.add_argument("--line", action="append", required=True, help=line_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "spec":
        return _spec(args)
    if args.cert_dir is None and not args.allow_insecure:
        raise SystemExit("serve needs --cert-dir (or --allow-insecure for development)")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_serve(args))
