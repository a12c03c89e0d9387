"""Batch pyod models behind the online protocol.

A :class:`BatchDetector` keeps a uniform reservoir sample of the vectors it learns and
refits on it: first after ``warmup`` learned vectors, then every ``refit_every``. A refit
builds the new model completely and then swaps it in with one assignment; a scorer reads
the model once per call, so it always scores with one complete model. Scoring works on
micro-batches (one numpy matrix per call): a one-row pyod call costs about as much as a
batch of hundreds. Raw scores become ``[0, 1]`` by their rarity among the training
scores of the model (see :mod:`detectors.calibration`).

Missing features are filled with the training median of their column.

>>> import random
>>> rng = random.Random(3)
>>> det = ECODDetector(reservoir_size=200, refit_every=300, warmup=100, seed=3)
>>> det.ready
False
>>> det.learn_many([{"a": rng.gauss(0, 1), "b": rng.gauss(5, 2)} for _ in range(150)])
>>> det.ready, det.n_fits
(True, 1)
>>> normal, odd = det.score_many([{"a": 0.1, "b": 5.0}, {"a": 9.0, "b": -20.0}])
>>> normal < 0.3 < odd
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from detectors.base import Features, VectorizedDetector
from detectors.calibration import tail_scores

__all__ = [
    "BatchDetector",
    "ECODDetector",
    "FittedModel",
    "IForestDetector",
    "ecod_training_scores",
]

_BIG = 1e30


class FittedModel:
    """One complete fitted model: everything a scorer reads, built before it is published."""

    __slots__ = ("fill", "n_rows", "ref")

    def __init__(self, fill: np.ndarray, ref: np.ndarray, n_rows: int) -> None:
        self.fill = fill
        self.ref = ref
        self.n_rows = n_rows

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw anomaly scores (higher = more anomalous) of filled, finite rows."""
        raise NotImplementedError


