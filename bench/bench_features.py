"""Feature cost per event: ``riskmon.features.observe`` on the simulator's traffic.

Feeds the events through ``observe`` the way the core does (micro-batches of the worker's
size, event-time order within a batch, state in a ``MemoryStore``) and prints
microseconds per event by event type, and per event for the store's load and save. Only
the features run: no rules, no models, no decisions. Times are the best of ``--repeat``
passes, each over fresh state.

    .venv/bin/python bench/bench_features.py [--users 3000] [--days 14] [--seed 1]
        [--events EVENTS.jsonl] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
from simulated import add_events_options, events_of

from riskmon.contract import parse_ts
from riskmon.features import ident_keys, observe
from riskmon.settings import Settings
from riskmon.store import MemoryStore, needs_for

ROOT = Path(__file__).resolve().parent.parent
RISKMON = str(ROOT / ".venv" / "bin" / "riskmon")
TYPES = ("device", "transaction", "application")


def one_pass(batches: list[list[dict[str, Any]]]) -> tuple[dict[str, float], Counter[str]]:
    """Seconds spent and events seen, per event type and for the store."""
    spent: dict[str, float] = defaultdict(float)
    seen: Counter[str] = Counter()
    store = MemoryStore()
    clock = time.perf_counter
    for batch in batches:
        t0 = clock()
        state = store.load(needs_for(batch, ident_keys))
        spent["store"] += clock() - t0
        for ts, _, event in sorted((parse_ts(e["ts"]), i, e) for i, e in enumerate(batch)):
            state.now = max(state.now, ts)
            etype = event["event_type"]
            if etype == "label":
                continue
            user = state.user_for(event.get("user_id") or "", ts)
            t0 = clock()
            observe(event, ts, user, state.idents)
            spent[etype] += clock() - t0
            seen[etype] += 1
        t0 = clock()
        store.save(state)
        spent["store"] += clock() - t0
        seen["store"] += len(batch)
    return spent, seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_events_options(ap)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    path = events_of(args)
    with path.open("rb") as fh:
        events = [orjson.loads(line) for line in fh if line.strip()]
    size = Settings.load(config_file=None).worker.batch_size
    batches = [events[i : i + size] for i in range(0, len(events), size)]
    best: dict[str, float] = {}
    seen: Counter[str] = Counter()
    for _ in range(max(1, args.repeat)):
        spent, seen = one_pass(batches)
        for key, seconds in spent.items():
            best[key] = min(best.get(key, seconds), seconds)
    decided = sum(seen[t] for t in TYPES)
    print(f"{path.name}: {len(events):,} events, batches of {size}, best of {args.repeat}")
    print(f"{'what':<22}{'events':>9}{'us/event':>10}")
    for etype in TYPES:
        if seen[etype]:
            print(
                f"{'observe ' + etype:<22}{seen[etype]:>9,}{best[etype] / seen[etype] * 1e6:>10.1f}"
            )
    observed = sum(best.get(t, 0.0) for t in TYPES)
    print(f"{'observe (all)':<22}{decided:>9,}{observed / max(1, decided) * 1e6:>10.1f}")
    print(
        f"{'store load + save':<22}{seen['store']:>9,}{best['store'] / seen['store'] * 1e6:>10.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
