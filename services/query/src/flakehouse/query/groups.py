"""Global group numbers for the groups of partial results, by key, in order of first arrival
(flakehouse.kernels' `GroupKeys`, the numbering storage uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flakehouse.common.v1 import plan_pb2
from flakehouse.kernels.arrays import Index, grow
from flakehouse.kernels.numbering import GroupKeys
from flakehouse.query.partial import NULL, PartialResultError, typed_values


class GroupIndex:
    """The groups of all partials merged so far: `size` of them, numbered in order of first
    appearance, and the value of each key in each group (`key_cells`)."""

    def __init__(self, width: int) -> None:
        self.keys = GroupKeys(width)
        self._slots = np.zeros(0, dtype=np.intp)

    @property
    def size(self) -> int:
        return self.keys.size

    def targets(self, columns: Sequence[plan_pb2.ValueColumn], size: int) -> Index:
        """The global group of each group of a partial's key columns, adding the new ones;
        raises PartialResultError (having added nothing) when they do not hold one key per
        group, each once."""
        parts = [typed_values(column, size, f"key column {i}") for i, column in enumerate(columns)]
        self.keys.checkpoint()
        ids = []
        for values, typed in zip(self.keys.values, parts, strict=True):
            out = np.empty(size, dtype=np.intp)
            for kind, positions, data in typed:
                numbers = values.number(kind, [None] if kind == NULL else data)
                if positions is None:
                    out[:] = numbers
                else:
                    out[positions] = numbers
            ids.append(out)
        target = self.keys.groups(ids, size)
        if not self._distinct(target):
            self.keys.rollback()
            raise PartialResultError("a group appears twice in a partial result")
        return target

    def _distinct(self, target: Index) -> bool:
        # Where several positions write one slot, only the last one reads itself back.
        self._slots = grow(self._slots, self.size, 0)
        positions = np.arange(len(target), dtype=np.intp)
        self._slots[target] = positions
        return not (self._slots[target] != positions).any()

    def add_empty_key(self) -> None:
        """The one group of a plan without GROUP BY, when no partial brought it."""
        self.keys.groups([], 1)

    def key_cells(self, key: int) -> list[Any]:
        """The value of key `key` in each group, in group order."""
        return self.keys.key_cells(key)