class BatchDetector(VectorizedDetector):
    """Reservoir + periodic refit + micro-batch scoring; subclasses supply ``fit_model``.

    Parameters
    ----------
    features
        Column order of the model. ``None``: the sorted keys seen at the first learn.
    reservoir_size
        Vectors kept (reservoir sampling with a seeded generator).
    refit_every
        Learned vectors between two refits after the first fit.
    warmup
        Learned vectors before the first fit (at least ``min_fit_rows``).
    seed
        Seeds the reservoir sampling and the models.
    """

    supervised = False
    min_fit_rows = 32

    def __init__(
        self,
        features: Sequence[str] | None = None,
        *,
        reservoir_size: int = 4096,
        refit_every: int = 5000,
        warmup: int = 500,
        seed: int = 7,
    ) -> None:
        if reservoir_size < 2 or refit_every < 1:
            raise ValueError("reservoir_size must be >= 2 and refit_every >= 1")
        self.features: tuple[str, ...] | None = tuple(features) if features is not None else None
        self.reservoir_size = reservoir_size
        self.refit_every = refit_every
        self.warmup = warmup
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.reservoir: np.ndarray | None = None
        self.n_learned = 0
        self.n_fits = 0
        self.model: FittedModel | None = None
        self._cols: tuple[tuple[str, ...], np.ndarray] | None = None

    @property
    def ready(self) -> bool:
        return self.model is not None

    @property
    def first_fit_at(self) -> int:
        return max(self.warmup, self.min_fit_rows)

    @property
    def reservoir_rows(self) -> int:
        return min(self.n_learned, self.reservoir_size)

    def columns_for(self, xs: Sequence[Features]) -> tuple[str, ...]:
        if self.features is not None:
            return self.features
        return tuple(sorted({k for x in xs for k in x}))

    def _select(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        """``X`` rearranged into the model's column order (``nan`` for absent columns)."""
        assert self.features is not None
        cols = tuple(columns)
        if cols == self.features:
            return X
        if self._cols is None or self._cols[0] != cols:
            pos = {c: i for i, c in enumerate(cols)}
            self._cols = (cols, np.array([pos.get(f, -1) for f in self.features], dtype=np.intp))
        idx = self._cols[1]
        out = X[:, np.maximum(idx, 0)] if len(cols) else np.full((len(X), len(idx)), math.nan)
        out[:, idx < 0] = math.nan
        return out

    def _next_fit(self) -> int:
        first = self.first_fit_at
        if self.n_learned < first:
            return first
        return first + ((self.n_learned - first) // self.refit_every + 1) * self.refit_every

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None:
        if len(X) == 0:
            return
        if self.features is None:
            self.features = tuple(sorted(columns))
        rows = np.clip(self._select(X, columns), -_BIG, _BIG)
        if self.reservoir is None:
            self.reservoir = np.full((self.reservoir_size, len(self.features)), math.nan)
        start = 0
        while start < len(rows):
            due = self._next_fit()
            stop = min(len(rows), start + due - self.n_learned)
            self._sample(rows[start:stop])
            start = stop
            if self.n_learned == due:
                self.refit()

    def _sample(self, rows: np.ndarray) -> None:
        """Reservoir sampling (Algorithm R) of ``rows``, in order."""
        assert self.reservoir is not None
        k, t0 = self.reservoir_size, self.n_learned
        ts = t0 + np.arange(len(rows))
        direct = ts < k
        if direct.any():
            self.reservoir[ts[direct]] = rows[direct]
        later = np.flatnonzero(~direct)
        if len(later):
            js = self.rng.integers(0, ts[later] + 1)
            for i, j in zip(later.tolist(), js.tolist(), strict=True):
                if j < k:
                    self.reservoir[j] = rows[i]
        self.n_learned += len(rows)

    def refit(self) -> None:
        """Fit a new model on the reservoir, then publish it in one assignment."""
        assert self.reservoir is not None
        R = self.reservoir[: self.reservoir_rows].copy()
        gaps = np.isnan(R)
        if gaps.any():
            with np.errstate(all="ignore"):
                fill = np.nanmedian(R, axis=0)
            fill = np.where(np.isnan(fill), 0.0, fill)
            R = np.where(gaps, fill, R)
        else:
            fill = np.median(R, axis=0)
        model = self.fit_model(R, fill, seed=self.seed + self.n_fits)
        self.model = model
        self.n_fits += 1

    def fit_model(self, R: np.ndarray, fill: np.ndarray, seed: int) -> FittedModel:
        """A complete model fitted on the filled reservoir ``R``."""
        raise NotImplementedError

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        model = self.model
        if model is None or self.features is None:
            return np.zeros(len(X))
        S = self._select(X, columns)
        S = np.where(np.isnan(S), model.fill, S)
        raw = model.raw(np.clip(S, -_BIG, _BIG))
        return tail_scores(raw, model.ref)


class _ECODModel(FittedModel):
    """ECOD frozen at fit time: a new row is scored against the training ECDFs.

    pyod's ``ECOD.decision_function`` pools the scored batch with the training set, so a
    row's score would depend on its batch-mates; here each row is scored as if it alone
    were added to the training set (the one-row pyod call), with the training skewness.

    Each column keeps its sorted distinct training values, how many training values lie
    below each and how many equal it, so one search per cell gives both tail counts.
    Columns are grouped by table size (padded to a power of two with ``+inf``). A cell's
    score depends only on where the search ends and whether the value is a training
    value, so the scores of both cases are tabled once per fit, next to the counts, and
    merged per column into one table that a single search reads.
    """

    __slots__ = ("_cells", "_scores", "groups", "skew_sign")

    def __init__(
        self, columns: _SortedColumns, fill: np.ndarray, ref: np.ndarray, skew_sign: np.ndarray
    ) -> None:
        m = columns.values.shape[1]
        super().__init__(fill, ref, m)
        by_size: dict[int, list[int]] = {}
        starts = []
        for j, first in enumerate(columns.new_value):
            p = np.flatnonzero(first)  # first index of each distinct value
            starts.append(p)
            by_size.setdefault(1 << len(p).bit_length(), []).append(j)
        S = columns.values
        self.groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for size, cols in sorted(by_size.items()):
            values = np.full((len(cols), size), np.inf)
            below = np.full((len(cols), size), m, dtype=np.intp)  # training values < value
            equal = np.zeros((len(cols), size), dtype=np.intp)  # training values == value
            for g, j in enumerate(cols):
                p = starts[j]
                values[g, : len(p)] = S[j, p]
                below[g, : len(p)] = p
                equal[g, : len(p)] = np.diff(p, append=m)
            self.groups.append((np.asarray(cols, dtype=np.intp), values, below, equal))
        self.skew_sign = skew_sign
        self._scores = self._score_tables()
        self._cells = self._cell_tables()

    def _score_tables(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group, the score of a cell whose search ends at each table entry: when the
        value is that entry's training value, and when it lies below it."""
        m = self.n_rows
        tables = []
        for cols, _, below, equal in self.groups:
            s = self.skew_sign[cols][:, None]
            u_r = np.log((m + 1.0) / (m - below + 1.0))
            pair = []
            for le in (below + equal, below):
                u_l = np.log((m + 1.0) / (le + 1.0))
                u_skew = u_l * -np.sign(s - 1) + u_r * np.sign(s + 1)
                pair.append(np.maximum(np.maximum(u_l, u_r), u_skew))
            tables.append((pair[0], pair[1]))
        return tables

    def _cell_tables(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Per column ``j``, in column order: ``(j, keys, scores)`` such that a cell
        ``x`` scores ``scores[searchsorted(keys, x, "right")]``, what the table search
        gives. ``keys`` holds each distinct training value ``v`` and the next double
        above it, so the search lands on an odd place exactly when ``x == v`` (the
        value's score when it is a training value) and on an even one when ``x`` lies
        below the next training value (its score below that entry)."""
        out = []
        for (cols, values, _, _), (hit, miss) in zip(self.groups, self._scores, strict=True):
            for g, j in enumerate(cols.tolist()):
                d = int(np.count_nonzero(values[g] < np.inf))  # the distinct values
                v = values[g][:d]
                keys = np.empty(2 * d)
                keys[0::2] = v
                keys[1::2] = np.nextafter(v, np.inf)
                scores = np.empty(2 * d + 1)
                scores[0 : 2 * d : 2] = miss[g][:d]
                scores[1 : 2 * d : 2] = hit[g][:d]
                scores[2 * d] = miss[g][d]  # above every training value
                out.append((j, keys, scores))
        out.sort(key=lambda t: t[0])
        return out

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        names = ("fill", "groups", "n_rows", "ref", "skew_sign")
        return None, {k: getattr(self, k) for k in names}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for k, v in state[1].items():
            setattr(self, k, v)
        self._scores = self._score_tables()
        self._cells = self._cell_tables()

    def raw(self, X: np.ndarray) -> np.ndarray:
        XT = np.ascontiguousarray(X.T)
        cells = np.empty(XT.shape)  # column x row: the row sums run over the columns in order
        # one C search and one gather per column (see _cell_tables); the same cells as
        # the search of the padded tables, for less than half the instructions
        for j, keys, scores in self._cells:
            cells[j] = scores.take(keys.searchsorted(XT[j], "right"))
        return np.asarray(cells.T.sum(axis=1), dtype=float)


class ECODDetector(BatchDetector):
    """pyod ``ECOD`` (empirical-CDF outlier detection), refitted on the reservoir.

    The training scores of a fit are pyod's, computed by :func:`ecod_training_scores`.
    """

    name = "ecod"

    def fit_model(self, R: np.ndarray, fill: np.ndarray, seed: int) -> FittedModel:
        from scipy.stats import skew

        # Constant columns, and those too flat for a skewness, make pyod's scores nan; they
        # are left out of the fit (a new value in such a column still counts when scoring).
        sk = np.full(R.shape[1], np.nan)
        varying = np.ptp(R, axis=0) > 0
        if len(R) > 2 and varying.any():
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                sk[varying] = skew(R[:, varying], axis=0)
        usable = np.isfinite(sk)
        skew_sign = np.sign(np.where(usable, sk, 0.0))
        columns = _SortedColumns(R)
        if usable.any():
            # the skewness of the same columns is known already when none was left out
            known = sk[usable] if usable[varying].all() else None
            if known is None:
                known = skew(R[:, usable], axis=0)
            scores = _training_scores(columns.order[usable], columns.new_value[usable], known)
            ref = np.sort(scores)
        else:
            ref = np.zeros(len(R))
        return _ECODModel(columns, fill, ref, skew_sign)


class _SortedColumns:
    """The columns of a matrix, each sorted: one row per column (``values``), the row
    order that sorts it (``order``) and where a new distinct value starts (``new_value``).
    """

    __slots__ = ("new_value", "order", "values")

    def __init__(self, X: np.ndarray) -> None:
        XT = np.ascontiguousarray(X.T)
        # ties may come in any order: every statistic below is the same for equal values
        self.order = np.argsort(XT, axis=1, kind="stable")
        self.values = np.take_along_axis(XT, self.order, axis=1)
        self.new_value = np.ones(XT.shape, dtype=bool)
        self.new_value[:, 1:] = self.values[:, 1:] != self.values[:, :-1]


def _training_scores(order: np.ndarray, new_value: np.ndarray, skewness: np.ndarray) -> np.ndarray:
    """:func:`ecod_training_scores` of a matrix from its :class:`_SortedColumns` ``order``
    and ``new_value``.

    pyod's ECDFs are ``linspace(1/n, 1, n)`` read at ``#{values <= x} - 1`` (left tail) and
    ``#{values >= x} - 1`` (right tail) of each cell's column. Equal values of a column are
    a run of sorted positions ``[first, last]`` (``#{< x} = first``, ``#{<= x} = last + 1``),
    so the tail scores are computed once per run, then spread over the run's cells and put
    back in the rows' order for pyod's row sums.
    """
    d, n = new_value.shape
    flat = new_value.ravel()
    starts = np.flatnonzero(flat)  # flat position of each run's first cell
    col = starts // n  # a run never spans two columns: each column starts a run
    first = starts - col * n
    last = np.append(starts[1:], d * n) - 1 - col * n
    neg_log = -1 * np.log(np.linspace(1.0 / n, 1.0, n))
    U_l = neg_log[last]
    U_r = neg_log[n - 1 - first]
    sign = np.sign(skewness)[col]
    U_skew = U_l * -1 * np.sign(sign - 1) + U_r * np.sign(sign + 1)
    outlying = np.maximum(U_l, U_r)
    outlying = np.maximum(U_skew, outlying)
    spread = np.repeat(outlying, np.diff(starts, append=d * n)).reshape(d, n)
    cells = np.empty((n, d))  # rows x columns, C order: pyod's row sums run over it
    np.put_along_axis(cells.T, order, spread, axis=1)
    return np.asarray(cells.sum(axis=1), dtype=float)


def ecod_training_scores(X: np.ndarray, skewness: np.ndarray | None = None) -> np.ndarray:
    """pyod's ``ECOD().fit(X).decision_scores_``, bit for bit, without pyod.

    ``X`` holds finite values. ``skewness``: ``scipy.stats.skew(X, axis=0)`` if known.
    """
    X = np.asarray(X, dtype=float)  # the same memory layout as pyod's: sums depend on it
    if skewness is None:
        from scipy.stats import skew

        skewness = skew(X, axis=0)
    columns = _SortedColumns(X)
    return _training_scores(columns.order, columns.new_value, skewness)


class _IForestModel(FittedModel):
    __slots__ = ("forest",)

    def __init__(self, forest: Any, fill: np.ndarray, ref: np.ndarray, n_rows: int) -> None:
        super().__init__(fill, ref, n_rows)
        self.forest = forest

    def raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest.decision_function(X), dtype=float)


class IForestDetector(BatchDetector):
    """pyod ``IForest`` (isolation forest), refitted on the reservoir."""

    name = "iforest"

    def __init__(
        self,
        features: Sequence[str] | None = None,
        *,
        n_estimators: int = 50,
        max_samples: int = 256,
        reservoir_size: int = 4096,
        refit_every: int = 5000,
        warmup: int = 500,
        seed: int = 7,
    ) -> None:
        super().__init__(
            features,
            reservoir_size=reservoir_size,
            refit_every=refit_every,
            warmup=warmup,
            seed=seed,
        )
        self.n_estimators = n_estimators
        self.max_samples = max_samples

    def fit_model(self, R: np.ndarray, fill: np.ndarray, seed: int) -> FittedModel:
        from pyod.models.iforest import IForest

        forest = IForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(R)),
            random_state=seed,
            n_jobs=1,
        ).fit(R)
        return _IForestModel(forest, fill, np.sort(forest.decision_scores_), len(R))
