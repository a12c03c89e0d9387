"""Half-Space Trees: the numpy path is river's HST, exactly; anomalies rank high."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.online import HSTDetector


def with_gaps(X: np.ndarray, rate: float, seed: int) -> np.ndarray:
    X = X.copy()
    X[np.random.default_rng(seed).random(X.shape) < rate] = np.nan
    return X


def rows(X: np.ndarray, names) -> list[dict[str, float]]:
    return [{k: v for k, v in zip(names, r, strict=True) if v == v} for r in X.tolist()]


@pytest.mark.parametrize("gap_rate", [0.0, 0.03])
def test_batch_learning_is_river_learning(synth, gap_rate):
    """learn_array leaves the trees with the masses river's learn_one would (gaps included)."""
    X = with_gaps(synth.normal(1300, 1), gap_rate, 2)
    batch = HSTDetector(n_trees=4, height=5, window_size=100, warmup=100, seed=5)
    single = HSTDetector(n_trees=4, height=5, window_size=100, warmup=100, seed=5)
    for start in range(0, len(X), 250):
        batch.learn_array(X[start : start + 250], synth.names)
    for x in rows(X, synth.names):
        single.learn_one(x)
    (bl, br), (sl, sr) = batch._flat().arrays(), single._flat().arrays()
    assert np.array_equal(bl, sl) and np.array_equal(br, sr)
    assert batch.hst.counter == single.hst.counter
    assert batch.calibrator._filled == single.calibrator._filled


@pytest.mark.parametrize("gap_rate", [0.0, 0.1])
def test_batch_scores_are_river_scores(synth, gap_rate):
    """The vectorised raw score of every row equals river's HalfSpaceTrees.score_one."""
    det = HSTDetector(n_trees=6, height=6, window_size=100, warmup=100, seed=1)
    det.learn_array(synth.normal(800, 3), synth.names)
    X = with_gaps(np.vstack([synth.normal(100, 4), synth.anomalies(50, 4)]), gap_rate, 5)
    raw = det._flat().score(det._matrix(X, synth.names), det.hst)
    river_hst = det._river()
    expected = [river_hst.score_one(det._scaled(x)) for x in rows(X, synth.names)]
    assert raw.tolist() == expected


def test_anomalies_score_higher(synth):
    """After warm-up, pushed-out events outrank ordinary ones (AUC > 0.9).

    The trees get the continuous features, where the anomalies are: random splits over
    many irrelevant features would rarely isolate them.
    """
    det = HSTDetector(synth.names[:6], warmup=200, seed=2)
    for start in range(0, 3000, 500):
        det.learn_array(synth.normal(500, 10 + start), synth.names)
    normal, odd = synth.normal(300, 6), synth.anomalies(60, 6)
    scores = det.score_many(synth.dicts(normal) + synth.dicts(odd))
    assert roc_auc_score([0] * 300 + [1] * 60, scores) > 0.9
    assert np.median(scores[:300]) < 0.3


def test_feature_subset_is_a_constructor_argument(synth):
    """Trees split only on the given features; others are ignored when scoring."""
    chosen = synth.names[:4]
    det = HSTDetector(chosen, n_trees=5, height=4, window_size=100, warmup=100)
    det.learn_many(synth.dicts(synth.normal(600, 7)))
    split_on = {n.feature for t in det.hst.trees for n in t.iter_dfs() if hasattr(n, "feature")}
    assert split_on <= set(chosen)
    x = synth.dicts(synth.normal(1, 8))[0]
    assert det.score_one(x) == det.score_one({**x, synth.names[-1]: 1e9})


def test_max_features_samples_a_seeded_subset(synth):
    """Without a subset, max_features picks the same seeded sample every time."""
    a = HSTDetector(max_features=5, seed=4)
    b = HSTDetector(max_features=5, seed=4)
    for det in (a, b):
        det.learn_one(synth.dicts(synth.normal(1, 9))[0])
    assert a.features == b.features and len(a.features or ()) == 5


def test_scaler_is_frozen_after_warmup(synth):
    """An extreme value after warm-up does not stretch the scale of every later input."""
    det = HSTDetector(window_size=100, warmup=100)
    det.learn_many(synth.dicts(synth.normal(300, 11)))
    before = det._range(synth.names[0])
    det.learn_one({**synth.dicts(synth.normal(1, 12))[0], synth.names[0]: 1e9})
    assert det._range(synth.names[0]) == before


def test_one_row_and_batch_paths_mix(synth):
    """learn_one and learn_array can alternate; pickling keeps the masses in either state."""
    det = HSTDetector(n_trees=3, height=4, window_size=100, warmup=100, seed=9)
    det.learn_array(synth.normal(400, 13), synth.names)
    det.learn_one(synth.dicts(synth.normal(1, 14))[0])
    det.learn_array(synth.normal(150, 15), synth.names)
    probe = synth.dicts(synth.normal(20, 16))
    copy = pickle.loads(pickle.dumps(det))
    assert copy.score_many(probe) == det.score_many(probe) == [det.score_one(x) for x in probe]


@pytest.mark.parametrize("batch", [450, 37])
def test_vectorised_warmup_is_river_warmup(synth, batch):
    """Warm-up batches (scaler learning, calibration samples, pivots) end where river's
    learn_one ends: same ranges, masses, counter and calibration reference."""
    X = synth.normal(450, 21)  # the whole warm-up: max(warmup, window_size) rows
    batch_det = HSTDetector(n_trees=4, height=5, window_size=100, warmup=450, seed=3)
    single = HSTDetector(n_trees=4, height=5, window_size=100, warmup=450, seed=3)
    for start in range(0, len(X), batch):
        batch_det.learn_array(X[start : start + batch], synth.names)
    for x in rows(X, synth.names):
        single.learn_one(x)
    assert all(batch_det._range(f) == single._range(f) for f in synth.names)
    (bl, br), (sl, sr) = batch_det._flat().arrays(), single._flat().arrays()
    assert np.array_equal(bl, sl) and np.array_equal(br, sr)
    assert batch_det.hst.counter == single.hst.counter
    assert batch_det.calibrator.ref.tolist() == single.calibrator.ref.tolist()
    probe = synth.dicts(synth.normal(30, 22))
    assert batch_det.score_many(probe) == single.score_many(probe)
