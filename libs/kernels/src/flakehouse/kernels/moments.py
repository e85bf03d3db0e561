"""Per-group moments for STDDEV_SAMP and STDDEV_POP: the count of numeric values, their mean, and
the sum of squared differences from that mean (plan.proto's `counts`, `means`, `squares`), and
Chan et al.'s formula that merges two such states.

Means and squared differences, rather than sums of values and of squares, because the variance
is then never the difference of two large, nearly equal numbers: a group of durations around
10^9 with a spread of 1 keeps its digits.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.arrays import Index

Floats = npt.NDArray[np.float64]
Counts = npt.NDArray[np.int64]


def group_moments(values: Floats, groups: Index, n: int) -> tuple[Counts, Floats, Floats]:
    """Count, mean and sum of squared differences from the mean of `values` per group
    (`groups[i]`: the group of `values[i]`, in [0, n)), in two passes; a group without values
    has count 0, mean 0 and squares 0."""
    counts = np.bincount(groups, minlength=n).astype(np.int64)
    # Infinities and NaN make NaN, as IEEE says: no warnings.
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.bincount(groups, weights=values, minlength=n)
        means = np.divide(sums, counts, out=np.zeros(n), where=counts > 0)
        deviations = values - means[groups]
        # bincount with weights counts in float64 (asarray only tells mypy so, without a copy).
        squares = np.asarray(
            np.bincount(groups, weights=deviations * deviations, minlength=n), np.float64
        )
    return counts, means, squares


def combine(
    a: tuple[Counts, Floats, Floats], b: tuple[Counts, Floats, Floats]
) -> tuple[Counts, Floats, Floats]:
    """The moments of the union of two sets of values, element by element (Chan, Golub and
    LeVeque, 1979). Where one side has count 0 the other comes out unchanged."""
    n_a, mean_a, squares_a = a
    n_b, mean_b, squares_b = b
    n = n_a + n_b
    # Weights as floats: n_a * n_b overflows int64 past 3·10^9 values a side.
    total = np.maximum(n, 1).astype(np.float64)
    weight_b = n_b / total
    with np.errstate(invalid="ignore", over="ignore"):  # infinities and NaN make NaN
        delta = mean_b - mean_a
        # A count-0 side adds nothing, even when its mean is not 0 (or not a number).
        delta = np.where((n_a == 0) | (n_b == 0), 0.0, delta)
        mean = np.where(n_a == 0, mean_b, mean_a + delta * weight_b)
        squares = squares_a + squares_b + delta * delta * (n_a * weight_b)
    squares = np.where(n_a == 0, squares_b, np.where(n_b == 0, squares_a, squares))
    return n, mean, squares
