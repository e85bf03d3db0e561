"""MIN and MAX over mixed types: the same winner whatever the order values arrive in."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from flakehouse.kernels.extremes import Extremes, float_wins


def _offer(state: Extremes, group: int, value: Any) -> None:
    target = np.array([group], dtype=np.intp)
    if type(value) is bool:
        state.bools.merge(target, None, np.array([value], dtype=np.int8), group + 1)
    elif type(value) is int:
        state.ints.merge(target, None, np.array([value], dtype=np.int64), group + 1)
    elif type(value) is float:
        state.floats.merge(target, None, np.array([value]), group + 1)
    else:
        strings = np.empty(1, dtype=object)
        strings[0] = value
        state.strings.merge(target, None, strings, group + 1)


def _winner(state: Extremes, group: int) -> Any:
    won = state.winners(np.array([group], dtype=np.intp))
    if won.is_int[0]:
        return int(won.ints[0])
    if won.is_float[0]:
        return float(won.floats[0])
    if won.is_string[0]:
        return won.strings[0]
    return bool(won.bools[0]) if won.is_bool[0] else None


def _reference(values: list[Any], maximum: bool) -> Any:
    numbers = [
        x for x in values if type(x) in (int, float) and not (type(x) is float and math.isnan(x))
    ]
    if numbers:
        pick = max if maximum else min
        best = pick(numbers)
        # An int wins a tie with an equal float, whatever came first.
        ties = [x for x in numbers if x == best and type(x) is int]
        return ties[0] if ties else best
    if any(type(x) is float for x in values):
        return math.nan
    for kind in (str, bool):
        found = [x for x in values if type(x) is kind]
        if found:
            return (max if maximum else min)(found)
    return None


@pytest.mark.parametrize("maximum", [False, True])
def test_the_winner_does_not_depend_on_arrival_order(maximum: bool) -> None:
    rng = random.Random(int(maximum))
    pool: list[Any] = [1, 1.0, 2**60, float(2**60), 2**60 + 1, -0.0, 0, math.nan, -3, 2.5]
    pool += ["a", "b", True, False, math.inf, -math.inf]
    for _ in range(300):
        values = [rng.choice(pool) for _ in range(rng.randrange(1, 6))]
        expected = _reference(values, maximum)
        for _ in range(3):
            state = Extremes(maximum)
            for value in values:
                _offer(state, 0, value)
            got = _winner(state, 0)
            assert repr(got) == repr(expected), (values, got, expected)
            assert type(got) is type(expected)
            rng.shuffle(values)


def test_float_wins_compares_big_ints_exactly() -> None:
    ints = np.array([2**53 + 1, 5, 5], dtype=np.int64)
    floats = np.array([float(2**53 + 1), 5.0, math.nan])  # 2**53 + 1 rounds to 2**53
    assert float_wins(floats, ints, maximum=True).tolist() == [False, False, False]
    assert float_wins(floats, ints, maximum=False).tolist() == [True, False, False]


def test_has_masks_values_a_segment_did_not_have() -> None:
    state = Extremes(maximum=True)
    target = np.array([0, 1], dtype=np.intp)
    state.ints.merge(target, np.array([True, False]), np.array([4, 99], dtype=np.int64), 2)
    won = state.winners(slice(0, 2))
    assert won.is_int.tolist() == [True, False] and won.ints[0] == 4
