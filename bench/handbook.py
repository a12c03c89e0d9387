"""The Fraud Detection Handbook benchmark, end to end, in one command.

    .venv/bin/python bench/handbook.py [--data ../shared/benchmarks/handbook/transactions.csv.gz]

1. converts the handbook's simulated card transactions to contract events (one
   ``transaction`` per row, a ``label`` 7 days later for every row), 2018-04-01 to the end
   of the test week, ordered by time;
2. runs ``riskmon replay`` over them: the monitor learns online as the stream goes;
3. scores the test week (2018-08-08..14) with the handbook's protocol (known compromised
   customers removed; AUC ROC, average precision, card precision@100) and prints the
   result beside the book's published table; ``--record`` appends it to
   ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import heapq
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "benchmarks" / "handbook" / "transactions.csv.gz"
START = datetime(2018, 4, 1, tzinfo=UTC)
TRAIN_START = datetime(2018, 7, 25, tzinfo=UTC)
TEST_START = datetime(2018, 8, 8, tzinfo=UTC)
TEST_END = datetime(2018, 8, 15, tzinfo=UTC)  # exclusive
DELAY = timedelta(days=7)

PUBLISHED = [
    ("logistic regression", 0.871, 0.606, 0.291),
    ("decision tree, depth 2", 0.763, 0.496, 0.241),
    ("random forest", 0.867, 0.658, 0.287),
    ("XGBoost", 0.862, 0.639, 0.273),
    ("XGBoost, model selection (best)", 0.869, 0.687, 0.303),
    ("feed-forward network, model selection", 0.876, 0.675, 0.303),
]


def _ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def read_rows(
    path: Path, start: datetime = START
) -> list[tuple[int, datetime, int, int, float, int]]:
    rows = []
    with gzip.open(path, "rt", newline="") as fh:
        for r in csv.DictReader(fh):
            dt = datetime.fromisoformat(r["TX_DATETIME"]).replace(tzinfo=UTC)
            if dt >= TEST_END or dt < start:
                continue
            rows.append(
                (
                    int(r["TRANSACTION_ID"]),
                    dt,
                    int(r["CUSTOMER_ID"]),
                    int(r["TERMINAL_ID"]),
                    float(r["TX_AMOUNT"]),
                    int(r["TX_FRAUD"]),
                )
            )
    rows.sort(key=lambda row: (row[1], row[0]))
    return rows


def events(rows: list[tuple[int, datetime, int, int, float, int]]) -> Iterator[bytes]:
    """Transactions and their labels 7 days later, merged in time order."""

    def txns() -> Iterator[tuple[datetime, int, int, bytes]]:
        for tid, dt, cust, term, amount, _ in rows:
            yield (
                dt,
                0,
                tid,
                orjson.dumps(
                    {
                        "event_id": f"tx-{tid}",
                        "event_type": "transaction",
                        "ts": _ts(dt),
                        "user_id": f"c{cust}",
                        "txn_id": str(tid),
                        "kind": "payment",
                        "amount": amount,
                        "currency": "CNY",
                        "status": "success",
                        "account_hash": f"t{term}",
                    }
                ),
            )

    def labels() -> Iterator[tuple[datetime, int, int, bytes]]:
        for tid, dt, cust, _, _, fraud in rows:
            due = dt + DELAY
            if due >= TEST_END:
                continue
            yield (
                due,
                1,
                tid,
                orjson.dumps(
                    {
                        "event_id": f"lb-{tid}",
                        "event_type": "label",
                        "ts": _ts(due),
                        "user_id": f"c{cust}",
                        "target_type": "transaction",
                        "target_id": str(tid),
                        "label": "fraud" if fraud else "legit",
                        "source": "chargeback",
                    }
                ),
            )

    for _, _, _, line in heapq.merge(txns(), labels()):
        yield line


def test_set(
    rows: list[tuple[int, datetime, int, int, float, int]],
) -> list[tuple[int, int, int, int]]:
    """(transaction id, test day 0..6, customer, fraud) after removing known compromised
    customers, as the handbook does."""
    known = {c for _, dt, c, _, _, f in rows if f and TRAIN_START <= dt < TRAIN_START + DELAY}
    frauds_by_day: dict[int, set[int]] = {}
    for _, dt, c, _, _, f in rows:
        if f:
            frauds_by_day.setdefault((dt - START).days, set()).add(c)
    out = []
    by_day: dict[int, list[tuple[int, int, int]]] = {}
    for tid, dt, c, _, _, f in rows:
        if TEST_START <= dt < TEST_END:
            by_day.setdefault((dt - TEST_START).days, []).append((tid, c, f))
    train_day0 = (TRAIN_START - START).days
    for day in range(7):
        known |= frauds_by_day.get(train_day0 + 7 + day - 1, set())
        out += [(tid, day, c, f) for tid, c, f in by_day.get(day, []) if c not in known]
    return out


def card_precision_at_k(
    day: np.ndarray, cust: np.ndarray, fraud: np.ndarray, score: np.ndarray, k: int = 100
) -> float:
    """The handbook's CP@k: per day, each customer's max score; top k customers; share
    with a fraud that day; customers detected on earlier days removed; mean over days."""
    detected: set[int] = set()
    per_day = []
    for d in sorted(set(day.tolist())):
        mask = day == d
        best: dict[int, tuple[float, int]] = {}
        for c, f, s in zip(
            cust[mask].tolist(), fraud[mask].tolist(), score[mask].tolist(), strict=True
        ):
            if c in detected:
                continue
            prev = best.get(c)
            best[c] = (max(s, prev[0]), max(f, prev[1])) if prev else (s, f)
        top = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
        hits = [c for c, (_, f) in top if f == 1]
        per_day.append(len(hits) / k)
        detected.update(hits)
    return float(np.mean(per_day))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "handbook")
    ap.add_argument(
        "--config",
        type=Path,
        default=ROOT / "config" / "handbook.yaml",
        help="settings for the replay",
    )
    ap.add_argument("--record", action="store_true", help="append the result to docs/benchmarks.md")
    ap.add_argument(
        "--start",
        default="2018-04-01",
        help="first day of the stream (the protocol: 2018-04-01; later is quicker)",
    )
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    events_path = args.work / "events.jsonl"
    decisions_path = args.work / "decisions.jsonl"

    t0 = time.perf_counter()
    stream_start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    rows = read_rows(args.data, stream_start)
    with events_path.open("wb") as fh:
        n = 0
        for line in events(rows):
            fh.write(line + b"\n")
            n += 1
    print(
        f"converted {len(rows):,} transactions to {n:,} events in {time.perf_counter() - t0:.0f}s",
        flush=True,
    )

    cmd = [str(ROOT / ".venv" / "bin" / "riskmon")]
    if args.config.exists():
        cmd += ["--config", str(args.config)]
    cmd += ["replay", str(events_path), "--decisions", str(decisions_path), "--no-progress"]
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    replay_s = time.perf_counter() - t1

    scores: dict[int, float] = {}
    with decisions_path.open("rb") as fh:
        for line in fh:
            d = orjson.loads(line)
            sid = d["source_event_id"]
            if sid.startswith("tx-"):
                scores[int(sid[3:])] = float(d["score"])
    test = test_set(rows)
    tids = np.array([t[0] for t in test])
    day = np.array([t[1] for t in test])
    cust = np.array([t[2] for t in test])
    fraud = np.array([t[3] for t in test])
    score = np.array([scores[t] for t in tids.tolist()])
    auc = roc_auc_score(fraud, score)
    apr = average_precision_score(fraud, score)
    cp = card_precision_at_k(day, cust, fraud, score, 100)

    lines = [
        f"stream from {args.start}; test week 2018-08-08..14: {len(test):,} transactions, "
        f"{int(fraud.sum()):,} frauds; "
        f"replay of {n:,} events took {replay_s:.0f}s ({n / replay_s:,.0f} events/s)",
        "",
        "| model | AUC ROC | AP | CP@100 |",
        "|---|---|---|---|",
        f"| **Riskmon, online (replay)** | **{auc:.3f}** | **{apr:.3f}** | **{cp:.3f}** |",
        *[f"| {name} (book) | {a:.3f} | {b:.3f} | {c:.3f} |" for name, a, b, c in PUBLISHED],
    ]
    print("\n".join(lines))
    if args.record:
        doc = ROOT / "docs" / "benchmarks.md"
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with doc.open("a") as fh:
            cmd = f".venv/bin/python bench/handbook.py --start {args.start}"
            fh.write(f"\n### Handbook benchmark, {stamp}\n\n`{cmd}`\n\n")
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
