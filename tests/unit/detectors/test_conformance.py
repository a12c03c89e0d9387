"""One suite, every registered detector: the protocol's promises hold for each of them."""

from __future__ import annotations

import math
import pickle

import pytest

from detectors.base import Detector
from detectors.registry import REGISTRY, SUPERVISED
from riskmon.settings import DetectionSettings

SETTINGS = DetectionSettings(model_warmup=50, batch_refit_every=200, reservoir_size=256)
N_TRAIN = 600

pytestmark = pytest.mark.parametrize("name", sorted(REGISTRY))


def labels(X) -> list[bool]:
    """A learnable rule: fraud when the first two features are both high."""
    return [bool(a + b > 1.5) for a, b in X[:, :2].tolist()]


def fresh(name: str, seed: int = SETTINGS.seed) -> Detector:
    return REGISTRY[name](SETTINGS.model_copy(update={"seed": seed}))


def train(det: Detector, synth, n: int = N_TRAIN, seed: int = 1) -> Detector:
    """Feed labelled batches of ``n`` until ready (the classifier keeps few negatives)."""
    for k in range(20):
        X = synth.normal(n, seed + 1000 * k)
        det.learn_many(synth.dicts(X), labels(X))
        if det.ready:
            break
    return det


_TRAINED: dict[str, bytes] = {}


def trained(name: str, synth) -> Detector:
    """A ready detector (trained once per module, then copied through pickle)."""
    if name not in _TRAINED:
        _TRAINED[name] = pickle.dumps(train(fresh(name), synth))
    det: Detector = pickle.loads(_TRAINED[name])
    return det


def odd_inputs(synth) -> list[dict[str, float]]:
    base = synth.dicts(synth.normal(1, 99))[0]
    names = synth.names
    return [
        base,
        {},
        {names[0]: 0.1},
        {k: v for k, v in base.items() if k not in names[::2]},
        {**base, "unknown_feature": 5.0, "another": -1e9},
        {**base, names[0]: 1e12, names[4]: -1e300},
        {**base, names[1]: float("nan")},
        {**base, names[2]: float("inf"), names[3]: float("-inf")},
        dict.fromkeys(names, 0),
        dict.fromkeys(names, True),
    ]


def test_speaks_the_protocol(name):
    """Each registered factory builds a Detector named after its key."""
    det = fresh(name)
    assert isinstance(det, Detector)
    assert det.name == name
    assert det.supervised == (name in SUPERVISED)


def test_not_ready_and_scoring_zero_before_warmup(name, synth):
    """Before warm-up (or the first fit) a detector is not ready and scores 0.0."""
    det = fresh(name)
    assert not det.ready
    X = synth.normal(20, 3)
    det.learn_many(synth.dicts(X), labels(X))
    assert not det.ready
    assert det.score_many(synth.dicts(X)) == [0.0] * 20
    assert det.score_one(synth.dicts(X)[0]) == 0.0


def test_ready_after_training(name, synth):
    """A few hundred learned events (with some labels) make every detector ready."""
    assert trained(name, synth).ready


def test_scores_in_unit_interval_for_any_input(name, synth):
    """Missing keys, extra keys, empty dicts, huge and non-finite values all score in [0, 1]."""
    det = trained(name, synth)
    xs = odd_inputs(synth) + synth.dicts(synth.anomalies(50, 4)) + synth.dicts(synth.normal(50, 5))
    for x in xs:
        s = det.score_one(x)
        assert isinstance(s, float)
        assert 0.0 <= s <= 1.0 and not math.isnan(s), (x, s)


def test_score_many_equals_score_one(name, synth):
    """score_many(xs) equals [score_one(x) for x in xs] within 1e-9."""
    det = trained(name, synth)
    xs = odd_inputs(synth) + synth.dicts(synth.anomalies(30, 6)) + synth.dicts(synth.normal(30, 7))
    many = det.score_many(xs)
    one = [det.score_one(x) for x in xs]
    assert len(many) == len(xs)
    assert many == pytest.approx(one, abs=1e-9, rel=0)


def test_learn_accepts_any_label(name, synth):
    """learn_one takes y None, True or False; learn_many takes ys or none; odd inputs too."""
    det = trained(name, synth)
    for x in odd_inputs(synth):
        for y in (None, True, False):
            det.learn_one(x, y)
    xs = synth.dicts(synth.normal(10, 8))
    det.learn_many(xs)
    det.learn_many(xs, [True, False] * 5)
    assert det.ready
    assert 0.0 <= det.score_one(xs[0]) <= 1.0


def test_scoring_does_not_change_the_detector(name, synth):
    """Scoring is read-only: a detector that scored learns on exactly like one that did not."""
    a, b = trained(name, synth), trained(name, synth)
    probe = odd_inputs(synth) + synth.dicts(synth.normal(40, 9))
    a.score_many(probe)
    [a.score_one(x) for x in probe]
    X = synth.normal(300, 10)
    for det in (a, b):
        det.learn_many(synth.dicts(X), labels(X))
    assert a.score_many(probe) == b.score_many(probe)


def test_pickle_round_trip_preserves_scores(name, synth):
    """A pickled and restored detector scores, and then learns, exactly like the original."""
    det = trained(name, synth)
    probe = synth.dicts(synth.normal(40, 11)) + synth.dicts(synth.anomalies(10, 11))
    copy = pickle.loads(pickle.dumps(det))
    assert copy.ready
    assert copy.score_many(probe) == det.score_many(probe)
    X = synth.normal(250, 12)
    for d in (det, copy):
        d.learn_many(synth.dicts(X), labels(X))
        d.learn_one(synth.dicts(X)[0], True)
    assert copy.score_many(probe) == det.score_many(probe)


def test_deterministic_for_a_seed(name, synth):
    """Two detectors built with the same seed and fed the same events score identically."""
    a, b = train(fresh(name, seed=3), synth, seed=13), train(fresh(name, seed=3), synth, seed=13)
    probe = synth.dicts(synth.normal(30, 14)) + synth.dicts(synth.anomalies(10, 14))
    assert a.score_many(probe) == b.score_many(probe)
