"""STDDEV_SAMP and STDDEV_POP partial states: per group, the count of the field's numbers (ints
and floats; other types ignored), their mean and the sum of their squared differences from it
(StateColumn's counts, means and squares). Two passes per segment keep it exact-ish where the
values are large and close together (1e9 plus a little noise), where summing squares would lose
every digit; segments merge into the global groups with Chan et al.'s formula, as the query
service merges partials."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels.arrays import grow
from flakehouse.storage.grouping import SegmentGroups

Floats = npt.NDArray[np.float64]


def _moments(
    groups: npt.NDArray[np.intp], x: Floats, n_groups: int
) -> tuple[npt.NDArray[np.int64], Floats, Floats]:
    """Per group: count, mean and sum of squared differences from the mean. Corrected two-pass:
    the mean, then the differences from it, whose sum (zero but for rounding) corrects both."""
    counts: npt.NDArray[np.int64] = np.bincount(groups, minlength=n_groups)
    sizes = np.maximum(counts, 1).astype(np.float64)
    means = np.bincount(groups, weights=x, minlength=n_groups) / sizes
    with np.errstate(invalid="ignore"):
        deviations = x - means[groups]
        residue = np.bincount(groups, weights=deviations, minlength=n_groups)
        summed = np.bincount(groups, weights=deviations * deviations, minlength=n_groups)
    # Rounding can take a sum of squares a hair below zero (NaN stays NaN).
    squares: Floats = np.maximum(summed - residue * residue / sizes, 0.0)
    means += residue / sizes
    return counts, means, squares


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
        counts, means, squares = _moments(groups, x, part.n_local)
        has = np.flatnonzero(counts)
        self.merge(part.target[has], counts[has], means[has], squares[has])

    def merge(
        self,
        target: npt.NDArray[np.intp],
        counts: npt.NDArray[np.int64],
        means: Floats,
        squares: Floats,
    ) -> None:
        """Chan et al.: the moments of two sets from each one's (targets distinct, counts > 0)."""
        before = self.counts[target]
        total = before + counts
        delta = means - self.means[target]
        share = counts / total
        with np.errstate(invalid="ignore"):
            merged = self.squares[target] + squares + delta * delta * (before * share)
        first = before == 0
        # A group's first values take their own moments exactly (inf - 0 would make NaN of 0 * inf).
        self.means[target] = np.where(first, means, self.means[target] + delta * share)
        self.squares[target] = np.where(first, squares, merged)
        self.counts[target] = total

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._reserve(n)
        out.counts.extend(self.counts[:n].tolist())
        out.means.extend(self.means[:n].tolist())
        out.squares.extend(self.squares[:n].tolist())
