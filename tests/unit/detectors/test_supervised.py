"""The online classifier learns fraud from labels only."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from detectors.supervised import LogRegDetector


def problem(n: int, seed: int, rate: float = 0.2) -> tuple[list[dict[str, float]], list[bool]]:
    """Frauds differ from the rest along two of eight features (plus noise)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < rate
    X = rng.normal(size=(n, 8))
    X[:, 0] += 2.5 * y
    X[:, 3] -= 2.0 * y
    X[:, 5] = X[:, 5] * 100 + 1000  # a feature on another scale
    xs = [{f"f{j}": v for j, v in enumerate(row)} for row in X.tolist()]
    return xs, y.tolist()


def test_learns_a_separable_problem_from_labels():
    """Trained on labelled events, it ranks held-out frauds first (AUC > 0.9)."""
    clf = LogRegDetector()
    xs, ys = problem(2000, 1)
    clf.learn_many(xs, ys)
    assert clf.ready
    test_x, test_y = problem(1000, 2)
    assert roc_auc_score(test_y, clf.score_many(test_x)) > 0.9


def test_unlabelled_events_teach_nothing():
    """y=None is ignored: no count, no readiness, no change in scores."""
    clf = LogRegDetector(min_positives=1, min_negatives=1)
    xs, ys = problem(300, 3)
    clf.learn_many(xs[:100], ys[:100])
    probe = clf.score_many(xs[100:120])
    for x in xs[100:]:
        clf.learn_one(x, None)
    clf.learn_many(xs[100:])
    assert clf.score_many(xs[100:120]) == probe
    assert clf.n_positives + clf.n_negatives == 100


def test_ready_needs_both_classes():
    """Not ready (score 0.0) until min_positives frauds and min_negatives others are learned."""
    clf = LogRegDetector(min_positives=5, min_negatives=10)
    x = {"a": 1.0}
    for _ in range(50):
        clf.learn_one(x, False)
    assert not clf.ready and clf.score_one(x) == 0.0
    for _ in range(4):
        clf.learn_one(x, True)
    assert not clf.ready
    clf.learn_one(x, True)
    assert clf.ready and clf.score_one(x) > 0.0


def test_negative_subsampling_keeps_probabilities_calibrated():
    """Learning a quarter of the negatives, the logit shift keeps the mean probability right."""
    xs, ys = problem(6000, 4, rate=0.1)
    test_x, test_y = problem(2000, 5, rate=0.1)
    full = LogRegDetector(seed=1)
    sampled = LogRegDetector(negative_rate=0.25, seed=1)
    for clf in (full, sampled):
        clf.learn_many(xs, ys)
    assert 0.15 < sampled.n_negatives / (sampled.n_negatives + sampled.n_skipped) < 0.35
    prevalence = float(np.mean(test_y))
    assert abs(float(np.mean(sampled.score_many(test_x))) - prevalence) < 0.05
    assert roc_auc_score(test_y, sampled.score_many(test_x)) > 0.9


def test_absurd_values_do_not_poison_the_model():
    """Huge and non-finite learned values leave every later score finite."""
    clf = LogRegDetector(min_positives=1, min_negatives=1)
    xs, ys = problem(400, 6)
    clf.learn_many(xs, ys)
    clf.learn_one({"f0": 1e300, "f1": float("inf"), "f2": float("nan")}, True)
    clf.learn_one({"f0": -1e300}, False)
    scores = clf.score_many(xs[:50])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert roc_auc_score(ys[:50], scores) > 0.8
