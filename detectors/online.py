"""Online unsupervised detectors: learn every event, score in microseconds.

``HSTDetector`` runs river's Half-Space Trees behind a min-max scaler (on all features or a
chosen subset); ``ZScoreDetector`` keeps a river ``stats.Var`` per feature and scores the
largest absolute z-score. Both map their raw score to ``[0, 1]`` with a
:class:`~detectors.calibration.TailCalibrator` fed by the events they learn, so their
scores read alike: ``0.1`` for a typical event, ``1.0`` for one rarer than 1 in 1000.

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


class HSTDetector(BaseDetector):
    """River ``HalfSpaceTrees`` on min-max scaled features.

    ``score_one`` / ``learn_one`` run river's own code on a dict; ``score_array`` /
    ``learn_array`` run the same trees on a whole matrix with numpy, with the same
    results (a micro-batch of 500 costs a few microseconds per event).

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
        Learned events before the score counts. The scaler learns the ranges during
        ``max(warmup, window_size)`` events and is then frozen, so that one extreme value
        cannot squash every later input into a corner of the unit cube; values beyond the
        learned range fall into the outer half-spaces, where anomalies belong.
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
        calib_every: int = 4,
        seed: int = 7,
    ) -> None:
        self.features: tuple[str, ...] | None = tuple(features) if features is not None else None
        self.max_features = max_features
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.warmup = warmup
        self.calib_every = max(1, calib_every)
        self.seed = seed
        self.scaler = preprocessing.MinMaxScaler()
        self.hst = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self.calibrator = TailCalibrator()
        self.n_learned = 0
        self._forest: _FlatForest | None = None
        self._cols: tuple[tuple[str, ...], np.ndarray] | None = None
        self._frozen: list[tuple[str, float, float]] | None = None
        self._frozen_arrays: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def _scale_until(self) -> int:
        return max(self.warmup, self.window_size)

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
        mn = self.scaler.min.get(f)
        if mn is None:
            return None
        return mn.get(), self.scaler.max[f].get()

    def _spans(self) -> list[tuple[str, float, float]]:
        """``(feature, low, span)`` for the features with a range; fixed once frozen."""
        if self._frozen is not None:
            return self._frozen
        out = []
        for f in self.features or ():
            rng = self._range(f)
            if rng is not None:
                out.append((f, rng[0], rng[1] - rng[0]))
        if self.n_learned >= self._scale_until:
            self._frozen = out
        return out

    # -- one event: river's code -------------------------------------------------------

    def _scaled(self, x: Features) -> dict[str, float]:
        out = {}
        get = x.get
        for f, lo, span in self._spans():
            v = get(f)
            if v is None or v != v:
                continue
            out[f] = (float(v) - lo) / span if span else 0.0
        return out

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
        if self.n_learned < self._scale_until:
            finite = {}
            for f in features:
                v = x.get(f)
                if v is not None and math.isfinite(v):
                    finite[f] = float(v)
            self.scaler.learn_one(finite)
        d = self._scaled(x)
        hst = self._river()
        if not hst.trees:
            # The trees are built over the keys of the first learned vector.
            d = {f: d.get(f, 0.5) for f in features}
        if not hst._first_window and self.n_learned % self.calib_every == 0:
            self.calibrator.add(hst.score_one(d))
        hst.learn_one(d)
        self.n_learned += 1

    def __getstate__(self) -> dict[str, Any]:
        self._river()
        return self.__dict__.copy()

    # -- a matrix: numpy on the same trees ----------------------------------------------

    def _matrix(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """Scaled features in the model's order; ``nan`` for missing or unknown range."""
        assert self.features is not None
        cols = tuple(columns)
        if self._cols is None or self._cols[0] != cols:
            pos = {c: i for i, c in enumerate(cols)}
            self._cols = (cols, np.array([pos.get(f, -1) for f in self.features], dtype=np.intp))
        idx = self._cols[1]
        S = X[:, np.maximum(idx, 0)] if len(cols) else np.full((len(X), len(idx)), math.nan)
        S[:, idx < 0] = math.nan
        lo, span = self._span_arrays()
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            out = np.where(span != 0, (S - lo) / np.where(span != 0, span, 1.0), 0.0)
        out[np.isnan(S) | np.isnan(span) | np.isnan(out)] = np.nan
        return out

    def _span_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Low end and width of each feature's range, in the model's order (``nan``: none)."""
        if self._frozen_arrays is not None:
            return self._frozen_arrays
        assert self.features is not None
        lo = np.full(len(self.features), math.nan)
        span = np.full(len(self.features), math.nan)
        where = {f: j for j, f in enumerate(self.features)}
        for f, low, width in self._spans():
            lo[where[f]], span[where[f]] = low, width
        if self._frozen is not None:
            self._frozen_arrays = (lo, span)
        return lo, span

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
        i = 0
        # Warm-up rows (the scaler learns) and the first row (the trees are built) go
        # through river one by one, or through _learn_warmup when it gives the same.
        while i < len(X) and (self.n_learned < self._scale_until or not self.hst.trees):
            if self.hst.trees:
                m = min(len(X) - i, self._scale_until - self.n_learned)
                if self._learn_warmup(X[i : i + m], columns):
                    i += m
                    continue
            row = X[i].tolist()
            self.learn_one({c: v for c, v in zip(columns, row, strict=True) if v == v})
            i += 1
        if i == len(X):
            return scores
        forest = self._flat()
        S = self._matrix(X[i:], columns)
        paths = forest.paths(S)
        raws = None
        if scores is not None:
            raws = forest.score(S, self.hst, paths)
            scores[i:] = self.calibrator.score_array(raws)
        samples = None
        if not self.hst._first_window:
            picked = np.arange((-self.n_learned) % self.calib_every, len(S), self.calib_every)
            if raws is not None:
                samples = raws[picked]
            else:
                picked_paths = None if paths is None else paths[:, :, picked]
                samples = forest.score(S[picked], self.hst, picked_paths)
        assert self.features is not None
        forest.learn(S, self.hst, self.features, paths)
        self.n_learned += len(S)
        if samples is not None:
            self.calibrator.add_many(samples)
        return scores

    def _learn_warmup(self, X: np.ndarray, columns: Sequence[str]) -> bool:
        """``learn_one`` of every row of ``X`` (warm-up rows, trees built), vectorised.

        Only when every row has every feature, finite: the scaler's range of a feature
        after row ``r`` is then the running min / max up to ``r``, each row is scaled by
        it and has no gaps, so its path depends on the row alone; the calibration samples
        are scored on the reference masses, which change only at window pivots. Returns
        ``False`` (nothing learned) otherwise.
        """
        features = self.features
        assert features is not None
        pos = {c: j for j, c in enumerate(columns)}
        idx = [pos.get(f, -1) for f in features]
        if not len(X) or min(idx, default=0) < 0:
            return False
        F = X[:, idx]
        if not np.isfinite(F).all():
            return False
        mins, maxs = self.scaler.min, self.scaler.max
        lo0 = [mins[f].get() if f in mins else math.inf for f in features]
        hi0 = [maxs[f].get() if f in maxs else -math.inf for f in features]
        lo = np.minimum.accumulate(np.vstack([lo0, F]), axis=0)[1:]
        hi = np.maximum.accumulate(np.vstack([hi0, F]), axis=0)[1:]
        span = hi - lo
        with np.errstate(all="ignore"):
            S = np.where(span != 0, (F - lo) / np.where(span != 0, span, 1.0), 0.0)
        if not np.isfinite(S).all():
            return False
        for f, low, high in zip(features, lo[-1].tolist(), hi[-1].tolist(), strict=True):
            mins[f].min = low
            maxs[f].max = high
        hst, forest = self.hst, self._flat()
        paths = forest.paths(S)
        assert paths is not None
        start, n = 0, len(S)
        while start < n:
            stop = start + min(n - start, hst.window_size - hst.counter)
            if not hst._first_window:
                first = start + (-(self.n_learned + start)) % self.calib_every
                picked = np.arange(first, stop, self.calib_every)
                if len(picked):
                    raws = forest.score(S[picked], hst, paths[:, :, picked])
                    for raw in raws.tolist():
                        self.calibrator.add(raw)
            forest.learn(S[start:stop], hst, features, paths[:, :, start:stop])
            start = stop
        self.n_learned += n
        return True

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


class ZScoreDetector(VectorizedDetector):
    """Largest absolute z-score over the features, from a river ``stats.Var`` per feature.

    Learned values are winsorised at ``clip_z`` standard deviations, so that a burst of
    outliers does not inflate the variance it is measured against (and clipped to
    ``[-1e12, 1e12]``, so that the running moments stay finite). A feature counts once it
    has ``min_count`` values and a non-zero variance. The raw score (max |z|) is mapped to
    ``[0, 1]`` by its rarity among the last learned events (after warm-up).

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

    @property
    def ready(self) -> bool:
        return self.n_learned >= self.warmup and self.calibrator.n > 0

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
        for k, v in clean(x).items():
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
        self.n_learned += 1

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
        first_counted = max(0, self.warmup - self.n_learned)
        if first_counted < n:
            self.calibrator.add_many(raw[first_counted:])
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
