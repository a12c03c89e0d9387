"""Half-Space Trees: the numpy path is river's HST, exactly; anomalies rank high."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.online import HSTDetector, robust_ranges
from detectors.registry import REGISTRY
from riskmon.settings import DetectionSettings


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


def test_ranges_leave_out_a_few_extreme_values_and_follow_the_traffic(synth):
    """A range is learned again every ``range_every`` events from the recent rows: one
    extreme value does not stretch it, a lasting change of the traffic moves it."""
    det = HSTDetector(window_size=100, warmup=100, range_every=200, range_rows=400)
    det.learn_many(synth.dicts(synth.normal(300, 11)))
    amount = synth.names[3]  # log-normal
    high = (det._range(amount) or (0.0, 0.0))[1]
    det.learn_one({**synth.dicts(synth.normal(1, 12))[0], amount: 1e9})
    det.learn_array(synth.normal(399, 13), synth.names)
    assert det._ranged_at > 400  # learned again since
    high2 = (det._range(amount) or (0.0, 0.0))[1]
    assert high2 < 2 * high
    grown = synth.normal(400, 14)
    grown[:, 3] *= 10
    det.learn_array(grown, synth.names)
    assert (det._range(amount) or (0.0, 0.0))[1] > 5 * high2


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


@pytest.mark.parametrize("gap_rate", [0.0, 0.03])
def test_batch_and_row_learning_agree_through_range_updates(synth, gap_rate):
    """Ranges learned again mid-batch (at 200, 300, 500, then every 200 events; batches of
    250): the batch path ends with the ranges, masses and raw scores of river's learn_one
    row by row."""
    X = with_gaps(synth.normal(1500, 31), gap_rate, 32)
    X[:, 5] *= np.linspace(1.0, 8.0, len(X))  # a feature that grows: its range moves
    X[:400, 10] = 0.0  # a flag that starts varying after the warm-up
    kw = {"n_trees": 4, "height": 5, "window_size": 100, "warmup": 100, "range_every": 200}
    batch, single = HSTDetector(**kw, seed=6), HSTDetector(**kw, seed=6)
    for start in range(0, len(X), 250):
        batch.learn_array(X[start : start + 250], synth.names)
    for x in rows(X, synth.names):
        single.learn_one(x)
    assert batch._ranged_at == single._ranged_at == 1500
    assert all(batch._range(f) == single._range(f) for f in synth.names)
    (bl, br), (sl, sr) = batch._flat().arrays(), single._flat().arrays()
    assert np.array_equal(bl, sl) and np.array_equal(br, sr)
    P = np.vstack([synth.normal(50, 33), synth.anomalies(20, 33)])
    raw = batch._flat().score(batch._matrix(P, synth.names), batch.hst)
    assert raw.tolist() == single._flat().score(single._matrix(P, synth.names), single.hst).tolist()


def test_new_ranges_rebuild_the_last_window_masses(synth):
    """When the ranges move, the reference masses are what river's trees learn from the
    last window's rows scaled with the new ranges: old and new scaling never mix."""
    det = HSTDetector(n_trees=5, height=4, window_size=100, warmup=100, range_every=300)
    X = synth.normal(800, 34)
    X[:, 4] *= np.linspace(1.0, 5.0, len(X))
    det.learn_array(X, synth.names)  # ranges learned at 100, 200, 300, 500 and 800
    assert det._ranged_at == 800
    hst = pickle.loads(pickle.dumps(det))._river()
    for tree in hst.trees:
        for node in tree.iter_dfs():
            node.l_mass = node.r_mass = 0
    for x in rows(X[-100:], synth.names):
        hst.learn_one(det._scaled(x))
    expected = [[n.r_mass for n in t.iter_dfs()] for t in hst.trees]
    assert [[n.r_mass for n in t.iter_dfs()] for t in det._river().trees] == expected


def _device(rng: random.Random, rooted: float) -> dict[str, float]:
    return {"amount": rng.gauss(100, 10), "velocity": rng.gauss(2, 1), "is_rooted": rooted}


