"""MIN and MAX per group over values of mixed types, the same on both sides of a partial result.

A field can hold ints, floats, strings and bools in different events. The extreme of a group is
taken over its numbers when it has any (ints and floats compared as numbers, exactly; the winner
keeps its type, and an int wins a tie, so the answer's type does not depend on the order in
which values or partials arrive), else over its strings, else over its bools. NaN never beats
a number (like fmin/fmax): only a group of NaN gives NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flakehouse.kernels.arrays import Index, grow
from flakehouse.kernels.sums import EXACT_FLOAT

Better = Callable[[Any, Any], Any]
"""better(new, old): where a new value beats the current best, elementwise."""

Positions = slice | Index
"""Group numbers: a slice (e.g. all of them) or an index array."""


class Best:
    """Per group, for one value type: whether a value was seen, and the best one."""

    def __init__(self, dtype: Any, fill: Any, better: Better) -> None:
        self.fill = fill
        self.better = better
        self.has = np.zeros(0, dtype=bool)
        self.best: npt.NDArray[Any] = np.full(0, fill, dtype=dtype)

    def resize(self, size: int) -> None:
        self.has = grow(self.has, size, False)
        self.best = grow(self.best, size, self.fill)

    def merge(
        self,
        target: Index,
        has: npt.NDArray[np.bool_] | None,
        values: npt.NDArray[Any],
        size: int,
    ) -> None:
        """Offers `values` to groups `target` (distinct; `has`: which of them hold a value, None
        for all); `size` groups in all."""
        self.resize(size)
        take = ~self.has[target] | self.better(values, self.best[target])
        if has is not None:
            take &= has
        self.has[target[take]] = True
        self.best[target[take]] = values[take]


def float_better(maximum: bool) -> Better:
    """A float beats the best when strictly better, or when the best is NaN and it is not."""
    compare = np.greater if maximum else np.less

    def better(new: Any, old: Any) -> Any:
        return compare(new, old) | (np.isnan(old) & ~np.isnan(new))

    return better


def float_wins(
    floats: npt.NDArray[np.float64], ints: npt.NDArray[np.int64], maximum: bool
) -> npt.NDArray[np.bool_]:
    """Where a group's best float beats its best int: strictly better, compared exactly (NaN
    never is). 1 and 1.0 tie: the int stays."""
    rounded = ints.astype(np.float64)
    wins: npt.NDArray[np.bool_] = floats > rounded if maximum else floats < rounded
    # An int beyond 2**53 can round onto the float: those compare exactly, in Python.
    ties = np.flatnonzero((floats == rounded) & ((ints > EXACT_FLOAT) | (ints < -EXACT_FLOAT)))
    for i, f, x in zip(ties.tolist(), floats[ties].tolist(), ints[ties].tolist(), strict=True):
        wins[i] = f > x if maximum else f < x
    return wins


@dataclass
class Winners:
    """The extreme of each group asked about: which type won (at most one mask is set per
    group; none for a group without values) and the best value of each type."""

    is_int: npt.NDArray[np.bool_]
    is_float: npt.NDArray[np.bool_]
    is_string: npt.NDArray[np.bool_]
    is_bool: npt.NDArray[np.bool_]
    ints: npt.NDArray[np.int64]
    floats: npt.NDArray[np.float64]
    strings: npt.NDArray[Any]
    bools: npt.NDArray[np.bool_]


class Extremes:
    """MIN (`maximum` false) or MAX per group: the best value of each type (`ints`, `floats`,
    `strings`, `bools`, which callers `merge` values into), and the winner among them."""

    def __init__(self, maximum: bool) -> None:
        self.maximum = maximum
        compare = np.greater if maximum else np.less
        self.ints = Best(np.int64, 0, compare)
        self.floats = Best(np.float64, np.nan, float_better(maximum))
        self.strings = Best(object, "", compare)
        self.bools = Best(np.int8, 0, compare)

    def resize(self, size: int) -> None:
        for best in (self.ints, self.floats, self.strings, self.bools):
            best.resize(size)

    def winners(self, positions: Positions) -> Winners:
        """The extremes of groups `positions`."""
        self.resize(
            max(len(best.has) for best in (self.ints, self.floats, self.strings, self.bools))
        )
        ints, floats = self.ints.best[positions], self.floats.best[positions]
        has_int, has_float = self.ints.has[positions], self.floats.has[positions]
        has_string = self.strings.has[positions]
        has_number = has_int | has_float
        # Numbers beat strings and strings beat bools.
        is_float = has_float & ~(has_int & ~float_wins(floats, ints, self.maximum))
        return Winners(
            is_int=has_int & ~is_float,
            is_float=is_float,
            is_string=has_string & ~has_number,
            is_bool=self.bools.has[positions] & ~has_number & ~has_string,
            ints=ints,
            floats=floats,
            strings=self.strings.best[positions],
            bools=self.bools.best[positions].astype(bool),
        )
