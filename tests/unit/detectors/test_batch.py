"""Batch pyod detectors: bounded reservoir, refit schedule, atomic swap, pyod fidelity."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.batch import (
    BatchDetector,
    ECODDetector,
    FittedModel,
    IForestDetector,
    ecod_training_scores,
)


def ecod(**kw) -> ECODDetector:
    params = {"reservoir_size": 128, "refit_every": 200, "warmup": 100, "seed": 1}
    return ECODDetector(**(params | kw))


def test_reservoir_is_bounded_and_uniform(synth):
    """The reservoir never exceeds its size and samples the whole stream, not its start."""
    det = ecod(refit_every=10**6)
    index = np.arange(5000, dtype=float)[:, None]
    for start in range(0, 5000, 500):
        det.learn_array(index[start : start + 500], ("i",))
    assert det.reservoir is not None and det.reservoir.shape == (128, 1)
    assert det.reservoir_rows == 128 and det.n_learned == 5000
    kept = det.reservoir[:, 0]
    assert len(set(kept.tolist())) == 128
    assert 1800 < kept.mean() < 3200  # uniform over 0..4999 has mean 2500, sd ~130 here
    assert (kept >= 2500).sum() > 40


def test_refits_on_schedule(synth):
    """First fit after the warm-up, then one every refit_every learned vectors."""
    det = ecod()
    X = synth.normal(1000, 1)
    det.learn_array(X[:99], synth.names)
    assert det.n_fits == 0 and not det.ready
    det.learn_array(X[99:101], synth.names)
    assert det.n_fits == 1 and det.ready
    det.learn_array(X[101:1000], synth.names)
    assert det.n_fits == 1 + (1000 - 100) // 200


def test_fit_is_split_at_the_due_row(synth):
    """A batch crossing a refit point is fitted exactly when the due row is learned."""
    whole, split = ecod(), ecod()
    X = synth.normal(700, 2)
    whole.learn_array(X, synth.names)
    for start in range(0, 700, 50):
        split.learn_array(X[start : start + 50], synth.names)
    assert whole.n_fits == split.n_fits == 4  # at 100, 300, 500 and 700 learned
    probe = synth.dicts(synth.normal(20, 3))
    assert whole.score_many(probe) == split.score_many(probe)


class _Gate(ECODDetector):
    """An ECOD detector whose fit can be held half-way, to score while it runs."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.hold = False
        self.started = threading.Event()
        self.release = threading.Event()

    def fit_model(self, R, fill, seed):
        model = super().fit_model(R, fill, seed)
        if self.hold:
            self.started.set()
            self.release.wait(5)
        return model


def test_refit_swaps_atomically(synth):
    """Scoring during a refit uses the old, complete model; after it, the new one."""
    det = _Gate(reservoir_size=128, refit_every=200, warmup=100, seed=1)
    det.learn_array(synth.normal(150, 4), synth.names)
    probe = synth.dicts(np.vstack([synth.normal(20, 5), synth.anomalies(5, 5)]))
    old_model, old_scores = det.model, det.score_many(probe)
    det.hold = True
    learner = threading.Thread(target=det.learn_array, args=(synth.normal(200, 6), synth.names))
    learner.start()
    assert det.started.wait(5)
    during = det.score_many(probe)
    assert det.model is old_model and during == old_scores
    det.release.set()
    learner.join(5)
    assert det.model is not old_model and det.n_fits == 2
    assert det.score_many(probe) != old_scores


def test_failed_refit_keeps_the_old_model(synth, monkeypatch):
    """A refit that raises publishes nothing: the old model keeps scoring."""
    det = ecod()
    det.learn_array(synth.normal(150, 7), synth.names)
    probe = synth.dicts(synth.normal(10, 8))
    before = det.score_many(probe)

    def broken(R, fill, seed) -> FittedModel:
        raise RuntimeError("fit failed")

    monkeypatch.setattr(det, "fit_model", broken)
    with pytest.raises(RuntimeError):
        det.learn_array(synth.normal(200, 9), synth.names)
    assert det.ready and det.score_many(probe) == before


def test_ecod_scores_a_row_like_pyod_scores_it_alone(synth):
    """Each row scores as pyod's ECOD decision_function on that single row."""
    from pyod.models.ecod import ECOD

    X = synth.normal(300, 10)[:, :6]
    names = synth.names[:6]
    det = ECODDetector(reservoir_size=300, refit_every=10**6, warmup=300)
    det.learn_array(X, names)
    assert det.model is not None
    probe = np.vstack([synth.normal(15, 11)[:, :6], synth.anomalies(5, 11)[:, :6]])
    pyod = ECOD().fit(X)
    expected = [pyod.decision_function(row[None, :])[0] for row in probe]
    assert det.model.raw(probe) == pytest.approx(expected, rel=1e-9)


