"""Where the replay's time goes: microseconds per event for each stage of the core.

    .venv/bin/python bench/bench_stages.py [--users 3000] [--days 14] [--seed 1]
        [--events EVENTS.jsonl]

Runs ``riskmon replay``'s loop (:class:`riskmon.replay.Replay`) twice over the same
events, each time on fresh state: first untouched, for the events/s it reaches; then with
a timer around each stage (contract check, the keys a batch needs, store load, features,
rules, model vectors, maturity, model scoring and learning, decisions, store save).
Timers cost about half a microsecond per call, so the second pass is a little slower; the
shares are what to read. "other" is the rest of the loop: event-time sort, duplicate
check, user documents, labels, writing the outputs.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from simulated import add_events_options, events_of

import detectors.bank as bank_mod
import riskmon.contract as contract_mod
import riskmon.core as core_mod
import riskmon.store as store_mod
import rules.engine as engine_mod
from riskmon.core import Core
from riskmon.replay import Replay, read_lines
from riskmon.settings import Settings

ROOT = Path(__file__).resolve().parent.parent

#: (label, owner, attribute): the functions timed, in pipeline order
STAGES: tuple[tuple[str, Any, str], ...] = (
    ("contract check (parse)", contract_mod.Contract, "parse"),
    ("keys a batch needs", core_mod.Core, "needs"),
    ("store load", store_mod.MemoryStore, "load"),
    ("features (observe)", core_mod, "observe"),
    ("rules", engine_mod.RuleSet, "evaluate"),
    ("model vectors", core_mod, "event_vector"),
    ("maturity (on_time)", bank_mod.ModelBank, "on_time"),
    ("models (score_batch)", bank_mod.ModelBank, "score_batch"),
    ("decisions and outputs", core_mod.Core, "_decide"),
    ("store save", store_mod.MemoryStore, "save"),
)


@contextmanager
def timed(spent: dict[str, float]) -> Iterator[None]:
    """Wrap every stage with a timer adding its seconds to ``spent``; undo on exit."""
    saved = []
    for label, owner, name in STAGES:
        original = getattr(owner, name)
        saved.append((owner, name, original))

        def wrapper(
            *args: Any, _f: Callable[..., Any] = original, _label: str = label, **kwargs: Any
        ) -> Any:
            t0 = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - t0

        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def replay(settings: Settings, events: Path) -> tuple[int, float]:
    """Lines replayed and seconds, on fresh state, outputs to memory."""
    core = Core.create(settings, deterministic=True)
    summary = Replay(settings, core).run(read_lines(events), io.BytesIO())
    return summary.lines, summary.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_events_options(ap)
    args = ap.parse_args()
    path = events_of(args)
    settings = Settings.load(config_file=None)

    lines, seconds = replay(settings, path)
    spent: dict[str, float] = defaultdict(float)
    with timed(spent):
        _, timed_seconds = replay(settings, path)
    print(f"{path.name}: {lines:,} events; untimed pass {lines / seconds:,.0f} events/s")
    print()
    print("| stage | us/event | share |")
    print("|---|---|---|")
    for label, _, _ in STAGES:
        print(
            f"| {label} | {spent[label] / lines * 1e6:.1f} | {spent[label] / timed_seconds:.0%} |"
        )
    other = timed_seconds - sum(spent.values())
    print(f"| other | {other / lines * 1e6:.1f} | {other / timed_seconds:.0%} |")
    print(f"| **total (timed pass)** | **{timed_seconds / lines * 1e6:.1f}** | 100% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
