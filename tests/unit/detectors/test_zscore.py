"""The z-score detector: river moments in both paths, robust to outlier bursts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from river import stats

from detectors.bank import ModelBank, ModelInput
from detectors.online import ZScoreDetector
from riskmon.settings import DetectionSettings


def test_batch_moments_match_river_updates(synth):
    """Merging batches gives the mean and variance river's Var.update would, per feature."""
    det = ZScoreDetector(warmup=0, clip_z=1e9)
    X = synth.normal(1200, 1)
    for start in range(0, 1200, 300):
        det.learn_array(X[start : start + 300], synth.names)
    for j, name in enumerate(synth.names):
        ref = stats.Var()
        for v in X[:, j].tolist():
            ref.update(v)
        var = det.stats[name]
        assert var.n == ref.n
        assert var.mean.get() == pytest.approx(ref.mean.get(), rel=1e-12, abs=1e-12)
        assert var.get() == pytest.approx(ref.get(), rel=1e-9)


def test_paths_alternate_without_drift(synth):
    """learn_one and learn_array can alternate; the moments move between them exactly."""
    det = ZScoreDetector(warmup=50)
    det.learn_array(synth.normal(300, 2), synth.names)
    before = {k: (v.n, v.mean.get(), v.get()) for k, v in det.stats.items()}
    det.learn_array(np.empty((0, len(synth.names))), synth.names)
    assert {k: (v.n, v.mean.get(), v.get()) for k, v in det.stats.items()} == before
    det.learn_one(synth.dicts(synth.normal(1, 3))[0])
    det.learn_array(synth.normal(100, 4), synth.names)
    assert all(v.n == 401 for v in det.stats.values())


def test_outlier_burst_is_winsorised(synth):
    """A burst of extreme values barely moves the variance used to measure them."""
    det = ZScoreDetector(warmup=50)
    det.learn_array(synth.normal(1000, 5), synth.names)
    sd_before = det.stats[synth.names[0]].get() ** 0.5
    burst = synth.normal(20, 6)
    burst[:, 0] = 1e6
    det.learn_array(burst, synth.names)
    assert det.stats[synth.names[0]].get() ** 0.5 < 2 * sd_before


def test_contributions_are_signed_and_ranked(synth):
    """The farthest features come first, with the sign of their deviation."""
    det = ZScoreDetector(warmup=50)
    det.learn_array(synth.normal(500, 7), synth.names)
    x = synth.dicts(synth.normal(1, 8))[0] | {synth.names[0]: -9.0, synth.names[1]: 6.0}
    top = det.contributions(x, k=2)
    assert [t[0] for t in top] == [synth.names[0], synth.names[1]]
    assert top[0][2] < -5 < 5 < top[1][2]


def test_contributions_follow_what_was_learned(synth):
    """Contributions use the moments as they are now, also after more learning."""
    det = ZScoreDetector(warmup=50)
    det.learn_array(synth.normal(500, 9), synth.names)
    x = synth.dicts(synth.normal(1, 10))[0] | {synth.names[0]: 4.0}
    first = det.contributions(x, k=3)
    assert det.contributions(x, k=3) == first
    shifted = synth.normal(500, 11)
    shifted[:, 0] += 4.0
    det.learn_array(shifted, synth.names)
    var = det.stats[synth.names[0]]
    expected = (4.0 - var.mean.get()) / var.get() ** 0.5
    again = {f: z for f, _, z in det.contributions(x, k=len(synth.names))}
    assert again[synth.names[0]] == pytest.approx(expected, rel=1e-12)
    assert again[synth.names[0]] != {f: z for f, _, z in first}.get(synth.names[0])


@pytest.mark.parametrize("batch", [1, 37, 250, 500, 1000])
def test_ready_at_the_warmup_whatever_the_batch(synth, batch):
    """Ready (scores count, contributions given) once ``warmup`` events are learned, in
    batches of any size or one by one: the first calibration reference is the warm-up's
    events scored against the moments at its end."""
    det = ZScoreDetector(warmup=500)
    X = synth.normal(1000, 41)
    n = 0
    while n < len(X):
        if batch == 1:
            det.learn_one(synth.dicts(X[n : n + 1])[0])
        else:
            det.learn_array(X[n : n + batch], synth.names)
        n += batch
        assert det.ready == (n >= 500), n
        if n >= 500:
            break
    assert det.calibrator.n == n and det.contributions(synth.dicts(X[:1])[0])
    normal, odd = synth.dicts(synth.normal(200, 42)), synth.dicts(synth.anomalies(50, 42))
    scores = det.score_many(normal + odd)
    assert np.median(scores[:200]) < 0.3 < np.median(scores[200:])
    assert not det._warm  # nothing kept once the warm-up is over


def test_the_bank_scores_zscore_from_event_501_with_batches_of_500():
    """``model_warmup`` (500) is the number of events before an unsupervised score counts:
    with the worker's batches of 500, z-score scores (and gives feature reasons) from
    event 501, as HST and ECOD do, not from event 1,001."""
    bank = ModelBank(DetectionSettings(), supervised=None)
    rng = np.random.default_rng(0)
    first: dict[str, int] = {}
    for start in range(0, 1000, 500):
        for k, scores in enumerate(bank.score_batch(_batch(rng, start, 500))):
            for name in scores:
                first.setdefault(name, start + k + 1)
    assert first == {"hst": 501, "ecod": 501, "zscore": 501}
    assert bank.top_contributors({"f0": 9.0}, event_type="transaction")


def _batch(rng: np.random.Generator, start: int, n: int) -> list[ModelInput]:
    X = rng.normal(0.0, 1.0, (n, 4))
    return [
        ModelInput(
            f"e{start + k}",
            "transaction",
            f"u{(start + k) % 50}",
            (f"T{start + k}",),
            1.7e9 + start + k,
            {f"f{j}": v for j, v in enumerate(row)},
        )
        for k, row in enumerate(X.tolist())
    ]


def test_warmup_keeps_at_most_a_reference_of_events(synth):
    """A long warm-up keeps only the events the calibrator can hold."""
    det = ZScoreDetector(warmup=5000)
    for start in range(0, 4500, 300):
        det.learn_array(synth.normal(300, 43 + start), synth.names)
    assert det.calibrator.size <= det._warm_rows < det.calibrator.size + 300
    det.learn_array(synth.normal(600, 44), synth.names)
    assert det.ready and det.calibrator.n == det.calibrator.size


def test_a_checkpoint_of_the_release_before_in_its_warmup_gets_ready(synth):
    """A detector pickled by the release before in its warm-up (no events kept) gets
    ready at the warm-up all the same, its reference from the events learned since."""
    det = ZScoreDetector(warmup=500)
    det.learn_array(synth.normal(300, 45), synth.names)
    state = det.__getstate__()
    del state["_warm"], state["_warm_rows"]
    old = ZScoreDetector.__new__(ZScoreDetector)
    old.__setstate__(state)
    old.learn_array(synth.normal(200, 46), synth.names)
    assert old.ready and old.calibrator.n == 200
    assert pickle.loads(pickle.dumps(old)).score_many(synth.dicts(synth.normal(5, 47))) == (
        old.score_many(synth.dicts(synth.normal(5, 47)))
    )
