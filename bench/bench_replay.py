"""Replay throughput and detection quality on the simulator's traffic.

    .venv/bin/python bench/bench_replay.py [--users 3000] [--days 21] [--seed 1] [--record]

Generates traffic with ``riskmon simulate`` (normal and stealthy mode), replays it with
``riskmon replay`` (the worker's core, one process, one core), evaluates it with
``riskmon evaluate`` and prints one table: events/s, money caught in time, honest users
flagged, average precision. ``--record`` appends the table to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from simulated import simulate

ROOT = Path(__file__).resolve().parent.parent
RISKMON = str(ROOT / ".venv" / "bin" / "riskmon")
TYPES = ("application", "transaction", "device")


def _num(value: object) -> float:
    """A metric of the evaluation report (``None`` when undefined) as a float."""
    return float(value) if isinstance(value, int | float) else float("nan")


def sh(*args: str) -> str:
    res = subprocess.run([RISKMON, *args], check=True, capture_output=True, text=True)
    return res.stdout


def one(mode: str, users: int, days: int, seed: int, work: Path) -> dict[str, Any]:
    ev, truth = simulate(users, days, seed, work, stealthy=mode == "stealthy")
    dec = work / f"{mode}-dec.jsonl"
    lines = sum(1 for _ in ev.open("rb"))
    t0 = time.perf_counter()
    out = sh("replay", str(ev), "--decisions", str(dec), "--no-progress")
    wall = time.perf_counter() - t0
    m = re.search(r"events/s\s+([\d,]+)", out)
    core_eps = float(m.group(1).replace(",", "")) if m else lines / wall
    report = work / f"{mode}-eval.json"
    sh(
        "evaluate",
        str(ev),
        str(truth),
        str(dec),
        "--json",
        str(report),
        "--plot",
        str(work / f"{mode}-eval.png"),
    )
    metrics = json.loads(report.read_text())
    return {
        "mode": mode,
        "events": lines,
        "core_eps": core_eps,
        "wall_eps": lines / wall,
        "metrics": metrics,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = [one(m, args.users, args.days, args.seed, args.work) for m in ("normal", "stealthy")]
    rows = [
        "| traffic | events | replay events/s (core) | events/s (process) | money caught in time "
        "| honest users flagged | AP application | AP transaction | AP device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["metrics"]
        ap_ = m.get("average_precision", {})
        rows.append(
            f"| {r['mode']} | {r['events']:,} | {r['core_eps']:,.0f} | {r['wall_eps']:,.0f} "
            f"| {m['money_caught_in_time']['overall']['share']:.1%} "
            f"| {m['honest_flag_rate']['overall']['rate']:.2%} "
            + "".join(f"| {_num(ap_.get(t)):.3f} " for t in TYPES)
            + "|"
        )
    table = "\n".join(rows)
    print(table)
    for r in results:
        m = r["metrics"]
        per = m["money_caught_in_time"].get("by_pattern", {})
        print(
            f"{r['mode']}: money caught in time per pattern: "
            + ", ".join(f"{k} {v['share']:.0%}" for k, v in sorted(per.items()))
        )
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        cmd = (
            f".venv/bin/python bench/bench_replay.py --users {args.users} --days {args.days} "
            f"--seed {args.seed}"
        )
        with (ROOT / "docs" / "benchmarks.md").open("a") as fh:
            fh.write(f"\n### Simulator traffic, {stamp}\n\n`{cmd}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
