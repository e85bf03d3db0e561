"""Per-group arrays that grow as groups appear."""

from __future__ import annotations

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
