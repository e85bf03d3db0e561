"""Numpy helpers shared by the code that builds and merges per-group states (storage's
aggregation, the query service's merge)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def grow(array: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    """`array` with room for n groups (amortized doubling); new slots hold `fill`."""
    if len(array) >= n:
        return array
    grown = np.full(max(n, 2 * len(array), 16), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
