"""Drift in score streams: one river ``ADWIN`` per named stream.

A stream is named by the caller, e.g. ``"hst:transaction"``. When ADWIN finds that the
mean of the recent scores differs from the older ones, ``update`` returns ``True`` and a
drift event is queued for ``drain``: the stream name, how many scores that stream had
seen, the mean score of the older part of the window that ADWIN dropped (before) and the
mean of the stream's last ``recent`` scores (after). What reaches ``drain`` is what an
operator should hear of: no event in a stream's first ``min_seen`` scores (its model's
calibration still settles), and one per ``cooldown`` scores of a stream at most (a shift
is found again and again while ADWIN's window takes it in); the others are counted in
``n_quiet``.

>>> import random
>>> rng = random.Random(0)
>>> drift = ScoreDrift()
>>> flags = [drift.update("hst:transaction", rng.gauss(0.2, 0.05)) for _ in range(1000)]
>>> flags += [drift.update("hst:transaction", rng.gauss(0.6, 0.05)) for _ in range(1000)]
>>> any(flags[:1000]), any(flags[1000:])
(False, True)
>>> event = drift.drain()[0]
>>> event["name"], event["n"] > 1000, round(event["mean_before"], 1)
('hst:transaction', True, 0.2)
>>> event["mean_after"] > 0.4
True
>>> drift.drain()
[]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from functools import reduce
from operator import add, indexOf
from typing import Any

from river import drift

__all__ = ["ScoreDrift"]

#: default scores of a stream before its drifts are reported
MIN_SEEN = 1000
#: default scores of a stream after a reported drift during which its drifts are not
COOLDOWN = 2000


class _Stream:
    """ADWIN of one stream, with the count and sum of its current window."""

    __slots__ = ("adwin", "last", "reset", "seen", "total", "width")

    def __init__(self, delta: float, recent: int) -> None:
        self.adwin = drift.ADWIN(delta=delta)
        self.last: deque[float] = deque(maxlen=recent)
        self.seen = 0
        self.width = 0
        self.total = 0.0
        self.reset = False


class ScoreDrift:
    """ADWIN per stream name, with a bounded queue of drift events.

    Parameters
    ----------
    delta
        ADWIN's confidence parameter: smaller means fewer, surer detections.
    recent
        Scores averaged for ``mean_after``.
    max_events
        Undrained events kept at most (the oldest are dropped first).
    min_seen
        Scores of a stream before its drifts are reported.
    cooldown
        Scores of a stream after a reported drift during which its drifts are not.
    """

    def __init__(
        self,
        delta: float = 0.002,
        recent: int = 32,
        max_events: int = 1000,
        min_seen: int = MIN_SEEN,
        cooldown: int = COOLDOWN,
    ) -> None:
        self.delta = delta
        self.recent = recent
        self.max_events = max_events
        self.min_seen = min_seen
        self.cooldown = cooldown
        self.streams: dict[str, _Stream] = {}
        self.events: list[dict[str, Any]] = []
        self.n_dropped = 0
        self.n_quiet = 0
        self.quiet_until: dict[str, int] = {}  # per stream: no event before this count

    def update(self, name: str, score: float) -> bool:
        """Feed one score of stream ``name``; ``True`` when a drift is detected."""
        return self.update_many(name, (score,)) > 0

    def update_many(self, name: str, scores: Iterable[float]) -> int:
        """Feed scores of stream ``name`` in order; returns how many drifts were detected."""
        st = self.streams.get(name)
        if st is None:
            st = self.streams[name] = _Stream(self.delta, self.recent)
        values = scores if isinstance(scores, list) else list(scores)
        adwin = st.adwin
        width, total, reset = st.width, st.total, st.reset
        found = 0
        n = len(values)
        pos = start = 0  # values[start:] are in the window (after ``width`` earlier ones)
        while pos < n:
            if reset:  # river empties the window on the update after a drift
                adwin._reset()
                width, total, reset, start = 0, 0.0, False, pos
            update = adwin._helper.update
            try:
                # river's ADWIN.update, in C until the first drift
                k = pos + indexOf(map(update, values[pos:] if pos else values), True)
            except ValueError:
                break
            found += 1
            reset = True
            width += k + 1 - start
            total = reduce(add, values[start : k + 1], total)
            start = pos = k + 1
            adwin._drift_detected = True
            recent = [*st.last, *values[: k + 1]][-self.recent :]
            self._record(name, st.seen + k + 1, width, total, adwin, recent)
        if start < n:
            width += n - start
            total = reduce(add, values[start:], total)
        adwin._drift_detected = reset
        st.seen += n
        st.width, st.total, st.reset = width, total, reset
        st.last.extend(values[-self.recent :])
        return found

    def _record(
        self, name: str, n: int, width: int, total: float, adwin: Any, recent: list[float]
    ) -> None:
        quiet = self.quiet_until
        if n <= self.min_seen or n < quiet.get(name, 0):
            self.n_quiet += 1
            return
        quiet[name] = n + self.cooldown
        kept_w, kept_t = adwin.width, adwin.total
        dropped_w = width - kept_w
        self.events.append(
            {
                "name": name,
                "n": n,
                "mean_before": (total - kept_t) / dropped_w if dropped_w > 0 else None,
                "mean_after": sum(recent) / len(recent),
            }
        )
        if len(self.events) > self.max_events:
            del self.events[0]
            self.n_dropped += 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a bank checkpointed before the quiet periods existed restores with the defaults
        defaults = {"min_seen": MIN_SEEN, "cooldown": COOLDOWN, "n_quiet": 0, "quiet_until": {}}
        self.__dict__.update(defaults | state)

    def drain(self) -> list[dict[str, Any]]:
        """The drift events since the last drain, oldest first."""
        out, self.events = self.events, []
        return out
