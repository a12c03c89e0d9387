"""Online unsupervised detectors: learn every event, score in microseconds.

``HSTDetector`` runs river's Half-Space Trees on features scaled to robust ranges that
follow the traffic (on all features or a chosen subset); ``ZScoreDetector`` keeps a river
``stats.Var`` per feature and scores the largest absolute z-score. Both map their raw
score to ``[0, 1]`` with a :class:`~detectors.calibration.TailCalibrator` fed by the
events they learn, so their scores read alike: ``0.1`` for a typical event, ``1.0`` for
one rarer than 1 in 1000.

>>> import random
>>> rng = random.Random(0)
>>> det = ZScoreDetector(warmup=50)
>>> for _ in range(400):
...     det.learn_one({"amount": rng.gauss(100, 10), "age_days": rng.gauss(400, 50)})
>>> det.ready
True
>>> det.score_one({"amount": 101.0, "age_days": 390.0}) < 0.3
True
>>> det.score_one({"amount": 400.0, "age_days": 390.0}) > 0.6
True
>>> [(f, v) for f, v, z in det.contributions({"amount": 400.0, "age_days": 390.0}, k=1)]
[('amount', 400.0)]
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from river import anomaly, preprocessing, stats

from detectors.base import (
    LIMIT,
    BaseDetector,
    Features,
    VectorizedDetector,
    clean,
    to_matrix,
)
from detectors.calibration import TailCalibrator

__all__ = ["HSTDetector", "ZScoreDetector"]


class _FlatForest:
    """River's half-space trees laid out as arrays, to score and learn whole matrices.

    The trees are complete binary trees: node ``k`` has children ``2k+1`` and ``2k+2``.
    The structure (split feature, threshold) is copied once. The masses live either on
    river's nodes or in two arrays: ``arrays()`` and ``to_nodes()`` move them, so river's
    own ``score_one`` / ``learn_one`` and the array code agree exactly.
    """

    __slots__ = ("feat", "height", "l_mass", "nodes", "r_mass", "thr")

    def __init__(self, hst: anomaly.HalfSpaceTrees, features: Sequence[str]) -> None:
        pos = {f: j for j, f in enumerate(features)}
        h = hst.height
        n_inner = 2**h - 1
        self.height = h
        self.nodes: list[list[Any]] = []
        self.feat = np.zeros((len(hst.trees), max(n_inner, 1)), dtype=np.intp)
        self.thr = np.zeros((len(hst.trees), max(n_inner, 1)))
        self.l_mass: np.ndarray | None = None
        self.r_mass: np.ndarray | None = None
        for t, root in enumerate(hst.trees):
            order = [root]
            k = 0
            while k < len(order):
                node = order[k]
                if k < n_inner:
                    order.extend(node.children)
                    self.feat[t, k] = pos[node.feature]
                    self.thr[t, k] = node.threshold
                k += 1
            self.nodes.append(order)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The masses as arrays (taken from the nodes if they hold them)."""
        if self.l_mass is None or self.r_mass is None:
            nodes = self.nodes
            self.l_mass = np.array([[n.l_mass for n in t] for t in nodes], dtype=np.int64)
            self.r_mass = np.array([[n.r_mass for n in t] for t in nodes], dtype=np.int64)
        return self.l_mass, self.r_mass

    def to_nodes(self) -> None:
        """Hand the masses back to river's nodes."""
        if self.l_mass is None or self.r_mass is None:
            return
        for tree, ls, rs in zip(
            self.nodes, self.l_mass.tolist(), self.r_mass.tolist(), strict=True
        ):
            for node, lm, rm in zip(tree, ls, rs, strict=True):
                node.l_mass = lm
                node.r_mass = rm
        self.l_mass = self.r_mass = None

    def _step(self, S: np.ndarray, node: np.ndarray, l_mass: np.ndarray) -> np.ndarray:
        """Children of ``node`` (trees x rows) for the rows of ``S``; river's rule for gaps."""
        tix = np.arange(len(self.nodes))[:, None]
        v = S[np.arange(S.shape[0])[None, :], self.feat[tix, node]]
        right = ~(v < self.thr[tix, node])
        gap = np.isnan(v)
        if gap.any():
            heavier_right = l_mass[tix, 2 * node + 1] < l_mass[tix, 2 * node + 2]
            right = np.where(gap, heavier_right, right)
        return np.asarray(2 * node + 1 + right)

    def paths(self, S: np.ndarray) -> np.ndarray | None:
        """The node of every tree and row of ``S`` at each depth, root first: an array
        depth x tree x row.

        ``None`` when ``S`` has gaps: a gap sends a row to the busier child, so its path
        depends on the masses at the time; without gaps it depends on ``S`` alone.
        """
        if np.isnan(S).any():
            return None
        T, (n, d) = len(self.nodes), S.shape
        # flat positions: tree t's inner node k in feat / thr, row r's feature f in S
        tree_base = np.arange(T)[:, None] * self.feat.shape[1]
        row_base = np.arange(n)[None, :] * d
        values = np.ascontiguousarray(S).ravel()
        out = np.empty((self.height + 1, T, n), dtype=np.intp)
        node = out[0]
        node[...] = 0
        for depth in range(self.height):
            inner = node + tree_base
            v = values.take(self.feat.take(inner) + row_base)
            right = ~(v < self.thr.take(inner))
            node = out[depth + 1]
            np.add(2 * out[depth] + 1, right, out=node)
        return out

    def score(
        self,
        S: np.ndarray,
        hst: anomaly.HalfSpaceTrees,
        paths: np.ndarray | None = None,
    ) -> np.ndarray:
        """River's ``HalfSpaceTrees.score_one`` of every row of ``S`` (``nan`` = missing).

        ``paths``: :meth:`paths` of ``S``, if known.
        """
        l_mass, r_mass = self.arrays()
        T, n = len(self.nodes), S.shape[0]
        size_limit = 0.1 * hst.window_size
        max_score = hst.n_trees * hst.window_size * (2 ** (self.height + 1) - 1)
        tree_base = np.arange(T)[:, None] * r_mass.shape[1]  # flat positions in the masses
        node = np.zeros((T, n), dtype=np.intp)
        total = np.zeros((T, n), dtype=np.int64)
        alive = np.ones((T, n), dtype=bool)
        for depth in range(self.height):
            r = r_mass.take(node + tree_base)
            total += np.where(alive, r << depth, 0)
            alive &= r >= size_limit
            node = self._step(S, node, l_mass) if paths is None else paths[depth + 1]
        total += np.where(alive, r_mass.take(node + tree_base) << self.height, 0)
        return np.asarray(1.0 - total.sum(axis=0) / max_score, dtype=float)

    def learn(
        self,
        S: np.ndarray,
        hst: anomaly.HalfSpaceTrees,
        names: Sequence[str],
        paths: np.ndarray | None = None,
    ) -> None:
        """River's ``learn_one`` of every row of ``S`` in order, window pivots included.

        ``paths``: :meth:`paths` of ``S``, if known.
        """
        l_mass, r_mass = self.arrays()
        T = len(self.nodes)
        width = l_mass.shape[1]
        tix = np.arange(T)[:, None]
        gaps = np.isnan(S).any(axis=1)
        i, n = 0, len(S)
        while i < n:
            take = min(n - i, hst.window_size - hst.counter)
            block = S[i : i + take]
            i += take
            if gaps[i - take : i].any():
                # A missing split feature sends a row to the busier child, which depends on
                # the rows learned just before it: such stretches go through river row by row.
                self.l_mass, self.r_mass = l_mass, r_mass
                self.to_nodes()
                for row in block.tolist():
                    hst.learn_one({k: v for k, v in zip(names, row, strict=True) if v == v})
                l_mass, r_mass = self.arrays()
                continue
            if paths is not None:
                visited = paths[:, :, i - take : i]
            else:
                node = np.zeros((T, take), dtype=np.intp)
                steps = [node]
                for _ in range(self.height):
                    node = self._step(block, node, l_mass)
                    steps.append(node)
                visited = np.stack(steps)
            flat = (visited + tix * width).ravel()
            l_mass += np.bincount(flat, minlength=T * width).reshape(T, width)
            hst.counter += take
            if hst.counter == hst.window_size:
                r_mass = l_mass
                l_mass = np.zeros_like(r_mass)
                hst.counter = 0
                hst._first_window = False
        self.l_mass, self.r_mass = l_mass, r_mass


