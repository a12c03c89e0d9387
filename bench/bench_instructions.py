"""The replay's cost in instructions per event, the same on a busy or a quiet machine.

    .venv/bin/python bench/bench_instructions.py [--against COMMIT] [--users 1000]
        [--days 7] [--seed 1] [--events EVENTS.jsonl]

Wall-clock events/s moves by a third between runs on the shared machines this project is
measured on, whatever else runs. ``valgrind --tool=callgrind`` counts the instructions a
run executes instead: repeatable to a fraction of a percent (``PYTHONHASHSEED=0`` keeps
string hashing fixed). Each tree replays the events once and an empty file once; the
difference is the replay loop, without imports and start-up. ``--against`` measures a
commit of this repository beside the working tree (in a temporary git worktree) and
prints the ratio. Under callgrind a run takes about fifty times as long: the default
traffic (1,000 users, 7 days, about 15,000 events) takes two minutes a tree.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from simulated import add_events_options, events_of
from trees import env_for, trees

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def instructions(tree: Path, events: Path, work: Path) -> int:
    """Instructions callgrind counts for ``riskmon replay`` of ``events`` in ``tree``."""
    out = work / f"callgrind-{os.getpid()}.out"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", PYTHON]
    cmd += ["-m", "riskmon.cli", "replay", str(events), "--decisions", str(work / "d.jsonl")]
    cmd += ["--seed", "1", "--no-progress"]
    env = env_for(tree)
    env["PYTHONHASHSEED"] = "0"
    subprocess.run(cmd, check=True, capture_output=True, cwd=tree, env=env)
    match = re.search(r"^summary: (\d+)", out.read_text(), re.MULTILINE)
    out.unlink()
    if match is None:
        raise RuntimeError("callgrind wrote no summary")
    return int(match.group(1))


def loop_per_event(tree: Path, events: Path, n_events: int, work: Path) -> tuple[int, int]:
    """(instructions of the replay loop per event, instructions of start-up)."""
    empty = work / "empty.jsonl"
    empty.write_bytes(b"")
    start = instructions(tree, empty, work)
    return (instructions(tree, events, work) - start) // n_events, start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_events_options(ap)
    ap.set_defaults(users=1000, days=7)
    ap.add_argument("--against", help="a commit to measure beside the working tree")
    args = ap.parse_args()
    events = events_of(args).resolve()
    n_events = sum(1 for line in events.open("rb") if line.strip())
    rows = []
    with tempfile.TemporaryDirectory() as tmp, trees(args.against, Path(tmp)) as found:
        for name, tree in found:
            rows.append((name, *loop_per_event(tree, events, n_events, Path(tmp))))
    print(f"{events.name}: {n_events:,} events\n")
    print("| tree | instructions per event (replay loop) | start-up (instructions) |")
    print("|---|---|---|")
    for name, per_event, start in rows:
        print(f"| {name} | {per_event:,} | {start / 1e9:.2f}e9 |")
    if len(rows) == 2:
        print(f"\nworking tree / {rows[0][0]}: {rows[1][1] / rows[0][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
