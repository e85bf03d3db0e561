"""STDDEV_SAMP and STDDEV_POP partial states: per group, the count of the field's numbers (ints
and floats; other types ignored), their mean and the sum of their squared differences from it
(StateColumn's counts, means and squares), computed and merged by flakehouse.kernels.moments:
two passes per segment, then Chan et al.'s formula into the global groups, as the query
service merges partials."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels.arrays import grow
from flakehouse.kernels.moments import combine, group_moments
from flakehouse.storage.grouping import SegmentGroups

Floats = npt.NDArray[np.float64]


class StdDev:
    """STDDEV_SAMP and STDDEV_POP (one state: the query service takes n - 1 or n)."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self.counts = np.zeros(0, dtype=np.int64)
        self.means = np.zeros(0, dtype=np.float64)
        self.squares = np.zeros(0, dtype=np.float64)

    def _reserve(self, n: int) -> None:
        self.counts = grow(self.counts, n, 0)
        self.means = grow(self.means, n, 0.0)
        self.squares = grow(self.squares, n, 0.0)

    def add(self, part: SegmentGroups) -> None:
        self._reserve(part.n_global)
        columns = part.seg.columns(self.field)
        taken = []
        for kind in (v.INT, v.FLOAT):
            col = columns.get(kind)
            if col is not None and col.count:
                assert col.values is not None
                taken.append(part.take(col, col.values))
        if not taken:
            return
        groups = np.concatenate([g for g, _ in taken])
        x = np.concatenate([values.astype(np.float64, copy=False) for _, values in taken])
        counts, means, squares = group_moments(x, groups, part.n_local)
        has = np.flatnonzero(counts)
        self.merge(part.target[has], counts[has], means[has], squares[has])

    def merge(
        self,
        target: npt.NDArray[np.intp],
        counts: npt.NDArray[np.int64],
        means: Floats,
        squares: Floats,
    ) -> None:
        """Adds a segment's moments to groups `target` (distinct) with Chan et al.'s formula,
        the query service's rule for merging partials (flakehouse.kernels.moments)."""
        before = (self.counts[target], self.means[target], self.squares[target])
        total, merged_means, merged_squares = combine(before, (counts, means, squares))
        self.counts[target], self.means[target], self.squares[target] = (
            total,
            merged_means,
            merged_squares,
        )

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._reserve(n)
        out.counts.extend(self.counts[:n].tolist())
        out.means.extend(self.means[:n].tolist())
        out.squares.extend(self.squares[:n].tolist())