#: Robust range of a feature: the ``RANGE_Q`` and ``1 - RANGE_Q`` quantiles of the recent
#: rows, widened by ``RANGE_MARGIN`` times their distance on each side, within the values
#: seen. Without outliers that is the seen minimum and maximum; a few extreme values
#: (under ``RANGE_Q`` of the rows) are left out instead of squashing the rest.
RANGE_Q = 0.01
RANGE_MARGIN = 1.0
#: Where a feature of zero span puts values below and above its one value: outside the
#: unit interval, so left, resp. right, of every split of every tree.
_OFF_RANGE = (-0.5, 1.5)


def robust_ranges(R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, span, mid)`` per column of ``R`` (rows of raw values; ``nan``: missing).

    ``low`` and ``span``: the robust range (see ``RANGE_Q``), of the finite values only,
    clipped to ``[-LIMIT, LIMIT]``; ``nan`` for a column without any. ``mid``: where the
    one value of a zero-span column sits in the unit interval: ``0.0`` when the column
    also had larger values (cut off as outliers), ``1.0`` when it had smaller ones only,
    ``0.5`` when it never varied; so that every split of that feature separates the
    usual value from what was seen, or might be seen, on the other side.

    >>> R = np.array([[i % 10, 0.0, 5.0] for i in range(200)], dtype=float)
    >>> R[0] = [1e9, 1e9, 5.0]  # one outlier in the first two columns
    >>> low, span, mid = robust_ranges(R)
    >>> low.tolist(), span.tolist(), mid.tolist()
    ([0.0, 0.0, 5.0], [18.0, 0.0, 0.0], [0.0, 0.0, 0.5])
    """
    n, d = R.shape
    if n == 0:
        return np.full(d, math.nan), np.full(d, math.nan), np.full(d, 0.5)
    finite = np.isfinite(R)
    A = np.clip(R, -LIMIT, LIMIT)
    if not finite.all():
        A[~finite] = math.nan
    A.sort(axis=0)  # nan last
    k = np.count_nonzero(~np.isnan(A), axis=0)
    last = np.maximum(k, 1) - 1
    cols = np.arange(d)
    # nearest ranks, inward: the top (bottom) share RANGE_Q of the values is left out
    # whole, without an outlier leaking into an interpolated quantile
    qlo = A[np.ceil(RANGE_Q * last - 1e-9).astype(np.intp), cols]
    qhi = A[np.floor((1.0 - RANGE_Q) * last + 1e-9).astype(np.intp), cols]
    vmin, vmax = A[0, cols], A[last, cols]
    width = qhi - qlo
    low = np.maximum(vmin, qlo - RANGE_MARGIN * width)
    high = np.minimum(vmax, qhi + RANGE_MARGIN * width)
    low[k == 0] = math.nan
    span = high - low
    mid = np.where(vmin == vmax, 0.5, np.where(low == vmin, 0.0, np.where(high == vmax, 1.0, 0.5)))
    return low, span, mid


class HSTDetector(BaseDetector):
    """River ``HalfSpaceTrees`` on features scaled to robust, regularly re-learned ranges.

    ``score_one`` / ``learn_one`` run river's own code on a dict; ``score_array`` /
    ``learn_array`` run the same trees on a whole matrix with numpy, with the same
    results (a micro-batch of 500 costs a few microseconds per event).

    The trees split the unit cube at random; each feature is mapped onto it by a range:
    ``(value - low) / span``. The ranges are robust (see :func:`robust_ranges`): a few
    extreme values, such as one legal 1e9 amount, are left out rather than squashing
    every other value into a corner, and values beyond the range fall into the outer
    half-spaces, where anomalies belong. A feature whose range has no span (it did not
    vary, or varied only in a few outliers) maps its usual value inside the unit interval
    and any other value outside it, below or above: a rare flag, a ``*_fraud_share`` that
    stays 0 until the first fraud verdict, still counts when it moves.

    The first ranges come from the warm-up rows (``max(warmup, window_size)``; the trees
    then learn those rows with them). Then, at a window's end, the ranges are learned
    again from the last ``range_rows`` rows: a window later, and at gaps that double up to
    ``range_every`` learned events (so a young model, or a rare event type, catches up
    with its traffic soon, and a busy one spends little on it). When they moved, the
    trees' reference masses are rebuilt from the last window's rows with the new ranges:
    exactly what the trees would hold had the new ranges scaled that window (half-space
    trees remember the last window only). So a range follows the traffic (amounts that
    grow, counts that fill up after a cold start) while one event, or a handful, cannot
    move it.

    Parameters
    ----------
    features
        The features the trees split on. ``None``: the features of the first learned
        event (or batch), or a seeded sample of ``max_features`` of them.
    max_features
        Cap on the number of features picked when ``features`` is ``None``.
    n_trees, height, window_size
        River's HST parameters. Cost grows linearly with ``n_trees`` and ``height``. A
        walk stops at nodes holding fewer than ``window_size / 10`` events, so with a
        window of 250 depths beyond 4 are rarely reached: many shallow trees (25 of
        height 4) rank anomalies better than fewer deeper ones at the same cost (see
        ``bench/bench_detectors.py``).
    warmup
        Learned events before the score counts (at least ``window_size``).
    range_every
        Most learned events between two updates of the ranges.
    range_rows
        Recent rows kept to learn the ranges from (at least the warm-up's and a window's).
    calib_every
        Every ``calib_every``-th learned event is also scored (by the trees as they were
        before its batch) to feed the calibrator.
    seed
        Seeds the trees and the feature sample.

    >>> import random
    >>> rng = random.Random(1)
    >>> hst = HSTDetector(n_trees=5, height=4, window_size=100, warmup=100, seed=1)
    >>> for _ in range(600):
    ...     hst.learn_one({"a": rng.random(), "b": rng.random()})
    >>> hst.ready
    True
    >>> hst.score_one({"a": 0.5, "b": 0.5}) < hst.score_one({"a": 5.0, "b": -4.0})
    True
    """

    name = "hst"
    supervised = False

    def __init__(
        self,
        features: Sequence[str] | None = None,
        *,
        max_features: int | None = None,
        n_trees: int = 25,
        height: int = 4,
        window_size: int = 250,
        warmup: int = 500,
        range_every: int = 2000,
        range_rows: int = 1000,
        calib_every: int = 4,
        seed: int = 7,
    ) -> None:
        self.features: tuple[str, ...] | None = tuple(features) if features is not None else None
        self.max_features = max_features
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.warmup = warmup
        self.range_every = max(1, range_every)
        self.range_rows = range_rows
        self.calib_every = max(1, calib_every)
        self.seed = seed
        self.hst = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.calibrator = TailCalibrator()
        self.n_learned = 0
        self._forest: _FlatForest | None = None
        self._cols: tuple[tuple[str, ...], np.ndarray] | None = None
        self._init_ranges()

    def _init_ranges(self) -> None:
        # the ranges, in the order of the features (None until the warm-up ends)
        self._low: np.ndarray | None = None
        self._span: np.ndarray | None = None
        self._mid: np.ndarray | None = None
        self._off = _OFF_RANGE
        self._ranged_at = 0  # n_learned when the ranges were last learned
        self._ranged_first = 0  # ... first learned (the gaps double from there)
        self._by_name: list[tuple[str, float, float, float]] = []
        # the last rows learned, raw (a ring of `_capacity` rows, `nan`: missing)
        self._rows: np.ndarray | None = None
        self._rows_pos = 0
        self._rows_len = 0

    @property
    def _scale_until(self) -> int:
        return max(self.warmup, self.window_size)

    @property
    def _capacity(self) -> int:
        return max(self.range_rows, self._scale_until)

    @property
    def ready(self) -> bool:
        return (
            self.n_learned >= self._scale_until
            and not self.hst._first_window
            and self.calibrator.n > 0
        )

    def _choose_features(self, keys: Iterable[str]) -> tuple[str, ...]:
        names = sorted(keys)
        if self.max_features is not None and len(names) > self.max_features:
            names = sorted(random.Random(self.seed).sample(names, self.max_features))
        self.features = tuple(names)
        return self.features

    def _range(self, f: str) -> tuple[float, float] | None:
        """The range ``(low, high)`` feature ``f`` is scaled by, if it has one."""
        for name, low, span, _ in self._by_name:
            if name == f:
                return low, low + span
        return None

    # -- the rows kept and the ranges learned from them -----------------------------------

    def _keep(self, F: np.ndarray) -> None:
        """Keep the raw rows ``F`` (features in the model's order) in the ring."""
        cap, n = self._capacity, len(F)
        if self._rows is None or self._rows.shape != (cap, F.shape[1]):
            self._rows = np.full((cap, F.shape[1]), math.nan)
            self._rows_pos = self._rows_len = 0
        if n >= cap:
            self._rows[:] = F[n - cap :]
            self._rows_pos = 0
        else:
            end = self._rows_pos + n
            if end <= cap:
                self._rows[self._rows_pos : end] = F
            else:
                first = cap - self._rows_pos
                self._rows[self._rows_pos :] = F[:first]
                self._rows[: end - cap] = F[first:]
            self._rows_pos = end % cap
        self._rows_len = min(self._rows_len + n, cap)

    def _keep_one(self, row: list[float]) -> None:
        """Keep one raw row (a list in the model's order)."""
        rows = self._rows
        if rows is None or rows.shape != (self._capacity, len(row)):
            self._keep(np.array([row], dtype=float).reshape(1, len(row)))
            return
        rows[self._rows_pos] = row
        self._rows_pos = (self._rows_pos + 1) % len(rows)
        self._rows_len = min(self._rows_len + 1, len(rows))

    def _recent(self, k: int) -> np.ndarray:
        """The last ``k`` rows kept, oldest first."""
        assert self._rows is not None
        k = min(k, self._rows_len)
        return self._rows[(self._rows_pos - k + np.arange(k)) % len(self._rows)]

    def _learn_ranges(self) -> bool:
        """Learn the ranges from the rows kept; whether they changed."""
        assert self.features is not None
        low, span, mid = robust_ranges(self._recent(self._rows_len))
        mid = np.where(span == 0, mid, 0.0)
        same = (
            self._low is not None
            and self._span is not None
            and self._mid is not None
            and self._off == _OFF_RANGE
            and np.array_equal(low, self._low, equal_nan=True)
            and np.array_equal(span, self._span, equal_nan=True)
            and np.array_equal(mid, self._mid)
        )
        self._set_ranges(low, span, mid, _OFF_RANGE)
        self._ranged_at = self.n_learned
        return not same

    def _set_ranges(
        self, low: np.ndarray, span: np.ndarray, mid: np.ndarray, off: tuple[float, float]
    ) -> None:
        assert self.features is not None
        self._low, self._span, self._mid, self._off = low, span, mid, off
        self._by_name = [
            (f, lo, sp, m)
            for f, lo, sp, m in zip(
                self.features, low.tolist(), span.tolist(), mid.tolist(), strict=True
            )
            if lo == lo
        ]

    @property
    def _range_gap(self) -> int:
        """Learned events from the last ranges to the next: a window, then as many as
        since the first ranges, at most ``range_every``."""
        since = self._ranged_at - self._ranged_first
        return min(self.range_every, max(self.window_size, since))

    def _refit_due(self) -> bool:
        """At a window's end, a gap after the ranges were last learned."""
        return (
            self.hst.counter == 0
            and self.n_learned - self._ranged_at >= self._range_gap
            and self._rows_len >= self.window_size
        )

    def _refit(self) -> None:
        """Learn the ranges again; when they moved, rebuild the reference masses from the
        last window's rows with them (called at a window's end: nothing else is held)."""
        if not self._learn_ranges():
            return
        assert self.features is not None
        W = self._scale(self._recent(self.window_size))
        forest = self._flat()
        l_mass, r_mass = forest.arrays()
        forest.l_mass, forest.r_mass = np.zeros_like(l_mass), np.zeros_like(r_mass)
        forest.learn(W, self.hst, self.features, forest.paths(W))  # ends at a window pivot

    def _start(self) -> None:
        """End of the warm-up: the first ranges, the trees, and the trees learn the rows
        kept (the warm-up's), window by window, feeding the calibrator as they go."""
        assert self.features is not None
        self._learn_ranges()
        self._ranged_first = self.n_learned
        hst = self.hst
        hst.learn_one(dict.fromkeys(self.features, 0.5))  # builds the trees (river's way)
        forest = self._flat()
        l_mass, r_mass = forest.arrays()
        forest.l_mass, forest.r_mass = np.zeros_like(l_mass), np.zeros_like(r_mass)
        hst.counter, hst._first_window = 0, True
        S = self._scale(self._recent(self._rows_len))
        paths = forest.paths(S)
        n0 = self.n_learned - len(S)  # the index of the first row learned
        start, n = 0, len(S)
        while start < n:
            stop = start + min(n - start, hst.window_size - hst.counter)
            if not hst._first_window:
                first = start + (-(n0 + start)) % self.calib_every
                picked = np.arange(first, stop, self.calib_every)
                if len(picked):
                    at = None if paths is None else paths[:, :, picked]
                    for raw in forest.score(S[picked], hst, at).tolist():
                        self.calibrator.add(raw)
            at = None if paths is None else paths[:, :, start:stop]
            forest.learn(S[start:stop], hst, self.features, at)
            start = stop

    # -- scaling ---------------------------------------------------------------------------

    def _scale(self, rows: np.ndarray) -> np.ndarray:
        """Raw rows (features in the model's order) scaled; ``nan``: missing or no range."""
        low, span, mid = self._low, self._span, self._mid
        assert low is not None and span is not None and mid is not None
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            out = (rows - low) / np.where(span > 0, span, 1.0)
            flat = span == 0
            if flat.any():
                below, above = self._off
                off = np.where(rows > low, above, np.where(rows < low, below, mid))
                out = np.where(flat, off, out)
        out[np.isnan(rows) | np.isnan(out)] = math.nan
        return np.asarray(out)

    def _scaled(self, x: Features) -> dict[str, float]:
        """``x`` scaled, as :meth:`_scale` does a row."""
        out = {}
        get = x.get
        below, above = self._off
        for f, low, span, mid in self._by_name:
            v = get(f)
            if v is None or v != v:
                continue
            v = float(v)
            if span > 0:
                out[f] = (v - low) / span
            else:
                out[f] = above if v > low else below if v < low else mid
        return out

    # -- one event: river's code -------------------------------------------------------

    def _river(self) -> anomaly.HalfSpaceTrees:
        """River's model, with the masses on its nodes."""
        if self._forest is not None:
            self._forest.to_nodes()
        return self.hst

    def score_one(self, x: Features) -> float:
        if not self.ready:
            return 0.0
        return self.calibrator.score(self._river().score_one(self._scaled(x)))

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        features = self.features or self._choose_features(x)
        get, nan = x.get, math.nan
        self._keep_one([nan if (v := get(f)) is None else float(v) for f in features])
        if self.n_learned < self._scale_until:
            self.n_learned += 1
            if self.n_learned == self._scale_until:
                self._start()
            return
        d = self._scaled(x)
        hst = self._river()
        if not hst._first_window and self.n_learned % self.calib_every == 0:
            self.calibrator.add(hst.score_one(d))
        hst.learn_one(d)
        self.n_learned += 1
        if self._refit_due():
            self._refit()

    # -- checkpoints -------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        self._river()
        state = self.__dict__.copy()
        del state["_by_name"]
        # every learned row is kept: the ring is current as of this count (a release
        # that does not keep it leaves the count behind when it learns)
        state["_rows_at"] = self.n_learned
        # what the release before reads after a rollback: its frozen min-max scaler as the
        # current ranges, which it keeps scoring and learning with
        ranged = self._low is not None
        state["scaler"] = preprocessing.MinMaxScaler()
        state["_frozen"] = [(f, lo, sp) for f, lo, sp, _ in self._by_name] if ranged else None
        state["_frozen_arrays"] = (self._low, self._span) if ranged else None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        current = state.pop("_rows_at", None) == state["n_learned"]
        legacy = {k: state.pop(k, None) for k in ("scaler", "_frozen", "_frozen_arrays")}
        self.__dict__.update(state)
        if current:
            if self._low is not None and self._span is not None and self._mid is not None:
                self._set_ranges(self._low, self._span, self._mid, self._off)
            else:
                self._by_name = []
            return
        self._upgrade(legacy["scaler"], legacy["_frozen"])

    def _upgrade(
        self,
        scaler: preprocessing.MinMaxScaler | None,
        frozen: list[tuple[str, float, float]] | None,
    ) -> None:
        """A checkpoint of the release before (or one it wrote after a rollback): the
        frozen min-max ranges its trees learned with stay, with its scaling of a zero
        span (every value to 0.0), until the ranges are learned again, a window on, from
        the rows kept from then. One still in its warm-up starts afresh."""
        params = self.__dict__
        params.setdefault("range_every", 2000)
        params.setdefault("range_rows", 1000)
        if self.n_learned < self._scale_until or self.features is None:
            fresh = HSTDetector(
                self.features,
                max_features=self.max_features,
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                warmup=self.warmup,
                range_every=self.range_every,
                range_rows=self.range_rows,
                calib_every=self.calib_every,
                seed=self.seed,
            )
            self.__dict__ = fresh.__dict__
            return
        if frozen is None:  # not scaled since its warm-up: the scaler's ranges
            frozen = []
            for f in self.features:
                if scaler is not None and f in scaler.min:
                    lo, hi = scaler.min[f].get(), scaler.max[f].get()
                    frozen.append((f, lo, hi - lo))
        where = {f: j for j, f in enumerate(self.features)}
        d = len(self.features)
        low, span = np.full(d, math.nan), np.full(d, math.nan)
        for f, lo, sp in frozen:
            low[where[f]], span[where[f]] = lo, sp
        self._rows, self._rows_pos, self._rows_len = None, 0, 0
        self._ranged_at = self._ranged_first = self.n_learned
        self._set_ranges(low, span, np.zeros(d), (0.0, 0.0))

    # -- a matrix: numpy on the same trees ----------------------------------------------

    def _raw(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """The model's features of ``X``, in its order, raw; ``nan`` for missing."""
        assert self.features is not None
        cols = tuple(columns)
        if self._cols is None or self._cols[0] != cols:
            pos = {c: i for i, c in enumerate(cols)}
            self._cols = (cols, np.array([pos.get(f, -1) for f in self.features], dtype=np.intp))
        idx = self._cols[1]
        F = X[:, np.maximum(idx, 0)] if len(cols) else np.full((len(X), len(idx)), math.nan)
        F[:, idx < 0] = math.nan
        return np.asarray(F, dtype=float)

    def _matrix(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """Scaled features in the model's order; ``nan`` for missing or unknown range."""
        return self._scale(self._raw(X, columns))

    def _flat(self) -> _FlatForest:
        if self._forest is None:
            assert self.features is not None
            self._forest = _FlatForest(self.hst, self.features)
        return self._forest

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        if not self.ready:
            return np.zeros(len(X))
        raws = self._flat().score(self._matrix(X, columns), self.hst)
        return self.calibrator.score_array(raws)

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None:
        self._score_learn(X, columns, want_scores=False)

    def score_learn_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray | None:
        return self._score_learn(X, columns, want_scores=True)

    def _score_learn(
        self, X: np.ndarray, columns: Sequence[str], want_scores: bool
    ) -> np.ndarray | None:
        scores = np.zeros(len(X)) if want_scores and self.ready else None
        if not len(X):
            return scores
        if self.features is None:  # as learn_one of the first row would choose them
            self._choose_features(c for c, v in zip(columns, X[0].tolist(), strict=True) if v == v)
        F = self._raw(X, columns)
        if self.n_learned < self._scale_until:
            m = min(len(F), self._scale_until - self.n_learned)
            self._keep(F[:m])
            self.n_learned += m
            if self.n_learned == self._scale_until:
                self._start()
            F = F[m:]
            if not len(F):
                return scores
        forest, hst = self._flat(), self.hst
        S = self._scale(F)
        paths = forest.paths(S)
        raws = None
        if scores is not None:
            raws = forest.score(S, hst, paths)
            scores[:] = self.calibrator.score_array(raws)
        samples = None
        if not hst._first_window:
            picked = np.arange((-self.n_learned) % self.calib_every, len(S), self.calib_every)
            if raws is not None:
                samples = raws[picked]
            else:
                picked_paths = None if paths is None else paths[:, :, picked]
                samples = forest.score(S[picked], hst, picked_paths)
        assert self.features is not None
        start, n = 0, len(S)
        while start < n:
            stop = start + self._rows_to_refit(n - start)
            at = None if paths is None else paths[:, :, start:stop]
            forest.learn(S[start:stop], hst, self.features, at)
            self._keep(F[start:stop])
            self.n_learned += stop - start
            if self._refit_due():
                self._refit()
                if stop < n:  # the rest of the batch with the new ranges
                    S[stop:] = self._scale(F[stop:])
                    rest = forest.paths(S[stop:])
                    if paths is not None and rest is not None:
                        paths[:, :, stop:] = rest
                    else:
                        paths = forest.paths(S)
            start = stop
        if samples is not None:
            self.calibrator.add_many(samples)
        return scores

    def _rows_to_refit(self, n: int) -> int:
        """Rows of the next ``n`` to learn before the ranges are learned again (``n``
        when that is not within them): up to the first window's end at which it is due."""
        window = self.hst.window_size
        first = window - self.hst.counter  # rows until the next window's end
        wait = self._ranged_at + self._range_gap - self.n_learned
        ahead = first + max(0, -(-(wait - first) // window)) * window
        return min(n, ahead)

    def score_many(self, xs: Sequence[Features]) -> list[float]:
        if not xs or not self.ready or self.features is None:
            return [0.0] * len(xs)
        scores: list[float] = self.score_array(to_matrix(xs, self.features), self.features).tolist()
        return scores

    def learn_many(self, xs: Sequence[Features], ys: Sequence[bool | None] | None = None) -> None:
        if not xs:
            return
        features = self.features or self._choose_features({k for x in xs for k in x})
        self.learn_array(to_matrix(xs, features), features)


class _Moments:
    """Running count, mean and sum of squared deviations of some columns, as arrays."""

    __slots__ = ("columns", "mean", "n", "s")

    def __init__(self, columns: tuple[str, ...], n: np.ndarray, mean: np.ndarray, s: np.ndarray):
        self.columns = columns
        self.n = n
        self.mean = mean
        self.s = s


def _var_state(var: stats.Var) -> tuple[float, float, float]:
    return var.mean.n, var.mean._mean, var._S


def _set_var_state(var: stats.Var, n: float, mean: float, s: float) -> None:
    # river's Var is a Mean (n, _mean) plus the sum of squared deviations _S; setting them
    # moves the exact state, so the dict and matrix paths stay bit-for-bit in step.
    var.mean.n = n
    var.mean._mean = mean
    var._S = s


#: warm-up events kept by the z-score model: a clean dict, or column names and rows
_Warm = dict[str, float] | tuple[tuple[str, ...], np.ndarray]


def _warm_len(item: _Warm) -> int:
    return 1 if isinstance(item, dict) else len(item[1])


class ZScoreDetector(VectorizedDetector):
    """Largest absolute z-score over the features, from a river ``stats.Var`` per feature.

    Learned values are winsorised at ``clip_z`` standard deviations, so that a burst of
    outliers does not inflate the variance it is measured against (and clipped to
    ``[-1e12, 1e12]``, so that the running moments stay finite). A feature counts once it
    has ``min_count`` values and a non-zero variance. The raw score (max |z|) is mapped to
    ``[0, 1]`` by its rarity among the last learned events, each scored against the
    moments before its batch. The first reference comes at the end of the warm-up: the
    warm-up's events (the last ``calibrator.size`` of them, kept until then, with the
    rest of the batch that ends it) scored against the moments as they are then. So the
    score counts from event ``warmup + 1`` whatever the micro-batches, and its first
    reference is not scored against the few moments (or none) of a young model.

    ``score_one`` / ``learn_one`` loop over the dict with the ``stats.Var`` objects. The
    matrix path holds the moments of its columns in arrays (moved in and out of the
    ``Var`` objects exactly, as needed) and merges a whole batch at once with river's
    parallel update, winsorising against the moments as they were before the batch.
    """

    name = "zscore"
    supervised = False

    def __init__(self, *, warmup: int = 500, clip_z: float = 6.0, min_count: int = 10) -> None:
        self.warmup = warmup
        self.clip_z = clip_z
        self.min_count = min_count
        self._stats: dict[str, stats.Var] = {}
        self._block: _Moments | None = None
        self.calibrator = TailCalibrator()
        self.n_learned = 0
        self._contrib_cache: tuple[int, dict[str, tuple[float, float]]] | None = None
        # the warm-up's events (clean dicts, or column names and rows), until it ends
        self._warm: list[_Warm] | None = []
        self._warm_rows = 0

    @property
    def ready(self) -> bool:
        return self.n_learned >= self.warmup and self.calibrator.n > 0

    def _keep_warm(self, item: _Warm, rows: int) -> None:
        """Keep warm-up events for the first reference (the last ``calibrator.size``)."""
        if self._warm is None:  # a checkpoint of the release before, in its warm-up
            self._warm, self._warm_rows = [], 0
        self._warm.append(item)
        self._warm_rows += rows
        size = self.calibrator.size
        while self._warm_rows - _warm_len(self._warm[0]) >= size:
            self._warm_rows -= _warm_len(self._warm.pop(0))

    def _end_warmup(self) -> None:
        """The first calibration reference: the warm-up's events scored now."""
        warm, self._warm, self._warm_rows = self._warm, None, 0
        if not warm:
            return
        raws = []
        for item in warm:
            if isinstance(item, dict):
                raws.append(np.array([self._raw_one(item)]))
            else:
                columns, X = item
                raws.append(self._raw(X, *self._moments(columns)))
        self.calibrator.add_many(np.concatenate(raws))
        self.calibrator.flush()

    @property
    def stats(self) -> dict[str, stats.Var]:
        """A river ``stats.Var`` per feature seen."""
        self._flush()
        return self._stats

    def _flush(self) -> None:
        """Move the array moments back into the ``Var`` objects."""
        block = self._block
        if block is None:
            return
        for c, n, m, s in zip(
            block.columns, block.n.tolist(), block.mean.tolist(), block.s.tolist(), strict=True
        ):
            if n > 0:
                var = self._stats.get(c)
                if var is None:
                    var = self._stats[c] = stats.Var()
                _set_var_state(var, n, m, s)
        self._block = None

    def _load(self, columns: Sequence[str]) -> _Moments:
        """The moments of ``columns`` as arrays (taken from the ``Var`` objects if needed)."""
        cols = tuple(columns)
        if self._block is not None and self._block.columns == cols:
            return self._block
        self._flush()
        state = np.zeros((len(cols), 3))
        for j, c in enumerate(cols):
            var = self._stats.get(c)
            if var is not None:
                state[j] = _var_state(var)
        n, mean, s = state.T.copy()
        self._block = _Moments(cols, n, mean, s)
        return self._block

    def __getstate__(self) -> dict[str, Any]:
        self._flush()
        state = self.__dict__.copy()
        state["_contrib_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("_contrib_cache", None)
        state.setdefault("_warm", None)
        state.setdefault("_warm_rows", 0)
        self.__dict__.update(state)

    def columns_for(self, xs: Sequence[Features]) -> tuple[str, ...]:
        return tuple(sorted({k for x in xs for k in x}))

    def _moments(self, columns: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation per column; ``nan`` where a feature does not count."""
        block = self._load(columns)
        n = block.n
        counts = (n >= self.min_count) & (n > 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(np.where(counts, block.s / (n - 1), 0.0))
        counts &= sd > 0
        return np.where(counts, block.mean, np.nan), np.where(counts, sd, np.nan)

    @staticmethod
    def _raw(X: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            Z = np.abs(X - mean) / sd
        Z[np.isnan(Z)] = 0.0
        return Z.max(axis=1) if Z.shape[1] else np.zeros(len(X))

    # -- one event ------------------------------------------------------------------

    def _raw_one(self, x: Mapping[str, float]) -> float:
        top = 0.0
        stats_, min_count = self.stats, self.min_count
        for k, v in x.items():
            var = stats_.get(k)
            if var is None or var.n < min_count:
                continue
            f = float(v)
            s = math.sqrt(var.get())
            if s > 0 and math.isfinite(f):
                z = abs(f - var.mean.get()) / s
                if z > top:
                    top = z
        return top

    def score_one(self, x: Features) -> float:
        if not self.ready:
            return 0.0
        return self.calibrator.score(self._raw_one(x))

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        top = 0.0
        c, min_count, stats_ = self.clip_z, self.min_count, self.stats
        x = clean(x)
        for k, v in x.items():
            var = stats_.get(k)
            if var is None:
                var = stats_[k] = stats.Var()
            elif var.n >= min_count:
                sd = math.sqrt(var.get())
                if sd > 0:
                    m = var.mean.get()
                    z = abs(v - m) / sd
                    if z > top:
                        top = z
                    if z > c:
                        v = m + c * sd if v > m else m - c * sd
            var.update(v)
        if self.n_learned >= self.warmup:
            self.calibrator.add(top)
        else:
            self._keep_warm(x, 1)
        self.n_learned += 1
        if self.n_learned == self.warmup:
            self._end_warmup()

    # -- a matrix ---------------------------------------------------------------------

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None:
        self.score_learn_array(X, columns, want_scores=False)

    def score_learn_array(
        self, X: np.ndarray, columns: Sequence[str], want_scores: bool = True
    ) -> np.ndarray | None:
        n = len(X)
        X = np.where(np.isfinite(X), X, np.nan)
        mean, sd = self._moments(columns)
        raw = self._raw(X, mean, sd)
        X = np.clip(X, -LIMIT, LIMIT)
        scores = self.calibrator.score_array(raw) if want_scores and self.ready else None
        if n == 0:
            return scores
        in_warmup = self.n_learned < self.warmup
        if in_warmup:  # the rows past its end too: scored against the moments of the batch
            self._keep_warm((tuple(columns), X.copy()), n)
        known = ~np.isnan(sd)
        if known.any():
            lo = np.where(known, mean - self.clip_z * sd, -np.inf)
            hi = np.where(known, mean + self.clip_z * sd, np.inf)
            X = np.clip(X, lo, hi)
        have = ~np.isnan(X)
        k = have.sum(axis=0).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            bmean = np.where(have, X, 0.0).sum(axis=0) / k
            bs = np.where(have, (X - bmean) ** 2, 0.0).sum(axis=0)
        # river's Var.__iadd__ (Chan et al.), for every column at once
        block = self._load(columns)
        na, ma = block.n, block.mean
        total = na + k
        step = k > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            merged_s = block.s + bs + (ma - bmean) ** 2 * na * k / total
            merged_mean = (na * ma + k * bmean) / total
        block.s = np.where(step, merged_s, block.s)
        block.mean = np.where(step, merged_mean, ma)
        block.n = total
        self.n_learned += n
        if not in_warmup:
            self.calibrator.add_many(raw)
        elif self.n_learned >= self.warmup:
            self._end_warmup()
        return scores

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        if not self.ready:
            return np.zeros(len(X))
        X = np.where(np.isfinite(X), X, np.nan)
        mean, sd = self._moments(columns)
        return self.calibrator.score_array(self._raw(X, mean, sd))

    def contributions(self, x: Features, k: int = 3) -> list[tuple[str, float, float]]:
        """The ``k`` features of ``x`` farthest from their mean: ``(feature, value, z)``."""
        out = []
        moments = self._counted_moments()
        isfinite = math.isfinite
        for f, v in x.items():
            mv = moments.get(f)
            if mv is None:
                continue
            value = float(v)
            if isfinite(value):
                out.append((f, value, (value - mv[0]) / mv[1]))
        out.sort(key=lambda t: (-abs(t[2]), t[0]))
        return out[:k]

    def _counted_moments(self) -> dict[str, tuple[float, float]]:
        """``feature -> (mean, standard deviation)`` of the features that count, as the
        ``Var`` objects give them; kept until the detector learns again."""
        cached = self._contrib_cache
        if cached is not None and cached[0] == self.n_learned:
            return cached[1]
        moments = {}
        for f, var in self.stats.items():
            if var.n < self.min_count:
                continue
            s = math.sqrt(var.get())
            if s > 0:
                moments[f] = (var.mean.get(), s)
        self._contrib_cache = (self.n_learned, moments)
        return moments