def test_a_feature_constant_during_warmup_counts_once_it_varies():
    """A feature that never varied during the warm-up (a rare flag, a *_fraud_share that
    is 0 until the first fraud verdict, a repayment count at cold start) counts once it
    varies: a zero-span range no longer scales every later value of it to 0.0."""
    rng = random.Random(0)
    hst = REGISTRY["hst"](DetectionSettings())  # production defaults: warm-up 500
    hst.learn_many([_device(rng, 0.0) for _ in range(600)])
    for i in range(5000):  # afterwards the flag does vary: 1 in 100 devices is rooted
        hst.learn_one(_device(rng, 1.0 if i % 100 == 0 else 0.0))
    assert hst.ready
    base = {"amount": 100.0, "velocity": 2.0}
    usual = hst.score_one({**base, "is_rooted": 0.0})
    absurd = hst.score_one({**base, "is_rooted": 50.0})
    assert absurd > usual, (usual, absurd)


def test_a_flag_still_constant_scores_off_its_value_on_both_paths(synth):
    """While a feature's range has no span, its usual value maps inside the unit interval
    and any other outside, below or above (never to 0.0 with the usual value), on the
    dict path and the matrix path alike."""
    X = synth.normal(400, 35)
    X[:, 11] = 0.0
    det = HSTDetector(n_trees=10, height=4, window_size=100, warmup=100, seed=3)
    det.learn_array(X, synth.names)
    flag = synth.names[11]
    assert det._range(flag) == (0.0, 0.0)
    base = synth.dicts(synth.normal(1, 36))[0]
    probe = [{**base, flag: v} for v in (0.0, -3.0, 1.0, 50.0, float("inf"))]
    probe.append({k: v for k, v in base.items() if k != flag})
    scaled = det._matrix(to_rows(probe, synth.names), synth.names)[:, 11].tolist()
    assert scaled[:5] == [0.5, -0.5, 1.5, 1.5, 1.5] and np.isnan(scaled[5])
    assert [det._scaled(x).get(flag) for x in probe] == [*scaled[:5], None]
    assert det.score_many(probe) == [det.score_one(x) for x in probe]
    assert det.score_one(probe[3]) > det.score_one(probe[0])


def to_rows(xs: list[dict[str, float]], names) -> np.ndarray:
    return np.array([[x.get(n, np.nan) for n in names] for x in xs])


def test_one_huge_amount_in_warmup_does_not_squash_the_range():
    """The contract allows amounts up to 1e9. One such amount among the first 500 events
    does not become the top of the range of ``amount`` (every later amount would scale to
    ~0): a cash-out 500 times the usual amount scores above an ordinary one."""
    rng = random.Random(0)

    def ev(amount: float | None = None) -> dict[str, float]:
        a = rng.lognormvariate(6, 0.5) if amount is None else amount
        return {"amount": a, "velocity": rng.gauss(2, 1)}

    hst = REGISTRY["hst"](DetectionSettings())
    warm = [ev() for _ in range(600)]
    warm[10] = ev(1e9)  # one outlier (or test payment) during warm-up
    hst.learn_many(warm)
    assert (hst._range("amount") or (0.0, 1e9))[1] < 1e4
    for _ in range(5000):
        hst.learn_one(ev())
    usual = hst.score_one({"amount": 400.0, "velocity": 2.0})
    huge = hst.score_one({"amount": 2e5, "velocity": 2.0})
    assert huge > usual, (usual, huge)


def test_robust_ranges():
    """Quantiles widened by their distance, within what was seen; missing values and
    non-finite ones ignored; a column without values has no range."""
    R = np.array([[float(i), 1.0, np.nan, float(i % 2)] for i in range(100)])
    R[5, 1] = 7.0
    R[7, 0] = np.inf
    low, span, mid = robust_ranges(R)
    assert low[0] == 0.0 and span[0] == 99.0  # no outlier: the seen min and max
    assert (low[1], span[1], mid[1]) == (1.0, 0.0, 0.0)  # 7.0 left out, usual value low
    assert np.isnan(low[2]) and np.isnan(span[2])
    assert (low[3], span[3]) == (0.0, 1.0)


