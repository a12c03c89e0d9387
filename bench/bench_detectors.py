"""Per-event cost of every detector and of the model bank, on synthetic 80-feature events.

    .venv/bin/python bench/bench_detectors.py           # full run, a few minutes
    .venv/bin/python bench/bench_detectors.py --quick   # smaller streams

Times are CPU time of this process (``time.process_time``) in microseconds per event,
the best of a few repeats where a measurement can be repeated, so that other load on the
machine disturbs them less. "one-row" runs ``score_one`` + ``learn_one`` per event;
"batch" runs ``score_many`` + ``learn_many`` per micro-batch of 500 (the dict API,
vectorisation included). Learning costs include the refits of the batch models,
amortised over the stream.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from river import forest
from sklearn.metrics import roc_auc_score

from detectors.bank import ModelBank, ModelInput
from detectors.base import Detector, to_matrix
from detectors.drift import ScoreDrift
from detectors.labels import PendingStore
from detectors.online import HSTDetector
from detectors.registry import REGISTRY
from detectors.supervised import LogRegDetector
from riskmon.settings import DetectionSettings

D = 80
NAMES = tuple(f"f{i:02d}" for i in range(D))
BATCH = 500


def normal(n: int, seed: int) -> np.ndarray:
    """Ordinary events: a quarter each gaussian, log-normal, Poisson counts and 0/1 flags."""
    rng = np.random.default_rng(seed)
    q = D // 4
    X = np.empty((n, D))
    X[:, :q] = rng.normal(0.0, 1.0, size=(n, q))
    X[:, q : 2 * q] = rng.lognormal(3.0, 0.5, size=(n, q))
    X[:, 2 * q : 3 * q] = rng.poisson(3.0, size=(n, q))
    X[:, 3 * q :] = (rng.random(size=(n, D - 3 * q)) < 0.2).astype(float)
    return X


def anomalies(n: int, seed: int, k: int = 3) -> np.ndarray:
    """Ordinary events pushed far out on ``k`` of the gaussian or heavy-tailed features."""
    rng = np.random.default_rng(seed + 1)
    X = normal(n, seed)
    q = D // 4
    for row in X:
        for j in rng.choice(2 * q, size=k, replace=False):
            row[j] = rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 9.0) if j < q else row[j] * 6.0
    return X


def dicts(X: np.ndarray) -> list[dict[str, float]]:
    return [dict(zip(NAMES, row, strict=True)) for row in X.tolist()]


def labels(X: np.ndarray) -> list[bool]:
    return [bool(a + b > 2.5) for a, b in X[:, :2].tolist()]


def score_each(det: Detector, xs: list[dict[str, float]]) -> None:
    for x in xs:
        det.score_one(x)


def learn_each(det: Detector, xs: list[dict[str, float]], ys: list[bool] | None = None) -> None:
    for k, x in enumerate(xs):
        det.learn_one(x, None if ys is None else ys[k])


def score_learn_each(det: Detector, xs: list[dict[str, float]]) -> None:
    for x in xs:
        det.score_one(x)
        det.learn_one(x)


def score_learn_batches(det: Detector, xs: list[dict[str, float]]) -> None:
    for s in range(0, len(xs) - BATCH + 1, BATCH):
        chunk = xs[s : s + BATCH]
        det.score_many(chunk)
        det.learn_many(chunk)


def learn_batches(det: Detector, xs: list[dict[str, float]], ys: list[bool]) -> None:
    for s in range(0, len(xs), BATCH):
        det.learn_many(xs[s : s + BATCH], ys[s : s + BATCH])


def call_each(fn: Callable[[Any], Any], args: list[Any]) -> None:
    for a in args:
        fn(a)


def cpu(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Best CPU seconds of ``repeats`` runs of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for k, r in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if k == 0:
            print("  " + "  ".join("-" * w for w in widths))


def fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


# -- HST configurations --------------------------------------------------------------------


def bench_hst(n_stream: int) -> None:
    test = np.vstack([normal(1000, 900), anomalies(100, 901), anomalies(100, 902, k=20)])
    y_sparse = [0] * 1000 + [1] * 100
    rows = []
    for n_trees, height, subset in [
        (5, 4, None),
        (10, 4, None),
        (10, 6, None),
        (25, 4, None),
        (25, 8, None),
        (25, 4, 16),
    ]:
        det = HSTDetector(n_trees=n_trees, height=height, max_features=subset, warmup=500)
        X = normal(n_stream, 1)
        det.learn_many(dicts(X[:2000]))
        stream = dicts(X[2000:])

        t1 = cpu(partial(score_learn_each, det, stream[:1000])) / 1000
        batched = stream[1000 : 1000 + ((len(stream) - 1000) // BATCH) * BATCH]
        tb = cpu(partial(score_learn_batches, det, batched)) / len(batched)
        scores = det.score_many(dicts(test))
        rows.append(
            [
                f"{n_trees} trees, height {height}"
                + (f", {subset} features" if subset else "")
                + (" (default)" if (n_trees, height, subset) == (25, 4, None) else ""),
                fmt(t1 * 1e6),
                fmt(tb * 1e6),
                f"{t1 / tb:.0f}x",
                f"{roc_auc_score(y_sparse, scores[:1100]):.3f}",
                f"{roc_auc_score(y_sparse, scores[:1000] + scores[1100:]):.3f}",
            ]
        )
    table(
        "HST on 80 features: learn+score, us/event (AUC: 3 of 80 features pushed out / 20 of 80)",
        ["config", "one-row", "batch 500", "ratio", "AUC 3/80", "AUC 20/80"],
        rows,
    )


# -- every registered detector -------------------------------------------------------------


def bench_detectors(settings: DetectionSettings, n_stream: int) -> None:
    rows = []
    for name in REGISTRY:
        det = REGISTRY[name](settings)
        X = normal(n_stream + 3000, 2)
        ys = labels(X)
        xs = dicts(X)
        det.learn_many(xs[:3000], ys[:3000])
        stream, ys_stream = xs[3000:], ys[3000:]
        one = pickle.loads(pickle.dumps(det))
        l1 = cpu(partial(learn_each, one, stream, ys_stream)) / len(stream)
        lb = cpu(partial(learn_batches, det, stream, ys_stream)) / len(stream)
        probe = stream[:BATCH]
        n_one = 100 if name in ("ecod", "iforest") else BATCH
        s1 = cpu(partial(score_each, det, probe[:n_one]), 3) / n_one
        sb = cpu(partial(det.score_many, probe), 3) / BATCH
        assert det.ready, name
        rows.append(
            [
                name,
                fmt(s1 * 1e6),
                fmt(l1 * 1e6),
                fmt((s1 + l1) * 1e6),
                fmt(sb * 1e6),
                fmt(lb * 1e6),
                fmt((sb + lb) * 1e6),
                f"{(s1 + l1) / (sb + lb):.0f}x",
            ]
        )
    table(
        f"Detectors, us/event (reservoir {settings.reservoir_size}, refit every "
        f"{settings.batch_refit_every}, stream of {n_stream}; learning includes refits)",
        [
            "detector",
            "score 1-row",
            "learn 1-row",
            "1-row total",
            "score b500",
            "learn b500",
            "b500 total",
            "ratio",
        ],
        rows,
    )


def bench_pyod(reservoir: int) -> None:
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest

    R = normal(reservoir, 3)
    Xb = normal(BATCH, 4)
    rows = []
    for label, model in [
        ("pyod ECOD (pooled)", ECOD().fit(R)),
        ("pyod IForest, 50 trees", IForest(n_estimators=50, random_state=0).fit(R)),
    ]:
        rows_1 = [Xb[i : i + 1] for i in range(20)]
        one = cpu(partial(call_each, model.decision_function, rows_1), 3) / 20
        batch = cpu(partial(model.decision_function, Xb), 3) / BATCH
        rows.append([label, fmt(one * 1e6), fmt(batch * 1e6), f"{one / batch:.0f}x"])
    for name in ("ecod", "iforest"):
        det = REGISTRY[name](DetectionSettings(model_warmup=reservoir, reservoir_size=reservoir))
        det.learn_many(dicts(R))
        xs = dicts(Xb)
        one = cpu(partial(score_each, det, xs[:20]), 3) / 20
        batch = cpu(partial(det.score_many, xs), 3) / BATCH
        rows.append(
            [f"detector {name}.score", fmt(one * 1e6), fmt(batch * 1e6), f"{one / batch:.0f}x"]
        )
    table(
        f"pyod scoring, one-row calls vs one call on {BATCH} rows, us/row "
        f"(fitted on {reservoir} rows)",
        ["model", "1 row/call", f"{BATCH} rows/call", "ratio"],
        rows,
    )


def bench_supervised(n: int) -> None:
    X = normal(n, 5)
    ys = labels(X)
    xs = dicts(X)
    rows = []
    for label, model in [
        ("logreg (StandardScaler | LogisticRegression)", None),
        ("forest.ARFClassifier(n_models=10)", forest.ARFClassifier(n_models=10, seed=1)),
    ]:
        if model is None:
            det = LogRegDetector(min_positives=1, min_negatives=1)

            def run(det: LogRegDetector = det) -> None:
                for x, y in zip(xs, ys, strict=True):
                    det.score_one(x)
                    det.learn_one(x, y)
        else:

            def run(m: Any = model) -> None:
                for x, y in zip(xs, ys, strict=True):
                    m.predict_proba_one(x)
                    m.learn_one(x, y)

        rows.append([label, fmt(cpu(run) / n * 1e6)])
    table(
        "Supervised, one labelled event: score + learn, us/event",
        ["model", "us/event"],
        rows,
    )


# -- the bank ------------------------------------------------------------------------------


def inputs(X: np.ndarray, start: int, types: tuple[str, ...]) -> list[ModelInput]:
    return [
        ModelInput(
            f"e{start + k}",
            types[(start + k) % len(types)],
            f"u{(start + k) % 20000}",
            (f"A{(start + k) // 4}", f"T{start + k}"),
            1.7e9 + (start + k) * 0.05,
            x,
        )
        for k, x in enumerate(dicts(X))
    ]


def bank_cost(settings: DetectionSettings, types: tuple[str, ...], n_measure: int) -> dict:
    """Warm a bank until every model scores (the classifier needs matured negatives), then
    time ``score_batch`` alone."""
    bank = ModelBank(settings)
    start = 0
    warm = 7000 * len(types)
    while start < warm:
        bank.score_batch(inputs(normal(BATCH, start), start, types))
        start += BATCH
    frauds = inputs(anomalies(40 * len(types), start), start, types)
    bank.score_batch(frauds)
    start += len(frauds)
    for e in frauds:
        bank.on_label("transaction", e.targets[1], e.user_id, "fraud", e.ts)
    t_label = time.process_time()
    matured = bank.on_time(1.7e9 + settings.label_maturity_s + start * 0.05)
    t_label = time.process_time() - t_label
    ready = bank.status()["types"]
    batches = [inputs(normal(BATCH, s), s, types) for s in range(start, start + n_measure, BATCH)]
    gc.collect()
    t = time.process_time()
    for b in batches:
        bank.score_batch(b)
    spent = time.process_time() - t
    return {
        "us": spent / (len(batches) * BATCH) * 1e6,
        "ready": sorted({m for v in ready.values() for m in v["ready"]}),
        "learn_us": t_label / max(matured, 1) * 1e6,
    }


def bench_bank(n_measure: int, repeats: int) -> None:
    rows = []
    for reservoir, refit in [(4096, 5000), (1024, 5000), (256, 5000)]:
        settings = DetectionSettings(reservoir_size=reservoir, batch_refit_every=refit)
        for types in [("transaction",), ("transaction", "application", "device")]:
            runs = [bank_cost(settings, types, n_measure) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["us"])
            rows.append(
                [
                    f"reservoir {reservoir}, refit {refit}",
                    str(len(types)),
                    fmt(best["us"]),
                    " ".join(best["ready"]),
                    fmt(best["learn_us"]),
                ]
            )
    table(
        f"ModelBank.score_batch on batches of {BATCH}, us/event amortised over "
        f"{n_measure} events (refits included; best of {repeats})",
        ["settings", "event types", "us/event", "models scoring", "on_time us/matured"],
        rows,
    )


def bench_parts(settings: DetectionSettings) -> None:
    """What one batch of the bank spends per event, part by part."""
    X = normal(BATCH, 6)
    xs = dicts(X)
    rows = [["vectorise 500 dicts", fmt(cpu(lambda: to_matrix(xs, NAMES), 5) / BATCH * 1e6)]]
    for name in ("zscore", "hst", "ecod", "iforest"):
        det = REGISTRY[name](settings)
        det.learn_many(dicts(normal(12000, 7)))
        snap = pickle.dumps(det)
        best = float("inf")
        for _ in range(5):  # a fresh copy each time: learning changes the detector
            fresh = pickle.loads(snap)
            best = min(best, cpu(partial(fresh.score_learn_array, X, NAMES)))
        rows.append([f"{name}: score+learn one batch (no refit)", fmt(best / BATCH * 1e6)])
    clf = LogRegDetector(min_positives=1, min_negatives=1)
    clf.learn_many(xs, labels(X))
    rows.append(
        ["logreg: score one batch", fmt(cpu(lambda: clf.score_array(X, NAMES), 5) / BATCH * 1e6)]
    )

    def pending() -> None:
        store = PendingStore(1e9, 2e9, 10**6)
        store.add_many(
            [f"e{k}" for k in range(BATCH)],
            [(f"A{k}", f"T{k}") for k in range(BATCH)],
            [f"u{k % 97}" for k in range(BATCH)],
            [float(k) for k in range(BATCH)],
            "transaction",
            xs[:BATCH],
        )

    rows.append(["pending store add", fmt(cpu(pending, 5) / BATCH * 1e6)])
    scores = np.random.default_rng(1).random(BATCH).tolist()
    drift = ScoreDrift()
    rows.append(
        [
            "ADWIN, one score stream",
            fmt(cpu(lambda: drift.update_many("s", scores), 5) / BATCH * 1e6),
        ]
    )
    table("Parts of one bank batch, us/event", ["part", "us/event"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams, one repeat")
    args = parser.parse_args()
    quick = args.quick
    print(__doc__.split("\n\n")[0])
    print(f"batch size {BATCH}, {D} features")
    bench_hst(8000 if quick else 14000)
    settings = DetectionSettings(reservoir_size=1024)
    bench_detectors(settings, 6000 if quick else 12000)
    bench_pyod(1024)
    bench_supervised(1000 if quick else 3000)
    bench_parts(settings)
    bench_bank(10000 if quick else 20000, 1 if quick else 3)


if __name__ == "__main__":
    main()
