"""Supervised online classifier learned from delayed labels.

``LogRegDetector`` is river's ``StandardScaler() | LogisticRegression()``. It learns only
from labelled vectors (``y`` is not ``None``); its score is the fraud probability
``predict_proba_one(x)[True]``. It is ready once it has seen ``min_positives`` frauds and
``min_negatives`` non-frauds.

Most vectors become negatives by maturing unlabelled, so negatives can be subsampled
(``negative_rate``, seeded); the logit is then shifted by ``log(negative_rate)``, which
undoes the change of class prior that the subsampling causes.

>>> import random
>>> rng = random.Random(0)
>>> clf = LogRegDetector(min_positives=5, min_negatives=5)
>>> for _ in range(300):
...     y = rng.random() < 0.3
...     clf.learn_one({"velocity": rng.gauss(3.0 if y else 0.0, 1.0)}, y)
>>> clf.ready
True
>>> clf.score_one({"velocity": 3.5}) > 0.5 > clf.score_one({"velocity": -0.5})
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from math import isfinite
from typing import Any

import numpy as np
from river import compose, linear_model, optim, preprocessing
from river.utils.math import sigmoid

from detectors.base import LIMIT, Features, VectorizedDetector, clean

__all__ = ["LogRegDetector"]


class LogRegDetector(VectorizedDetector):
    """Online logistic regression on standardised features.

    Parameters
    ----------
    min_positives, min_negatives
        Labelled vectors of each class needed before the score counts.
    negative_rate
        Fraction of negatives learned (``1.0``: all).
    lr, l2
        SGD learning rate and L2 penalty of the logistic regression.
    clip_z
        Learned values are winsorised at ``clip_z`` standard deviations of the scaler
        (once a feature has 30 values), so that one absurd value cannot blow up the
        running variance that every later input is divided by. Scored values are
        winsorised the same way: the model never learned a value beyond, and a linear
        model would extrapolate (one legal 1e9 amount would score 1.0 by itself).
    seed
        Seeds the negative subsampling.
    """

    name = "logreg"
    supervised = True

    def __init__(
        self,
        *,
        min_positives: int = 20,
        min_negatives: int = 100,
        negative_rate: float = 1.0,
        lr: float = 0.01,
        l2: float = 0.0,
        clip_z: float = 6.0,
        seed: int = 7,
    ) -> None:
        if not 0.0 < negative_rate <= 1.0:
            raise ValueError("negative_rate must be in (0, 1]")
        self.min_positives = min_positives
        self.min_negatives = min_negatives
        self.negative_rate = negative_rate
        self.clip_z = clip_z
        self.seed = seed
        self.scaler = preprocessing.StandardScaler()
        self.clf = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=l2)
        self.model = compose.Pipeline(self.scaler, self.clf)
        self.rng = random.Random(seed)
        self.n_positives = 0
        self.n_negatives = 0
        self.n_skipped = 0
        self._shift = math.log(negative_rate)
        self._cache: tuple[tuple[tuple[str, ...], int], tuple[np.ndarray, ...]] | None = None

    @property
    def ready(self) -> bool:
        return self.n_positives >= self.min_positives and self.n_negatives >= self.min_negatives

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = None  # a checkpoint of the release before cached fewer arrays

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        if y is None:
            return
        if not y and self.negative_rate < 1.0 and self.rng.random() >= self.negative_rate:
            self.n_skipped += 1
            return
        self.model.learn_one(self._winsorised(clean(x)), bool(y))
        if y:
            self.n_positives += 1
        else:
            self.n_negatives += 1

    def learn_rows(
        self, X: np.ndarray, columns: Sequence[str], rows: Sequence[int], y: bool | None
    ) -> None:
        """``learn_one`` of the rows ``rows`` of ``X`` in order, each as the dict of its
        non-``nan`` cells; only the rows kept by the negative sampling are read (the
        sampling draws once per negative, in order, as ``learn_one`` does)."""
        if y is None:
            return
        keep: Sequence[int] = rows
        if not y and self.negative_rate < 1.0:
            draw, rate = self.rng.random, self.negative_rate
            keep = [k for k in rows if draw() < rate]  # one draw per negative, in order
            self.n_skipped += len(rows) - len(keep)
        if not keep:
            return
        learn, label, clip = self.model.learn_one, bool(y), LIMIT
        for k in keep:
            # clean() of the row's cells as a dict (nan cells are absent keys)
            x = {
                c: -clip if v < -clip else clip if v > clip else v
                for c, v in zip(columns, X[k].tolist(), strict=True)
                if isfinite(v)
            }
            learn(self._winsorised(x), label)
        if label:
            self.n_positives += len(keep)
        else:
            self.n_negatives += len(keep)

    def _winsorised(self, x: dict[str, float]) -> dict[str, float]:
        counts, means, vars_ = self.scaler.counts, self.scaler.means, self.scaler.vars
        c = self.clip_z
        for k, v in x.items():
            if counts.get(k, 0) >= 30:
                sd = math.sqrt(vars_[k])
                lo, hi = means[k] - c * sd, means[k] + c * sd
                if v < lo:
                    x[k] = lo
                elif v > hi:
                    x[k] = hi
        return x

    def learn_many(self, xs: Sequence[Features], ys: Sequence[bool | None] | None = None) -> None:
        if ys is None:
            return
        for x, y in zip(xs, ys, strict=True):
            self.learn_one(x, y)

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None:
        """Unlabelled rows teach a supervised model nothing."""

    def columns_for(self, xs: Sequence[Features]) -> tuple[str, ...]:
        return tuple(sorted({k for x in xs for k in x}))

    def score_one(self, x: Features) -> float:
        if not self.ready:
            return 0.0
        known = self.scaler.counts
        z = self.scaler.transform_one(
            self._winsorised({k: v for k, v in clean(x).items() if k in known})
        )
        p = float(sigmoid(self.clf._raw_dot_one(z) + self._shift))
        return p if p == p else 0.0

    def _coefficients(self, columns: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """Scaler means, standard deviations, winsorising bounds (as :meth:`_winsorised`)
        and weights of ``columns``, cached until the model learns again."""
        learned = self.n_positives + self.n_negatives
        if self._cache is not None and self._cache[0] == (columns, learned):
            return self._cache[1]
        d = len(columns)
        mean, std, w = np.zeros(d), np.zeros(d), np.zeros(d)
        lo, hi = np.full(d, -math.inf), np.full(d, math.inf)
        weights, counts, c = self.clf._weights, self.scaler.counts, self.clip_z
        for j, col in enumerate(columns):
            if col in counts:
                mean[j] = m = self.scaler.means[col]
                std[j] = self.scaler.vars[col] ** 0.5
                w[j] = weights.get(col, 0.0)
                if counts[col] >= 30:
                    sd = math.sqrt(self.scaler.vars[col])
                    lo[j], hi[j] = m - c * sd, m + c * sd
        self._cache = ((columns, learned), (mean, std, lo, hi, w))
        return mean, std, lo, hi, w

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        if not self.ready:
            return np.zeros(len(X))
        mean, std, lo, hi, w = self._coefficients(tuple(columns))
        with np.errstate(invalid="ignore", divide="ignore"):
            Z = (np.clip(np.clip(X, -LIMIT, LIMIT), lo, hi) - mean) / std
        Z[~np.isfinite(X) | (std == 0)] = 0.0
        raw = Z @ w + self.clf.intercept + self._shift
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-raw))
        p = np.where(raw < -30, 0.0, np.where(raw > 30, 1.0, p))
        return np.asarray(np.where(np.isnan(p), 0.0, p), dtype=float)