def _old_release_state(det: HSTDetector) -> dict:
    """``det``'s state as the release before pickled it: a frozen min-max scaler."""
    from river import preprocessing

    state = det.__getstate__()
    for key in (
        "_low",
        "_span",
        "_mid",
        "_off",
        "_ranged_at",
        "_rows",
        "_rows_pos",
        "_rows_len",
        "_rows_at",
        "range_every",
        "range_rows",
    ):
        del state[key]
    scaler = preprocessing.MinMaxScaler()
    for f, low, high in [(f, *det._range(f)) for f in det.features if det._range(f)]:
        scaler.learn_one({f: low})
        scaler.learn_one({f: high})
    state["scaler"] = scaler
    state["_frozen"] = None
    state["_frozen_arrays"] = None
    return state


def test_a_checkpoint_of_the_release_before_loads(synth):
    """A detector pickled by the release before (frozen min-max ranges, a zero span
    scaling to 0.0) scores as it did until its ranges are learned again from the rows
    it learns from then on; one still in its warm-up starts afresh."""
    X = synth.normal(600, 37)
    X[:, 11] = 0.0
    det = HSTDetector(n_trees=5, height=4, window_size=100, warmup=100, range_every=200, seed=2)
    det.learn_array(X, synth.names)
    old = HSTDetector.__new__(HSTDetector)
    old.__setstate__(_old_release_state(det))
    flag = synth.names[11]
    assert old.ready and old._range(flag) == (0.0, 0.0) and old._ranged_at == 600
    probe = synth.dicts(synth.normal(20, 38))
    probe[0][flag] = 1.0
    assert old._scaled(probe[0])[flag] == 0.0  # as the release before scaled it
    assert old.score_many(probe) == [old.score_one(x) for x in probe]
    assert old.range_every == 2000  # the default: the release before had none
    Y = synth.normal(150, 39)
    Y[:, 11] = 0.0
    old.learn_array(Y, synth.names)
    assert old._ranged_at == 700 and old._scaled(probe[0])[flag] == 1.5
    copy = pickle.loads(pickle.dumps(old))
    assert copy.score_many(probe) == old.score_many(probe)

    young = HSTDetector(n_trees=5, height=4, window_size=100, warmup=100, seed=2)
    young.learn_array(X[:60], synth.names)
    state = _old_release_state(young)
    restored = HSTDetector.__new__(HSTDetector)
    restored.__setstate__(state)
    assert restored.n_learned == 0 and restored.features == young.features


def test_checkpoint_reads_as_a_frozen_scaler_for_a_rollback(synth):
    """The state pickled also carries the ranges as the release before's frozen scaler,
    so that a rollback scores and learns with them."""
    det = HSTDetector(n_trees=5, height=4, window_size=100, warmup=100)
    det.learn_array(synth.normal(300, 40), synth.names)
    state = det.__getstate__()
    ranges = [(f, *(det._range(f) or ())) for f in synth.names]
    frozen = [(f, low, high - low) for f, low, high in ranges]
    assert state["_frozen"] == frozen
    low, span = state["_frozen_arrays"]
    assert (low.tolist(), span.tolist()) == ([t[1] for t in frozen], [t[2] for t in frozen])


def test_ranges_are_learned_again_at_doubling_gaps(synth):
    """A window after the warm-up, then at gaps that double up to ``range_every``: a young
    model (a rare event type) catches up with its traffic soon, a busy one seldom pays."""
    det = HSTDetector(n_trees=3, height=3, window_size=100, warmup=300, range_every=800)
    seen = [0]
    for start in range(0, 4000, 50):
        det.learn_array(synth.normal(50, 50 + start), synth.names)
        if seen[-1] != det._ranged_at:
            seen.append(det._ranged_at)
    assert seen == [0, 300, 400, 500, 700, 1100, 1900, 2700, 3500]
