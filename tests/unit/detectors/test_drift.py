"""ADWIN over score streams flags a step change and stays quiet on a stationary stream."""

from __future__ import annotations

import random
from itertools import pairwise

from detectors.drift import ScoreDrift


def stream(n: int, mean: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [min(1.0, max(0.0, rng.gauss(mean, 0.08))) for _ in range(n)]


def test_flags_a_step_change():
    """A jump of the mean score from 0.2 to 0.5 is detected soon after it happens."""
    drift = ScoreDrift()
    before = [drift.update("hst:transaction", s) for s in stream(3000, 0.2, 1)]
    after = [drift.update("hst:transaction", s) for s in stream(3000, 0.5, 2)]
    assert not any(before)
    assert any(after[:300])
    event = drift.drain()[0]
    assert event["name"] == "hst:transaction"
    assert 3000 < event["n"] <= 3300
    assert abs(event["mean_before"] - 0.2) < 0.02
    assert event["mean_after"] > 0.35


def test_quiet_on_a_stationary_stream():
    """Twenty thousand scores from one distribution raise no drift."""
    drift = ScoreDrift()
    assert drift.update_many("ecod:application", stream(20_000, 0.3, 3)) == 0
    assert drift.drain() == []


def test_streams_are_independent_and_drain_empties():
    """A change in one stream flags that stream only; drain returns events once."""
    drift = ScoreDrift()
    drift.update_many("a", stream(2000, 0.2, 4))
    drift.update_many("b", stream(2000, 0.2, 5))
    drift.update_many("a", stream(1000, 0.7, 6))
    drift.update_many("b", stream(1000, 0.2, 7))
    events = drift.drain()
    assert events and {e["name"] for e in events} == {"a"}
    assert drift.drain() == []


def test_update_and_update_many_agree():
    """Feeding scores one by one or as a list detects the same drifts."""
    scores = stream(2000, 0.2, 8) + stream(2000, 0.6, 9)
    one, many = ScoreDrift(), ScoreDrift()
    flags = [one.update("s", s) for s in scores]
    assert many.update_many("s", scores) == sum(flags)
    assert one.drain() == many.drain()


def test_event_queue_is_bounded():
    """Undrained events beyond max_events drop the oldest."""
    drift = ScoreDrift(max_events=2, min_seen=0, cooldown=0)
    for k in range(6):
        drift.update_many("s", stream(1000, 0.1 + 0.8 * (k % 2), 10 + k))
    assert len(drift.events) == 2 and drift.n_dropped >= 1


def test_batches_of_any_size_detect_the_same_drifts():
    """How a stream is cut into update_many calls changes neither drifts nor events."""
    scores = stream(1500, 0.2, 10) + stream(1500, 0.7, 11) + stream(1500, 0.3, 12)
    whole, cut = ScoreDrift(recent=8), ScoreDrift(recent=8)
    found = whole.update_many("s", scores)
    n, k = 0, 0
    while k < len(scores):
        step = 1 + (k * 7919) % 97
        n += cut.update_many("s", scores[k : k + step])
        k += step
    assert found == n > 0
    assert whole.drain() == cut.drain()


def test_a_shift_is_reported_once_per_cooldown_and_not_while_the_stream_settles():
    """ADWIN finds a lasting shift again and again while its window takes it in: one
    event reaches the operator per ``cooldown`` scores of the stream; drifts in the
    stream's first ``min_seen`` scores (its model's calibration still settling) are
    not reported. Both are counted in ``n_quiet``."""
    scores = stream(3000, 0.2, 21)
    for k in range(8):  # a stream that keeps moving: a detection every few hundred scores
        scores += stream(600, 0.7 if k % 2 == 0 else 0.2, 22 + k)
    loud = ScoreDrift(min_seen=0, cooldown=0)
    found = loud.update_many("s", scores)
    quiet = ScoreDrift(cooldown=2000)
    assert quiet.update_many("s", scores) == found  # detection itself is unchanged
    reported = [e["n"] for e in quiet.drain()]
    assert len(loud.drain()) == found > len(reported) >= 2
    assert all(b - a >= 2000 for a, b in pairwise(reported))
    assert quiet.n_quiet == found - len(reported)
    early = ScoreDrift(min_seen=5000)
    early.update_many("s", scores[:4000])
    assert early.drain() == [] and early.n_quiet > 0
