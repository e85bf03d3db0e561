"""PERCENTILE partial states: per group, a DDSketch of the field's int and float values (strings
and bools ignored; no value → empty bytes, NULL); `StateColumn.sketches` carries
`flakehouse.sketches.QuantileState` bytes. The state does not depend on the quantile, which the
query service applies after the merge.

Vectorized: each value's DDSketch bucket code is computed with numpy, each segment's values are
counted per (group, code) with bincount (over the codes that occur) or a sort, and the counts
are summed across segments the same way. Python work is per group (one serialization each)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.sketches.quantile_buckets import bucket_codes
from flakehouse.sketches.quantile_codec import encode_grouped
from flakehouse.storage.grouping import SegmentGroups

Ints = npt.NDArray[np.int64]

# (group, code, count) triples gathered before they are summed together.
_COMPACT_AT = 1 << 21
# Key ranges up to this size are counted with bincount (8 bytes a slot) instead of a sort.
_DENSE_LIMIT = 1 << 22


def _count_pairs(
    groups: Ints, codes: Ints, counts: Ints | None, n_groups: int
) -> tuple[Ints, Ints, Ints]:
    """Distinct (group, code) pairs, sorted by group then code, with the sum of their counts
    (1 each when `counts` is None). Groups are in [0, n_groups)."""
    # Only the codes that occur: a segment's values use a few hundred of the ~140 000 buckets,
    # so (group, code) keys usually fit a bincount.
    low = int(codes.min()) if len(codes) else 0
    shifted = codes - low
    used = np.flatnonzero(np.bincount(shifted))
    index = np.zeros(int(used[-1]) + 1 if len(used) else 0, dtype=np.int64)
    index[used] = np.arange(len(used))
    used += low
    width = len(used)
    keys = groups * width + index[shifted]
    upper = n_groups * width
    weights = None if counts is None else counts.astype(np.float64)  # exact below 2^53
    if upper <= max(4 * len(keys), _DENSE_LIMIT):
        dense = np.bincount(keys, weights=weights, minlength=upper)
        distinct = np.flatnonzero(dense)
        sums = dense[distinct].astype(np.int64)
    elif weights is None:
        ordered = np.sort(keys)
        starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        distinct = ordered[starts]
        sums = np.diff(np.append(starts, len(ordered)))
    else:
        distinct, inverse = np.unique(keys, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=weights).astype(np.int64)
    return distinct // width, used[distinct % width], sums


class Percentile:
    """PERCENTILE over the int and float values of the field, accumulated over global groups."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self._groups: Ints = np.zeros(0, dtype=np.int64)
        self._codes: Ints = np.zeros(0, dtype=np.int64)
        self._counts: Ints = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[Ints, Ints, Ints]] = []
        self._pending_size = 0

    def add(self, part: SegmentGroups) -> None:
        columns = part.seg.columns(self.field)
        for kind in (v.INT, v.FLOAT):
            col = columns.get(kind)
            if col is None:
                continue
            assert col.values is not None
            local, keep = part.column(col)
            if len(local) == 0:
                continue
            codes = bucket_codes(col.values[keep])
            local_groups, used, counts = _count_pairs(
                local.astype(np.int64), codes, None, part.n_local
            )
            groups = part.target[local_groups].astype(np.int64)
            self._pending.append((groups, used, counts))
            self._pending_size += len(used)
        if self._pending_size > max(_COMPACT_AT, len(self._codes)):
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        groups = np.concatenate([self._groups, *(p[0] for p in self._pending)])
        codes = np.concatenate([self._codes, *(p[1] for p in self._pending)])
        counts = np.concatenate([self._counts, *(p[2] for p in self._pending)])
        self._pending, self._pending_size = [], 0
        n_groups = int(groups.max()) + 1 if len(groups) else 0
        self._groups, self._codes, self._counts = _count_pairs(groups, codes, counts, n_groups)

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._compact()
        out.sketches.extend(encode_grouped(self._groups, self._codes, self._counts, n))
