"""Moments for STDDEV: per-group states from values, and Chan's merge of two states, against
numpy over all the values at once."""

from __future__ import annotations

import numpy as np
import pytest

from flakehouse.kernels.moments import combine, group_moments


def test_group_moments_against_numpy() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(0, 1, 1000)
    groups = rng.integers(0, 6, 1000).astype(np.intp)  # group 5 gets values, 6 and 7 none
    counts, means, squares = group_moments(values, groups, 8)
    for k in range(8):
        mine = values[groups == k]
        assert counts[k] == len(mine)
        if len(mine):
            assert means[k] == pytest.approx(mine.mean(), rel=1e-14)
            assert squares[k] == pytest.approx(((mine - mine.mean()) ** 2).sum(), rel=1e-12)
        else:
            assert (means[k], squares[k]) == (0.0, 0.0)


@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_combine_equals_the_moments_of_the_union(offset: float) -> None:
    rng = np.random.default_rng(11)
    values = offset + rng.normal(0, 1, 600)
    groups = rng.integers(0, 4, 600).astype(np.intp)
    left = rng.random(600) < 0.3
    a = group_moments(values[left], groups[left], 4)
    b = group_moments(values[~left], groups[~left], 4)
    n, mean, squares = combine(a, b)
    whole = group_moments(values, groups, 4)
    assert n.tolist() == whole[0].tolist()
    np.testing.assert_allclose(mean, whole[1], rtol=1e-14, atol=1e-15)
    # Around 10^9 the spread of 1 keeps ~7 digits: no sum of squares of 10^18 is subtracted.
    np.testing.assert_allclose(squares, whole[2], rtol=1e-6 if offset else 1e-12)


def test_a_side_without_values_changes_nothing() -> None:
    empty = (np.array([0, 0]), np.array([np.nan, 5.0]), np.array([np.nan, 3.0]))
    full = (np.array([2, 3]), np.array([1.5, -2.0]), np.array([0.5, 8.0]))
    for n, mean, squares in (combine(empty, full), combine(full, empty)):
        assert n.tolist() == [2, 3]
        assert mean.tolist() == [1.5, -2.0]
        assert squares.tolist() == [0.5, 8.0]
    n, mean, squares = combine(empty, empty)
    assert n.tolist() == [0, 0]


def test_counts_beyond_int32_products_do_not_overflow() -> None:
    big = 4_000_000_000
    a = (np.array([big]), np.array([0.0]), np.array([0.0]))
    b = (np.array([big]), np.array([2.0]), np.array([0.0]))
    n, mean, squares = combine(a, b)
    assert n.tolist() == [2 * big]
    assert mean.tolist() == [1.0]
    assert squares.tolist() == [2.0 * big]  # every value 1 away from the mean
