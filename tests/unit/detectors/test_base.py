"""detectors.base.to_matrix: the batch matrix the models read, whichever path builds it."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from detectors.base import to_matrix


def test_rows_of_numbers_stack_in_column_order_with_extra_keys_ignored() -> None:
    """Whole numbers, flags and floats become float64 in the order of ``columns``."""
    xs = [{"b": 2, "a": 1.5, "extra": 9.0}, {"a": -0.0, "b": True, "extra": 1}]
    m = to_matrix(xs, ["b", "a"])
    assert m.dtype == np.float64
    assert m.tolist() == [[2.0, 1.5], [1.0, -0.0]]
    assert math.copysign(1.0, m[1, 1]) == -1.0  # the sign of a zero survives


def test_matrix_is_writable() -> None:
    """Callers scale and clip the matrix in place: it must not be a read-only view."""
    m = to_matrix([{"a": 1.0, "b": 2.0}], ["a", "b"])
    m[0, 0] = 5.0
    assert m.tolist() == [[5.0, 2.0]]


def test_missing_column_is_nan_and_non_finite_values_are_kept() -> None:
    m = to_matrix([{"a": 1.0}, {"a": math.inf, "b": math.nan}], ["a", "b"])
    assert m[0, 0] == 1.0 and math.isnan(m[0, 1])
    assert m[1, 0] == math.inf and math.isnan(m[1, 1])


def test_value_that_is_not_a_plain_number_is_read_as_numpy_reads_it() -> None:
    """A numeric string or ``None`` in a row is converted as ``np.fromiter`` converts it
    (the matrix does not depend on which path built it)."""
    xs = [{"a": "1.5", "b": 1}, {"a": None, "b": 2.0}]
    m = to_matrix(xs, ["a", "b"])
    assert m[0].tolist() == [1.5, 1.0]
    assert math.isnan(m[1, 0]) and m[1, 1] == 2.0


def test_number_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(OverflowError):
        to_matrix([{"a": 10**400, "b": 1.0}], ["a", "b"])


def test_empty_batch_and_single_column_keep_their_shape() -> None:
    assert to_matrix([], ["a", "b"]).shape == (0, 2)
    assert to_matrix([{"a": 3}], ["a"]).tolist() == [[3.0]]
    assert to_matrix([{"a": 3}], []).shape == (1, 0)


def _cellwise(xs: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> np.ndarray:
    """The matrix as numpy reads each cell on its own (``nan`` for a missing key)."""
    cells = [np.fromiter([x.get(c, math.nan)], dtype=float)[0] for x in xs for c in columns]
    return np.array(cells, dtype=float).reshape(len(xs), len(columns))


def test_random_rows_read_bit_for_bit_as_numpy_reads_each_cell() -> None:
    """Floats, whole numbers a double rounds, flags, signed zeros, non-finite values and
    numpy scalars, in any column order, with or without a missing column: each cell of
    the matrix is, bit for bit, what numpy makes of the value alone."""
    rng = random.Random(3)
    keys = [f"k{i}" for i in range(40)]

    def value() -> Any:
        return rng.choice(
            [
                rng.gauss(0, 1e6),
                rng.randint(-(10**6), 10**6),
                rng.randint(2**53, 2**80),
                rng.random() < 0.5,
                -0.0,
                math.nan,
                math.inf,
                -math.inf,
                np.float64(rng.random()),
                np.int64(rng.randint(-5, 5)),
                np.float32(rng.random()),
            ]
        )

    for n in (1, 2, 17, 300):
        xs = [{k: value() for k in keys} for _ in range(n)]
        for columns in (rng.sample(keys, 25), [*rng.sample(keys, 5), "absent"]):
            m = to_matrix(xs, columns)
            assert m.shape == (n, len(columns))
            assert m.tobytes() == _cellwise(xs, columns).tobytes()
