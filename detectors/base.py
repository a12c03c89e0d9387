"""The one protocol every model speaks: river's verbs on a plain ``dict[str, float]``.

A detector learns from feature dicts (``learn_one``) and scores them (``score_one``) in
``[0, 1]``, higher meaning riskier. Until it is ``ready`` (warm-up or first fit done) its
score is ``0.0`` and must not count. Batch-friendly detectors also implement
:class:`ArrayDetector`, the same verbs on a numpy matrix whose columns are named; the
dict verbs ``score_many`` / ``learn_many`` then cost one vectorisation per batch.

>>> from detectors.base import Detector, to_matrix
>>> to_matrix([{"a": 1.0, "b": 2.0}, {"b": 3.0, "z": 9.0}], ("a", "b"))
array([[ 1.,  2.],
       [nan,  3.]])

A detector that speaks the protocol, written by hand:

>>> class Constant(BaseDetector):
...     name = "constant"
...     supervised = False
...     ready = True
...     def learn_one(self, x, y=None):
...         pass
...     def score_one(self, x):
...         return 0.25
>>> c = Constant()
>>> isinstance(c, Detector)
True
>>> c.score_many([{}, {"a": 1.0}])
[0.25, 0.25]
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from itertools import chain, starmap
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ArrayDetector",
    "BaseDetector",
    "Detector",
    "VectorizedDetector",
    "clean",
    "to_matrix",
]

Features = Mapping[str, float]


@runtime_checkable
class Detector(Protocol):
    """What the model bank needs from a model.

    ``learn_one(x, y)``: unsupervised detectors ignore ``y``; supervised ones ignore
    ``y=None``. ``score_one(x)`` is in ``[0, 1]`` for any input (missing keys, extra keys,
    non-finite values) and does not change the detector. ``score_many`` equals
    ``[score_one(x) for x in xs]`` (within float rounding). Detectors are picklable.
    """

    name: str
    supervised: bool

    @property
    def ready(self) -> bool: ...

    def learn_one(self, x: Features, y: bool | None = None) -> None: ...

    def score_one(self, x: Features) -> float: ...

    def score_many(self, xs: Sequence[Features]) -> list[float]: ...

    def learn_many(
        self, xs: Sequence[Features], ys: Sequence[bool | None] | None = None
    ) -> None: ...


@runtime_checkable
class ArrayDetector(Detector, Protocol):
    """A detector that also scores and learns a matrix of rows.

    ``X`` has one row per event, one column per name in ``columns``; ``nan`` marks a
    missing feature. ``score_array(X, columns)[i]`` equals ``score_one`` of row ``i`` as a
    dict (within float rounding).
    """

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray: ...

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None: ...

    def score_learn_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray | None:
        """Scores of the rows if ready (else ``None``), then learn them: the stream loop."""
        ...


class BaseDetector:
    """Default ``score_many`` / ``learn_many``: loops over the ``_one`` verbs."""

    name: str = "base"
    supervised: bool = False

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        raise NotImplementedError

    def score_one(self, x: Features) -> float:
        raise NotImplementedError

    def score_many(self, xs: Sequence[Features]) -> list[float]:
        return [self.score_one(x) for x in xs]

    def learn_many(self, xs: Sequence[Features], ys: Sequence[bool | None] | None = None) -> None:
        if ys is None:
            for x in xs:
                self.learn_one(x)
        else:
            for x, y in zip(xs, ys, strict=True):
                self.learn_one(x, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, ready={getattr(self, 'ready', None)})"


class VectorizedDetector(BaseDetector):
    """A detector whose real work is done on matrices.

    Subclasses implement ``score_array`` / ``learn_array`` and ``columns_for``; the dict
    verbs vectorise and delegate. A subclass may give ``score_one`` / ``learn_one`` a
    plain-Python path (a one-row numpy call costs far more than a dict loop), agreeing
    with the matrix path within float rounding.
    """

    def columns_for(self, xs: Sequence[Features]) -> tuple[str, ...]:
        """The columns to vectorise ``xs`` on."""
        raise NotImplementedError

    def score_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def learn_array(self, X: np.ndarray, columns: Sequence[str]) -> None:
        raise NotImplementedError

    def score_learn_array(self, X: np.ndarray, columns: Sequence[str]) -> np.ndarray | None:
        """``score_array`` if ready (else ``None``), then ``learn_array``, in one pass.

        Subclasses share work between the two; the result is the same.
        """
        scores = self.score_array(X, columns) if self.ready else None
        self.learn_array(X, columns)
        return scores

    @property
    def ready(self) -> bool:
        raise NotImplementedError

    def score_one(self, x: Features) -> float:
        return self.score_many([x])[0]

    def score_many(self, xs: Sequence[Features]) -> list[float]:
        if not xs:
            return []
        columns = self.columns_for(xs)
        scores: list[float] = self.score_array(to_matrix(xs, columns), columns).tolist()
        return scores

    def learn_one(self, x: Features, y: bool | None = None) -> None:
        self.learn_many([x])

    def learn_many(self, xs: Sequence[Features], ys: Sequence[bool | None] | None = None) -> None:
        if not xs:
            return
        columns = self.columns_for(xs)
        self.learn_array(to_matrix(xs, columns), columns)


LIMIT = 1e12


def clean(x: Features, limit: float = LIMIT) -> dict[str, float]:
    """``x`` as floats, without its non-finite values and clipped to ``[-limit, limit]``.

    Running moments of clipped values stay finite (their squares cannot overflow).

    >>> clean({"a": 1, "b": float("nan"), "c": float("inf"), "d": -1e300})
    {'a': 1.0, 'd': -1000000000000.0}
    """
    out = {}
    for k, v in x.items():
        f = float(v)
        if math.isfinite(f):
            out[k] = -limit if f < -limit else limit if f > limit else f
    return out


def to_matrix(xs: Sequence[Features], columns: Sequence[str]) -> np.ndarray:
    """Stack dicts into a float matrix with the given column order; missing keys -> ``nan``.

    Extra keys are ignored. Batches whose rows hold every column take a C-level path:
    each row is packed as doubles by :mod:`struct`, which converts a number for about
    half of what ``np.fromiter`` spends on one (the models' vectors are read once per
    event, a hundred numbers each). Rows ``struct`` cannot pack (a value that is not a
    number) go through ``np.fromiter``, which decides what becomes of them, as before.
    """
    n, d = len(xs), len(columns)
    if d == 0:
        return np.empty((n, 0))
    if d == 1:
        (only,) = columns
        return np.array([[x.get(only, math.nan)] for x in xs], dtype=float).reshape(n, 1)
    get = itemgetter(*columns)
    nan = math.nan
    try:
        packed = bytearray().join(starmap(struct.Struct(f"{d}d").pack, map(get, xs)))
        return np.frombuffer(packed, dtype=float).reshape(n, d)
    except (KeyError, struct.error, TypeError, OverflowError):
        pass  # a missing column, or a value that is not a plain number

    def row(x: Features) -> Any:
        try:
            return get(x)
        except KeyError:
            return [x.get(c, nan) for c in columns]

    try:
        flat = np.fromiter(chain.from_iterable(map(get, xs)), dtype=float, count=n * d)
    except KeyError:
        flat = np.fromiter(chain.from_iterable(map(row, xs)), dtype=float, count=n * d)
    return flat.reshape(n, d)
