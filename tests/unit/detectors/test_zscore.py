"""The z-score detector: river moments in both paths, robust to outlier bursts."""

from __future__ import annotations

import numpy as np
import pytest
from river import stats

from detectors.online import ZScoreDetector


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
