"""Exact sums: no overflow, no dependence on the order of additions."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
import pytest

from flakehouse.kernels.sums import (
    INT64_MAX,
    ExactSums,
    fsum,
    group_int_sums,
    int_averages,
    two_sum,
    wire_int_sums,
)


@pytest.mark.parametrize("magnitude", [10, 2**40, 2**62])
def test_group_int_sums_are_exact_at_every_magnitude(magnitude: int) -> None:
    rng = random.Random(magnitude)
    values = [rng.randrange(-magnitude, magnitude) for _ in range(500)]
    groups = [rng.randrange(7) for _ in values]
    got = group_int_sums(np.array(values, dtype=np.int64), np.array(groups, dtype=np.intp), 7)
    expected = [sum(x for x, g in zip(values, groups, strict=True) if g == k) for k in range(7)]
    assert [int(x) for x in got.tolist()] == expected
    assert (got.dtype == object) == (magnitude == 2**62)


def test_exact_sums_switch_to_python_ints_before_overflowing() -> None:
    sums = ExactSums()
    target = np.array([0, 1], dtype=np.intp)
    big = np.array([INT64_MAX, -5], dtype=np.int64)
    sums.add(target, big, 2)
    assert sums.values.dtype == np.int64
    sums.add(target, big, 2)
    assert sums.values.dtype == object
    assert sums.values[:2].tolist() == [2 * INT64_MAX, -10]
    sums.add(np.array([2], dtype=np.intp), np.array([2**70], dtype=object), 3)
    assert sums.values[:3].tolist() == [2 * INT64_MAX, -10, 2**70]


def test_int_sums_beyond_int64_travel_as_floats() -> None:
    int_sums = np.array([2**64, 3, -(2**65)], dtype=object)
    sums = np.array([0.5, 0.0, 1.0])
    seen = np.array([False, False, False])
    wired, floats, flags = wire_int_sums(int_sums, sums, seen)
    assert wired.dtype == np.int64 and wired.tolist() == [0, 3, 0]
    assert floats.tolist() == [2.0**64 + 0.5, 0.0, 1.0 - 2.0**65]
    assert flags.tolist() == [True, False, True]
    assert sums.tolist() == [0.5, 0.0, 1.0]  # the caller's arrays are untouched


def test_two_sum_is_exact() -> None:
    rng = random.Random(2)
    a = np.array([rng.uniform(-1, 1) * 10 ** rng.randrange(-20, 20) for _ in range(1000)])
    b = np.array([rng.uniform(-1, 1) * 10 ** rng.randrange(-20, 20) for _ in range(1000)])
    total, error = two_sum(a, b)
    for x, y, t, e in zip(a.tolist(), b.tolist(), total.tolist(), error.tolist(), strict=True):
        assert Fraction(t) + Fraction(e) == Fraction(x) + Fraction(y)


def test_fsum_does_not_depend_on_order_even_with_infinities() -> None:
    assert fsum([0.1, 1e100, 0.2, -1e100]) == math.fsum([0.1, 0.2])
    overflowing = [1e308, 1e308, -1e308, 0.1, 0.2]  # math.fsum overflows in between
    assert fsum(overflowing) == fsum(overflowing[::-1]) == fsum(sorted(overflowing))
    nan_case = [math.inf, -math.inf, 1.0]
    assert math.isnan(fsum(nan_case)) and math.isnan(fsum(nan_case[::-1]))
    assert fsum([1e308, 1e308]) == fsum([1e308, 1e308][::-1]) == math.inf


def test_int_averages_are_exactly_rounded() -> None:
    sums = np.array([2**60 + 1, 10, -7], dtype=np.int64)
    counts = np.array([3, 4, 2], dtype=np.int64)
    assert int_averages(sums, counts) == [(2**60 + 1) / 3, 2.5, -3.5]
    assert int_averages(np.array([2**70], dtype=object), np.array([3])) == [2**70 / 3]
