"""The simulator's traffic for the benchmarks: ``riskmon simulate`` run once per call."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def simulate(
    users: int, days: int, seed: int, work: Path, *, stealthy: bool = True
) -> tuple[Path, Path]:
    """Write the events and the truth of ``riskmon simulate`` under ``work``; return both
    paths. The settings name the files; the simulator is deterministic for them."""
    stem = f"sim-{users}u-{days}d-{seed}{'-stealthy' if stealthy else ''}"
    events, truth = work / f"{stem}.jsonl", work / f"{stem}-truth.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "riskmon.cli", "simulate", "--users", str(users)]
    cmd += ["--days", str(days), "--seed", str(seed), "--out", str(events), "--truth", str(truth)]
    cmd += ["--stealthy"] if stealthy else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    return events, truth


def add_events_options(ap: argparse.ArgumentParser) -> None:
    """``--users --days --seed --work`` for simulated traffic, or ``--events`` to use a
    file instead (see :func:`events_of`)."""
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--events", type=Path, help="events to use instead of simulating")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench")


def events_of(args: argparse.Namespace) -> Path:
    """The ``--events`` file, else the simulator's traffic for the options."""
    path: Path = args.events or simulate(args.users, args.days, args.seed, args.work)[0]
    return path