def test_a_score_does_not_depend_on_batch_mates(synth):
    """A row scores the same alone and within any batch (unlike pooled pyod ECOD)."""
    det = ecod()
    det.learn_array(synth.normal(300, 12), synth.names)
    xs = synth.dicts(np.vstack([synth.normal(30, 13), synth.anomalies(30, 13)]))
    together = det.score_many(xs)
    assert together[:5] == det.score_many(xs[:5]) == [det.score_one(x) for x in xs[:5]]


def test_constant_and_missing_columns_are_handled(synth):
    """Constant training columns and features absent from a row give finite scores."""
    det = ecod()
    X = synth.normal(300, 14)
    X[:, 0] = 3.0
    X[::3, 1] = np.nan
    det.learn_array(X, synth.names)
    scores = det.score_many([{}, {synth.names[0]: 3.0}, {synth.names[0]: 4.0}])
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[2] > scores[1]


@pytest.mark.parametrize("cls", [ECODDetector, IForestDetector])
def test_anomalies_score_higher(synth, cls: type[BatchDetector]):
    """After the first fit, pushed-out events outrank ordinary ones (AUC > 0.9)."""
    det = cls(reservoir_size=256, refit_every=300, warmup=200, seed=3)
    det.learn_many(synth.dicts(synth.normal(900, 15)))
    normal, odd = synth.dicts(synth.normal(200, 16)), synth.dicts(synth.anomalies(40, 16))
    scores = det.score_many(normal + odd)
    assert roc_auc_score([0] * 200 + [1] * 40, scores) > 0.9


@pytest.mark.parametrize("layout", ["C", "F"])
def test_training_scores_are_pyods_bit_for_bit(synth, layout):
    """The reference scores of a fit are pyod's ECOD training scores, exactly (ties,
    binary and heavy-tailed columns; either memory layout, which skewness sums depend on)."""
    from pyod.models.ecod import ECOD

    X = np.vstack([synth.normal(700, 21), synth.anomalies(20, 21)])
    X[:, 1] = np.round(X[:, 1], 1)  # many ties
    X = np.asarray(X, order=layout)
    expected = ECOD().fit(X).decision_scores_
    assert ecod_training_scores(X).tobytes() == expected.tobytes()


def test_fit_reference_is_pyods_training_scores_of_the_varying_columns(synth):
    """A fit's reference is pyod's training scores of the reservoir without its constant
    columns, sorted, bit for bit."""
    from pyod.models.ecod import ECOD

    X = synth.normal(400, 22)
    X[:, 0] = 2.0  # constant: left out of the fit
    X[:, 5] = np.round(X[:, 5] / 10.0)  # few distinct values
    det = ECODDetector(reservoir_size=400, refit_every=10**6, warmup=400)
    det.learn_array(X, synth.names)
    assert det.model is not None
    expected = np.sort(ECOD().fit(X[:, 1:]).decision_scores_)
    assert det.model.ref.tobytes() == expected.tobytes()


def test_a_pickled_detector_scores_the_same(synth):
    """A detector restored from a pickle scores exactly as the original."""
    import pickle

    det = ecod()
    det.learn_array(synth.normal(300, 23), synth.names)
    probe = np.vstack([synth.normal(40, 24), synth.anomalies(10, 24)])
    copy = pickle.loads(pickle.dumps(det))
    assert copy.score_array(probe, synth.names).tobytes() == (
        det.score_array(probe, synth.names).tobytes()
    )


def test_ecod_cells_read_the_padded_tables_bit_for_bit():
    """A cell scores what the search of its column's padded table gives: the table's
    score at the count of training values below it, as a training value when it equals
    the value there; for training values, values between and beyond them, and zeros of
    either sign, on columns with few distinct values and with many."""
    rng = np.random.default_rng(4)
    X = np.column_stack(
        [
            rng.integers(0, 3, 400).astype(float),  # few distinct values, ties
            rng.normal(0, 1, 400),  # all distinct
            np.where(rng.random(400) < 0.5, 0.0, -0.0),  # one value, two signs
            rng.integers(-50, 50, 400).astype(float),
        ]
    )
    det = ECODDetector(reservoir_size=400, refit_every=10**6, warmup=400)
    det.learn_array(X, ["a", "b", "c", "d"])
    model = det.model
    assert model is not None
    probe = np.vstack([X[:50], rng.normal(0, 60, (50, 4)), [[0.0, -0.0, -0.0, 0.0]] * 3])
    probe[50:60] = np.nextafter(X[:10], np.inf)  # just above training values
    expected = np.empty(probe.T.shape)
    for (cols, values, _, _), (hit, miss) in zip(model.groups, model._scores, strict=True):
        for g, j in enumerate(cols.tolist()):
            pos = np.searchsorted(values[g], probe[:, j], side="left")
            expected[j] = np.where(values[g][pos] == probe[:, j], hit[g][pos], miss[g][pos])
    assert model.raw(probe).tobytes() == expected.T.sum(axis=1).tobytes()
