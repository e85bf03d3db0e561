"""Exact sums per group: integer sums that never overflow and float sums exactly rounded.

SUM and AVG over ints are exact in SQL: a per-group int64 array while no sum can overflow,
Python ints (an object array) from then on. A partial result carries its int sums as sint64, so
storage sends a wider one as a float (`wire_int_sums`), as SQL engines without 128-bit integers
do; the query service then answers a sum beyond int64 as the nearest float as well.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.arrays import Index, grow

INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)
EXACT_FLOAT = 2**53
"""Whole numbers up to this magnitude convert to float exactly."""


def bound(values: npt.NDArray[Any]) -> int:
    """The largest magnitude among `values` (0 for none)."""
    return max(-int(values.min()), int(values.max())) if len(values) else 0


def group_int_sums(values: npt.NDArray[np.int64], groups: Index, n: int) -> npt.NDArray[Any]:
    """Exact per-group sums of int64 values (`groups[i]`: the group of `values[i]`, in [0, n)):
    int64 when no sum can overflow, else Python ints (an object array)."""
    total = bound(values) * len(values)
    if total < EXACT_FLOAT:
        # Every partial sum is an integer that float64 represents exactly.
        return np.bincount(groups, weights=values, minlength=n).astype(np.int64)
    if total <= INT64_MAX:
        sums = np.zeros(n, dtype=np.int64)
        np.add.at(sums, groups, values)
        return sums
    big = np.zeros(n, dtype=object)
    np.add.at(big, groups, values.astype(object))
    return big


class ExactSums:
    """Exact per-group sums of ints: an int64 array while no sum can overflow, Python ints (an
    object array) from then on."""

    def __init__(self) -> None:
        self.values: npt.NDArray[Any] = np.zeros(0, dtype=np.int64)
        self._bound = 0  # no entry's magnitude exceeds it

    def resize(self, size: int) -> None:
        self.values = grow(self.values, size, 0)

    def add(self, target: Index, values: npt.NDArray[Any], size: int) -> None:
        """Adds `values` (int64, or Python ints in an object array) to groups `target`
        (distinct), `size` groups in all."""
        self.resize(size)
        if self.values.dtype != object:
            added = bound(values)
            if values.dtype == object or self._bound + added > INT64_MAX:
                self._bound = bound(self.values)
                if values.dtype == object or self._bound + added > INT64_MAX:
                    self.values = self.values.astype(object)
            self._bound += added
        if self.values.dtype == object:
            self.values[target] += values.astype(object)
        else:
            self.values[target] += values


def wire_int_sums(
    int_sums: npt.NDArray[Any], sums: npt.NDArray[np.float64], seen: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Int sums as sint64 can carry them: a sum beyond int64 moves into the group's float sum
    (marking it as having seen a float). Returns int_sums, sums and seen (copies if changed)."""
    if int_sums.dtype != object:
        return int_sums, sums, seen
    over = np.array(
        [not INT64_MIN <= x <= INT64_MAX for x in int_sums.tolist()], dtype=bool
    ).reshape(-1)
    if over.any():
        sums, seen, int_sums = sums.copy(), seen.copy(), int_sums.copy()
        sums[over] += np.array([float(x) for x in int_sums[over].tolist()])
        seen[over] = True
        int_sums[over] = 0
    return int_sums.astype(np.int64), sums, seen


def two_sum(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """a + b rounded, and its rounding error: exactly a + b in all (without overflow; ±inf and
    NaN give a NaN or nonzero error, which callers treat as inexact)."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = a + b
        b_part = total - a
        return total, (a - (total - b_part)) + (b - b_part)


def fsum(values: list[float]) -> float:
    """math.fsum, and where it fails (inf - inf, or a sum beyond floats) IEEE arithmetic in an
    order that does not depend on the order of `values` (NaN or ±inf)."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        with np.errstate(over="ignore", invalid="ignore"):
            return float(np.sum(np.sort(values)))


def as_floats(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Each int as the nearest float (Python's float(int) for Python ints)."""
    if values.dtype == object:
        return np.array([float(x) for x in values.tolist()], dtype=np.float64)
    return values.astype(np.float64)


def divide(numerators: npt.NDArray[Any], denominators: npt.NDArray[Any]) -> list[float]:
    """int / int, exactly rounded, in Python."""
    return [
        int(a) / int(b) for a, b in zip(numerators.tolist(), denominators.tolist(), strict=True)
    ]


def int_averages(sums: npt.NDArray[Any], counts: npt.NDArray[Any]) -> list[float]:
    """sum / count per group, exactly rounded: in numpy where both convert to float exactly,
    else in Python."""
    if sums.dtype == object or counts.dtype == object:
        return divide(sums, counts)
    out = np.empty(len(sums), dtype=np.float64)
    exact = (sums <= EXACT_FLOAT) & (sums >= -EXACT_FLOAT) & (counts <= EXACT_FLOAT)
    out[exact] = sums[exact] / counts[exact]
    rest = np.flatnonzero(~exact)
    out[rest] = divide(sums[rest], counts[rest])
    return out.tolist()
