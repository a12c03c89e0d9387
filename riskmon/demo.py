"""``riskmon demo``: the whole thing on one machine, with the alerts as they come.

Starts the local stack (Kafka broker and Redis) when it is not running, a worker, and
the traffic simulator producing to the input topics at a steady rate; prints every
alert and account action as it arrives, and a status line every few seconds. Stops
what it started at the end (``--keep-stack`` leaves the stack up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from riskmon.logs import get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.demo")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to run")
    parser.add_argument("--rate", type=float, default=300.0, help="simulated events per second")
    parser.add_argument("--users", type=int, default=400, help="simulated users")
    parser.add_argument("--days", type=int, default=4, help="simulated days of traffic")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis up")


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            data: dict[str, Any] = orjson.loads(resp.read())
            return data
    except OSError:
        return None


def _ready(health: dict[str, Any]) -> str:
    types = (health.get("models") or {}).get("types", {})
    return "; ".join(f"{t}: {', '.join(v.get('ready', [])) or '-'}" for t, v in types.items())


def _fmt_alert(a: dict[str, Any]) -> str:
    reasons = "; ".join(r.get("detail") or r["code"] for r in a.get("reasons", [])[:3])
    return (
        f"ALERT  {a['event_ts'][:19]}  {a['severity']:<8} score {a['score']:.2f}  "
        f"user {a['user_id']:<10} {a['event_type']:<11} {reasons}"
    )


def _fmt_adjustment(a: dict[str, Any]) -> str:
    target = f"application {a['application_id']}" if a.get("application_id") else "account"
    return (
        f"ACTION {a['event_ts'][:19]}  {a['action']:<8} {target} of user {a['user_id']}"
        f" until {a.get('expires_at', '')[:16]}"
    )


async def _watch(settings: Settings, seconds: float, worker_port: int, sim: Any) -> Counter[str]:
    from aiokafka import AIOKafkaConsumer

    t = settings.topics
    consumer = AIOKafkaConsumer(
        t.alerts,
        t.adjustments,
        t.decisions,
        t.deadletter,
        t.ops,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    counts: Counter[str] = Counter()
    started = last_status = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for rec in records:
                    value = orjson.loads(rec.value)
                    if tp.topic == t.alerts:
                        counts["alerts"] += 1
                        print(_fmt_alert(value), flush=True)
                    elif tp.topic == t.adjustments:
                        counts[f"action {value['action']}"] += 1
                        print(_fmt_adjustment(value), flush=True)
                    elif tp.topic == t.decisions:
                        counts[f"decision {value['decision']}"] += 1
                    elif tp.topic == t.deadletter:
                        counts["dead letters"] += 1
                    else:
                        counts["ops events"] += 1
                        print(f"OPS    {value}", flush=True)
            if time.monotonic() - last_status >= 10:
                last_status = time.monotonic()
                h = _health(worker_port) or {}
                decided = sum(v for k, v in counts.items() if k.startswith("decision"))
                print(
                    f"-- {int(last_status - started)}s: {decided} decisions, "
                    f"{counts['alerts']} alerts, {counts['dead letters']} dead letters; worker "
                    f"{'healthy' if h.get('ok') else 'NOT HEALTHY'}, models ready: "
                    f"{_ready(h) or 'warming up'}",
                    flush=True,
                )
            if sim.poll() is not None and not batch and time.monotonic() - last_status > 5:
                break
    finally:
        await consumer.stop()
    return counts


def _port_taken(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1 already."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskmon.stack import stack_down, stack_status, stack_up

    port = settings.worker.web_port
    if _port_taken(port):
        print(
            f"port {port} is taken (a worker already running?): the demo's worker serves "
            f"/health there. Stop that process, or give the demo another port: "
            f"RISKMON_WORKER__WEB_PORT={port + 1} riskmon demo",
            file=sys.stderr,
        )
        return 1
    status = stack_status(settings)
    already_up = bool(status.get("kafka", {}).get("answers")) and bool(
        status.get("redis", {}).get("answers")
    )
    if not already_up:
        print("starting the local stack (Kafka broker and Redis) ...", flush=True)
        stack_up(settings)
    stack_dir = Path(settings.stack_dir)
    stack_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    cli = [sys.executable, "-m", "riskmon.cli"]
    if args.config:
        cli += ["--config", args.config]
    worker_log = stack_dir / "demo-worker.log"
    worker = subprocess.Popen(
        [*cli, "worker"], stdout=worker_log.open("wb"), stderr=subprocess.STDOUT, env=env
    )
    sim: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 90
        while _health(settings.worker.web_port) is None:
            if worker.poll() is not None or time.monotonic() > deadline:
                print(worker_log.read_text()[-3000:], file=sys.stderr)
                print("the worker did not start; see above", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(
            f"worker up: http://127.0.0.1:{settings.worker.web_port}/health and /metrics",
            flush=True,
        )
        sim = subprocess.Popen(
            [
                *cli,
                "simulate",
                "--kafka",
                "--rate",
                str(args.rate),
                "--users",
                str(args.users),
                "--days",
                str(args.days),
                "--seed",
                str(args.seed),
                "--stealthy",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(stack_dir / "demo-sim.log").open("wb"),
            env=env,
        )
        print(f"simulated traffic: {args.rate:g} events/s; alerts and actions follow\n", flush=True)
        counts = asyncio.run(_watch(settings, args.seconds, settings.worker.web_port, sim))
        print("\nsummary:")
        for key, value in sorted(counts.items()):
            print(f"  {key:<20} {value:,}")
        print(f"worker log: {worker_log}")
        return 0
    finally:
        for proc in (sim, worker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
                if proc.poll() is None:
                    proc.kill()
        if not already_up and not args.keep_stack:
            stack_down(settings)
            print("stack stopped (it was started by the demo)")
