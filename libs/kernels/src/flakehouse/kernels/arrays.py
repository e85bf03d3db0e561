"""Per-group arrays that grow as groups appear, and functions evaluated once per key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Index = npt.NDArray[np.intp]
"""Group or value numbers, or positions in an array."""


def grow(array: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with room for n groups (amortized doubling); new slots hold `fill`."""
    if len(array) >= n:
        return array
    grown = np.full(max(n, 2 * len(array), 16), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def per_key(
    keys: npt.NDArray[np.int64], compute: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.int64]]
) -> npt.NDArray[np.int64]:
    """compute(keys) for int keys, evaluated once per possible key and gathered when the keys
    span fewer values than there are rows (a million timestamps in a month are 31 days), else
    once per row."""
    low, high = int(keys.min()), int(keys.max())
    if high - low < len(keys):
        table = np.asarray(compute(np.arange(low, high + 1, dtype=np.int64)), dtype=np.int64)
        return table[keys - low]
    return np.asarray(compute(keys), dtype=np.int64)
