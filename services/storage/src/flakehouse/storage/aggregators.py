"""The aggregators of COUNT, SUM/AVG and MIN/MAX: per global group, the mergeable states of
plan.proto's StateColumn, built from each segment's share (`SegmentGroups`). The rules for
numbers (exact int sums, MIN/MAX over mixed types) are flakehouse.kernels', the ones the query
service applies when it merges these states. COUNT_DISTINCT and PERCENTILE are in distinct.py
and quantiles.py."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels.arrays import grow
from flakehouse.kernels.extremes import Extremes
from flakehouse.kernels.sums import ExactSums, group_int_sums, wire_int_sums
from flakehouse.storage.grouping import SegmentGroups
from flakehouse.storage.segment import TIMESTAMP, ColumnView

_I64 = np.iinfo(np.int64)


class Aggregator(Protocol):
    """One aggregate of the plan, accumulated over global groups 0..n-1."""

    def add(self, part: SegmentGroups) -> None: ...
    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        """Writes the states of groups 0..n-1 into `out` (see plan.proto's StateColumn)."""


class Count:
    """COUNT (rows) and COUNT_FIELD (rows where the field has a value of any type)."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field if agg.function == plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD else None
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, part: SegmentGroups) -> None:
        if self.field is None or self.field == TIMESTAMP:
            local = part.group_sizes()
        else:
            local = np.zeros(part.n_local, dtype=np.int64)
            for col in part.seg.columns(self.field).values():
                if col.count == part.seg.n:
                    local += part.group_sizes()
                else:
                    local += part.counts(part.column(col)[0])
        self.counts = grow(self.counts, part.n_global, 0)
        self.counts[part.target] += local

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self.counts = grow(self.counts, n, 0)
        out.counts.extend(self.counts[:n].tolist())


class Sum:
    """SUM and AVG share one state (the query service divides for AVG): exact int_sum of the int
    values, float sum of the float values, float_seen, and count of numeric values."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self.int_sums = ExactSums()
        self.sums = np.zeros(0, dtype=np.float64)
        self.seen = np.zeros(0, dtype=bool)
        self.counts = np.zeros(0, dtype=np.int64)

    def _reserve(self, n: int) -> None:
        self.int_sums.resize(n)
        self.sums = grow(self.sums, n, 0.0)
        self.seen = grow(self.seen, n, False)
        self.counts = grow(self.counts, n, 0)

    def add(self, part: SegmentGroups) -> None:
        target = part.target
        self._reserve(part.n_global)
        columns = part.seg.columns(self.field)
        col = columns.get(v.INT)
        if col is not None:
            assert col.values is not None
            groups, values = part.take(col, col.values)
            self.int_sums.add(target, group_int_sums(values, groups, part.n_local), part.n_global)
            self.counts[target] += part.counts(groups)
        col = columns.get(v.FLOAT)
        if col is not None:
            assert col.values is not None
            groups, values = part.take(col, col.values)
            local_counts = part.counts(groups)
            self.sums[target] += np.bincount(groups, weights=values, minlength=part.n_local)
            self.seen[target] |= local_counts > 0
            self.counts[target] += local_counts

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._reserve(n)
        int_sums, sums, seen = wire_int_sums(self.int_sums.values[:n], self.sums[:n], self.seen[:n])
        out.counts.extend(self.counts[:n].tolist())
        out.sums.extend(sums.tolist())
        out.int_sums.extend(int_sums.tolist())
        out.float_seen.extend(seen.tolist())


class Extreme:
    """MIN and MAX: each segment's best value of each type per local group, offered to the
    global groups' flakehouse.kernels Extremes."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        self.is_min = agg.function == plan_pb2.AGGREGATE_FUNCTION_MIN
        self.state = Extremes(maximum=not self.is_min)

    def _local(
        self, part: SegmentGroups, col: ColumnView, values: npt.NDArray[Any], fill: Any
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[Any]]:
        groups, values = part.take(col, values)
        best = np.full(part.n_local, fill, dtype=values.dtype)
        # fmin/fmax skip NaN, so a NaN never hides the numbers of its group.
        ufunc: np.ufunc
        if values.dtype.kind == "f":
            ufunc = np.fmin if self.is_min else np.fmax
        else:
            ufunc = np.minimum if self.is_min else np.maximum
        ufunc.at(best, groups, values)
        return part.counts(groups) > 0, best

    def add(self, part: SegmentGroups) -> None:
        n, target, state = part.n_global, part.target, self.state
        columns = part.seg.columns(self.field)
        col = columns.get(v.INT)
        if col is not None:
            assert col.values is not None
            fill = _I64.max if self.is_min else _I64.min
            has, best = self._local(part, col, col.values, fill)
            state.ints.merge(target, has, best, n)
        col = columns.get(v.FLOAT)
        if col is not None:
            assert col.values is not None
            has, best = self._local(part, col, col.values, np.nan)
            state.floats.merge(target, has, best, n)
        col = columns.get(v.STRING)
        if col is not None:
            assert col.codes is not None and col.dictionary is not None
            # Codes order like strings: the best code is the best string.
            fill = _I64.max if self.is_min else -1
            has, code = self._local(part, col, col.codes.astype(np.int64), fill)
            strings = np.full(part.n_local, "", dtype=object)
            strings[has] = col.dictionary[code[has]]
            state.strings.merge(target, has, strings, n)
        col = columns.get(v.BOOL)
        if col is not None:
            assert col.values is not None
            fill = 2 if self.is_min else -1
            has, best = self._local(part, col, col.values.astype(np.int8), fill)
            state.bools.merge(target, has, best, n)

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self.state.resize(n)
        won = self.state.winners(slice(0, n))
        types = np.zeros(n, dtype=np.int8)
        types[won.is_int], types[won.is_float] = v.INT, v.FLOAT
        types[won.is_string], types[won.is_bool] = v.STRING, v.BOOL
        column = out.extremes
        column.SetInParent()
        column.types.extend(types.tolist())  # type: ignore[arg-type]
        column.int_values.extend(won.ints[won.is_int].tolist())
        column.float_values.extend(won.floats[won.is_float].tolist())
        column.string_values.extend(won.strings[won.is_string].tolist())
        column.bool_values.extend(won.bools[won.is_bool].tolist())
