"""The store of scored vectors waiting for labels (``PendingStore``) as a live worker fills it.

    .venv/bin/python bench/bench_pending.py [--against COMMIT] [--blocks 1000 10000 40000]
        [--checkpoint 200000] [--replay] [--users 1000] [--days 7] [--seed 1]
        [--batch-size 15]

A worker adds each micro-batch's vectors as one block per event type, so with batches of
a few events and the default ``detection.pending_max`` of 200,000 a full store holds
tens of thousands of blocks of a handful of items. For stores of ``--blocks`` blocks of
5 items (full: every add evicts), the milliseconds per call of

* ``expire``: a batch's maturity and TTL step, one block coming due per call;
* ``add 15 at capacity``: a batch of 15 vectors added, the 15 oldest evicted;
* ``match user`` / ``match id``: a label on a user, on a transaction id.

``--checkpoint N`` also fills a model bank to ``N`` waiting vectors with batches of 15
synthetic events (three event types, a third of the features non-zero) and times its
checkpoint: the seconds the worker's lock is held (batches wait) and the seconds after
it (compression), the checkpoint's size and the seconds to restore it.

``--against`` measures a commit of this repository beside the working tree (in a
temporary git worktree); each tree runs in a process of its own. ``--replay`` also times
``riskmon replay --batch-size`` (live-sized batches) on the simulator's traffic in each
tree and checks that both write the same decisions, alerts and adjustments.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulated import add_events_options, events_of
from trees import env_for, trees

PER_BLOCK = 5
DAY = 86400.0
OPERATIONS = ("expire", "add 15 at capacity", "match user", "match id")


def measure(n_blocks: int, budget_s: float = 1.0) -> dict[str, float]:
    """Milliseconds per call of each operation on a full store of ``n_blocks`` blocks
    (the ``detectors`` package is the one first on ``sys.path``)."""
    from detectors.labels import PendingStore

    rng = random.Random(7)
    n_items = n_blocks * PER_BLOCK
    n_users = max(1, n_items // 3)
    store = PendingStore(30 * DAY, 45 * DAY, n_items)
    x = {"f": 1.0}
    for b in range(n_blocks):  # one batch a second
        ids = [f"e{b}-{k}" for k in range(PER_BLOCK)]
        store.add_many(
            ids,
            [(f"T{b}-{k}",) for k in range(PER_BLOCK)],
            [f"u{rng.randrange(n_users)}" for _ in ids],
            [b + k / 10 for k in range(PER_BLOCK)],
            "device",
            [x] * PER_BLOCK,
        )
    out: dict[str, float] = {}

    def timed(name: str, call: object) -> None:
        times: list[float] = []
        spent = 0.0
        k = 0
        while (spent < budget_s or len(times) < 3) and len(times) < 2000:
            t0 = time.perf_counter()
            call(k)  # type: ignore[operator]
            times.append(time.perf_counter() - t0)
            spent += times[-1]
            k += 1
        out[name] = statistics.median(times) * 1e3

    timed("expire", lambda k: store.expire(30 * DAY + k))  # block k matures
    fresh = iter(range(10**9))

    def add(k: int) -> None:
        ids = [f"n{next(fresh)}" for _ in range(15)]
        store.add_many(
            ids,
            [()] * 15,
            [f"u{rng.randrange(n_users)}" for _ in ids],
            [n_blocks + k + j / 100 for j in range(15)],
            "device",
            [x] * 15,
        )

    timed("add 15 at capacity", add)
    timed("match user", lambda k: store.match("user", f"u{rng.randrange(n_users)}", "u"))
    timed(
        "match id",
        lambda k: store.match("transaction", f"T{n_blocks - 1 - k}-{k % PER_BLOCK}", "u"),
    )
    return out


def checkpoint(n_items: int, batch: int = 15) -> dict[str, float]:
    """A model bank filled to ``n_items`` waiting vectors, checkpointed: seconds under
    the lock, seconds after it, megabytes, seconds to restore (best of two)."""
    import numpy as np

    from detectors.bank import ModelBank, ModelInput
    from riskmon.features import MODEL_COLUMNS
    from riskmon.settings import Settings

    settings = Settings.load(env={}, config_file=None).detection
    bank = ModelBank(settings, features=MODEL_COLUMNS)
    rng = np.random.default_rng(1)
    types = ["device", "application", "transaction"]
    t, i = 1.8e9, 0
    while len(bank.pending) < n_items:
        items = []
        for _ in range(batch):
            event_type = types[rng.integers(3)]
            cols = MODEL_COLUMNS[event_type]
            v = rng.lognormal(1, 1, len(cols)) * (rng.random(len(cols)) < 0.35)
            x = dict(zip(cols, np.round(v, 2).tolist(), strict=True))
            user = f"u{rng.integers(1_000_000)}"
            items.append(ModelInput(f"e{i}", event_type, user, (f"t{i}",), t, x))
            i, t = i + 1, t + 0.07
        bank.score_batch(items)
    best: dict[str, float] = {}
    for _ in range(2):
        t0 = time.perf_counter()
        if hasattr(bank, "snapshot"):  # pickled under the lock, compressed after it
            body = bank.snapshot()
            t1 = time.perf_counter()
            data = bank.seal(body)
        else:  # all of it under the lock
            data = bank.dumps()
            t1 = time.perf_counter()
        t2 = time.perf_counter()
        ModelBank.loads(data, settings)
        t3 = time.perf_counter()
        got = {"held": t1 - t0, "after": t2 - t1, "mb": len(data) / 1e6, "restore": t3 - t2}
        best = {k: min(v, best.get(k, v)) for k, v in got.items()}
    best["blocks"] = len(bank.pending._blocks)
    return best


def replay(tree: Path, events: Path, batch_size: int, out: Path) -> float:
    """Seconds of ``riskmon replay`` in ``tree`` (outputs under ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "riskmon.cli", "replay", str(events), "--seed", "1"]
    cmd += ["--batch-size", str(batch_size), "--no-progress"]
    for kind in ("decisions", "alerts", "adjustments"):
        cmd += [f"--{kind}", str(out / f"{kind}.jsonl")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=tree, capture_output=True, env=env_for(tree))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="a commit to measure beside the working tree")
    ap.add_argument("--blocks", type=int, nargs="+", default=[1000, 10000, 40000])
    ap.add_argument("--checkpoint", type=int, default=0, help="waiting vectors (0: none)")
    ap.add_argument("--replay", action="store_true", help="also time riskmon replay")
    ap.add_argument("--batch-size", type=int, default=15, help="replay micro-batch size")
    ap.add_argument("--tree", type=Path, help=argparse.SUPPRESS)  # one tree, JSON out
    add_events_options(ap)
    ap.set_defaults(users=1000, days=7)
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, str(args.tree))
        ops = {n: measure(n) for n in args.blocks}
        print(
            json.dumps({"ops": ops, "checkpoint": args.checkpoint and checkpoint(args.checkpoint)})
        )
        return 0
    events = events_of(args).resolve() if args.replay else None
    results: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, trees(args.against, Path(tmp)) as found:
        work = Path(tmp)
        for name, tree in found:
            cmd = [sys.executable, __file__, "--tree", str(tree)]
            cmd += ["--checkpoint", str(args.checkpoint), "--blocks"]
            run = subprocess.run(
                cmd + [str(n) for n in args.blocks],
                check=True,
                capture_output=True,
                text=True,
                cwd=tree,
                env=env_for(tree),
            )
            results[name] = json.loads(run.stdout)
            if events is not None:
                seconds[name] = replay(tree, events, args.batch_size, work / "out" / name)
        if events is not None and len(found) == 2:
            outs = [work / "out" / name for name, _ in found]
            for kind in ("decisions", "alerts", "adjustments"):
                if not filecmp.cmp(outs[0] / f"{kind}.jsonl", outs[1] / f"{kind}.jsonl", False):
                    print(f"the trees wrote different {kind}", file=sys.stderr)
                    return 1
    names = [name for name, _ in found]
    print(f"PendingStore, full, blocks of {PER_BLOCK} items: ms per call (median)\n")
    head = " | ".join(names) + (f" | {names[0]} / {names[1]}" if len(names) == 2 else "")
    print(f"| blocks | operation | {head} |")
    print("|---|---|" + "---|" * (len(names) + (len(names) == 2)))
    for n in args.blocks:
        for op in OPERATIONS:
            ms = [results[name]["ops"][str(n)][op] for name in names]
            cells = " | ".join(f"{v:.3f}" for v in ms)
            if len(ms) == 2:
                ratio = ms[0] / ms[1]
                cells += f" | {ratio:,.0f}x" if ratio >= 10 else f" | {ratio:.1f}x"
            print(f"| {n:,} | {op} | {cells} |")
    if args.checkpoint:
        print(f"\nmodel bank checkpoint, {args.checkpoint:,} waiting vectors\n")
        print("| tree | blocks | lock held (s) | after the lock (s) | MB | restore (s) |")
        print("|---|---|---|---|---|---|")
        for name in names:
            c = results[name]["checkpoint"]
            print(
                f"| {name} | {c['blocks']:,.0f} | {c['held']:.2f} | {c['after']:.2f} "
                f"| {c['mb']:.0f} | {c['restore']:.2f} |"
            )
    if events is not None:
        n_events = sum(1 for line in events.open("rb") if line.strip())
        what = f"riskmon replay --batch-size {args.batch_size}, {events.name}"
        print(f"\n{what}: {n_events:,} events\n")
        print("| tree | seconds | events/s |")
        print("|---|---|---|")
        for name in names:
            print(f"| {name} | {seconds[name]:.1f} | {n_events / seconds[name]:,.0f} |")
        if len(names) == 2:
            print("\nboth trees wrote the same decisions, alerts and adjustments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
