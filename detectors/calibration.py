"""Raw anomaly score -> ``[0, 1]`` by its rarity among reference scores.

Every unsupervised detector maps its raw score ``r`` the same way, so that their outputs
can be compared and combined. With ``n`` reference scores (recently learned events, or the
training set of a batch model), ``p = (1 + #{ref >= r}) / (n + 1)`` is the smoothed
fraction of reference events at least as unusual, and the score is
``min(1, log(1/p) / log(rarity))``: ``0.1`` for a median event, ``1/3`` at the 90th
percentile, ``2/3`` at the 99th and ``1.0`` for one rarer than ``1 / rarity`` (1 in 1000
by default). A reference set smaller than ``rarity`` cannot claim that much rarity: its
scores stop at ``log(n + 1) / log(rarity)``.

>>> cal = TailCalibrator(size=100, refresh=100, min_ref=100)
>>> cal.add_many([float(i) for i in range(100)])
>>> round(cal.score(49.5), 3), round(cal.score(-5.0), 3), round(cal.score(1e9), 3)
(0.099, 0.0, 0.668)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["RARITY", "TailCalibrator", "tail_scores"]

RARITY = 1000


def tail_scores(raw: np.ndarray, ref: np.ndarray, rarity: int = RARITY) -> np.ndarray:
    """Vectorised tail score of ``raw`` against the sorted reference ``ref``."""
    n = len(ref)
    if n == 0:
        return np.zeros(len(raw))
    ge = n - np.searchsorted(ref, raw, side="left")
    out = np.minimum(1.0, np.log((n + 1.0) / (ge + 1.0)) / math.log(rarity))
    out[np.isnan(raw)] = 0.0
    return np.asarray(out, dtype=float)


class TailCalibrator:
    """A ring of the last ``size`` raw scores, sorted into a reference every ``refresh`` adds.

    The first reference is taken after ``min_ref`` adds and the gap between references
    doubles up to ``refresh``, so a young detector gets a reference early. The reference
    only changes at these points: between them scoring is a pure function of the input.
    """

    def __init__(
        self, size: int = 2048, refresh: int = 256, min_ref: int = 32, rarity: int = RARITY
    ) -> None:
        if size < 1 or refresh < 1 or min_ref < 1:
            raise ValueError("size, refresh and min_ref must be positive")
        self.size = size
        self.refresh = refresh
        self.min_ref = min_ref
        self.rarity = rarity
        self._ring = np.empty(size)
        self._filled = 0
        self._pos = 0
        self._since = 0
        self.ref = np.empty(0)

    @property
    def n(self) -> int:
        """Scores in the current reference."""
        return len(self.ref)

    def add(self, raw: float) -> None:
        if raw != raw:
            return
        self._ring[self._pos] = raw
        self._pos = (self._pos + 1) % self.size
        self._filled = min(self._filled + 1, self.size)
        self._since += 1
        if self._due():
            self._snapshot()

    def add_many(self, raws: Iterable[float] | np.ndarray) -> None:
        arr = np.asarray(list(raws) if not isinstance(raws, np.ndarray) else raws, dtype=float)
        arr = arr[~np.isnan(arr)]
        if len(arr) == 0:
            return
        if len(arr) >= self.size:
            self._ring[:] = arr[-self.size :]
            self._pos = 0
            self._filled = self.size
        else:
            end = self._pos + len(arr)
            if end <= self.size:
                self._ring[self._pos : end] = arr
            else:
                first = self.size - self._pos
                self._ring[self._pos :] = arr[:first]
                self._ring[: end - self.size] = arr[first:]
            self._pos = end % self.size
            self._filled = min(self._filled + len(arr), self.size)
        self._since += len(arr)
        if self._due():
            self._snapshot()

    def flush(self) -> None:
        """Make the reference hold every score added so far (the last ``size``)."""
        self._snapshot()

    def _due(self) -> bool:
        return self._since >= max(min(self.min_ref, self.refresh), min(self.refresh, len(self.ref)))

    def _snapshot(self) -> None:
        self.ref = np.sort(self._ring[: self._filled])
        self._since = 0

    def score(self, raw: float) -> float:
        return float(self.score_array(np.array([raw], dtype=float))[0])

    def score_array(self, raws: np.ndarray) -> np.ndarray:
        return tail_scores(raws, self.ref, self.rarity)
