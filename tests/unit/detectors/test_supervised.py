"""The online classifier learns fraud from labels only."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
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


def test_learning_matrix_rows_is_learning_their_dicts():
    """learn_rows (rows of a matrix, nan = absent) teaches the model exactly what
    learn_one of the same rows as dicts does, negative sampling included."""
    rng = np.random.default_rng(3)
    names = tuple(f"f{j}" for j in range(10))
    X = rng.normal(size=(600, 10)) * [1, 10, 1e3, 1, 1, 1, 1, 1, 1, 1e14]
    X[rng.random(X.shape) < 0.05] = np.nan
    X[rng.random(X.shape) < 0.01] = np.inf
    y = (rng.random(600) < 0.3).tolist()
    one = LogRegDetector(negative_rate=0.3, min_positives=1, min_negatives=1, seed=4)
    rows = LogRegDetector(negative_rate=0.3, min_positives=1, min_negatives=1, seed=4)
    for row, label in zip(X.tolist(), y, strict=True):
        one.learn_one({c: v for c, v in zip(names, row, strict=True) if v == v}, label)
    k = 0
    while k < len(y):  # runs of one label, as the bank passes them
        end = k + 1
        while end < len(y) and y[end] == y[k] and end - k < 9:
            end += 1
        rows.learn_rows(X, names, list(range(k, end)), y[k])
        k = end
    assert (one.n_positives, one.n_negatives, one.n_skipped) == (
        rows.n_positives,
        rows.n_negatives,
        rows.n_skipped,
    )
    assert dict(one.clf._weights) == dict(rows.clf._weights)
    assert one.clf.intercept == rows.clf.intercept
    probe = [
        {c: v for c, v in zip(names, r, strict=True)} for r in rng.normal(size=(20, 10)).tolist()
    ]
    assert one.score_many(probe) == rows.score_many(probe)


def _amounts(seed: int = 0) -> LogRegDetector:
    """Trained on a feature that separates the classes and an amount that barely does
    (fraud amounts 10% higher)."""
    rng = random.Random(seed)
    clf = LogRegDetector(seed=7)
    for _ in range(5000):
        y = rng.random() < 0.2
        x = {
            "velocity": rng.gauss(3.0 if y else 0.0, 1.0),
            "amount": rng.gauss(5500 if y else 5000, 2000),
        }
        clf.learn_one(x, y)
    assert clf.ready
    return clf


def test_scores_values_winsorised_as_it_learned_them():
    """The classifier learns every value winsorised at 6 standard deviations, so it never
    sees a z beyond 6; it scores values winsorised the same way: a legitimate 1,000,000 CNY
    application (the contract allows 1e9), honest in every other feature, scores like the
    most extreme amount it learned from (mean + 6 sd, about 0.1), not 1.0 as a linear
    model extrapolating would give it."""
    clf = _amounts()
    mean, sd = clf.scaler.means["amount"], clf.scaler.vars["amount"] ** 0.5
    at_bound = clf.score_one({"velocity": 0.0, "amount": mean + 6 * sd})
    huge = clf.score_one({"velocity": 0.0, "amount": 1e6})
    assert at_bound < 0.2
    assert huge <= at_bound + 1e-9, (at_bound, huge)
    low = clf.score_one({"velocity": 0.0, "amount": -1e9})
    assert low == pytest.approx(clf.score_one({"velocity": 0.0, "amount": mean - 6 * sd}))


def test_matrix_scores_are_winsorised_alike():
    """score_array winsorises as score_one does, huge, tiny and non-finite values included."""
    clf = _amounts(1)
    xs = [
        {"velocity": v, "amount": a}
        for v in (-50.0, 0.0, 3.0, 1e9)
        for a in (-1e12, 0.0, 5000.0, 2e4, 1e6, 1e300, float("inf"), float("nan"))
    ]
    many = clf.score_many(xs)
    assert many == pytest.approx([clf.score_one(x) for x in xs], abs=1e-12, rel=0)
    mean, sd = clf.scaler.means["velocity"], clf.scaler.vars["velocity"] ** 0.5
    bound = clf.score_one({"velocity": mean + 6 * sd, "amount": 5000.0})
    assert many[3 * 8 + 2] == pytest.approx(bound, abs=1e-12)  # velocity 1e9 counts as 6 sd


def test_a_checkpoint_of_the_release_before_scores():
    """A classifier pickled by the release before (a cache of three arrays) scores on."""
    clf = _amounts(2)
    probe = [{"velocity": 1.0, "amount": 5000.0}, {"velocity": 4.0, "amount": 1e6}]
    expected = clf.score_many(probe)
    state = clf.__dict__.copy()
    mean, std, _lo, _hi, w = clf._coefficients(("amount", "velocity"))
    state["_cache"] = ((("amount", "velocity"), clf.n_positives + clf.n_negatives), (mean, std, w))
    old = LogRegDetector.__new__(LogRegDetector)
    old.__setstate__(state)
    assert old.score_many(probe) == expected
    assert pickle.loads(pickle.dumps(old)).score_many(probe) == expected
