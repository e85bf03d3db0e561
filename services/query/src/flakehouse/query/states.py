"""The merged states of the plan's aggregates, one entry per global group, merged from the
partial results' StateColumns (plan.proto) a column at a time with numpy; and their final SQL
values, computed only for the groups an answer needs.

The rules for numbers (exact int sums, MIN/MAX over mixed types) are flakehouse.kernels', the
ones storage applies when it builds the partial states.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import BOOL, FLOAT, INT, STRING
from flakehouse.kernels.arrays import Index, grow
from flakehouse.kernels.extremes import Extremes, Positions
from flakehouse.kernels.moments import combine
from flakehouse.kernels.sums import ExactSums, as_floats, fsum, int_averages, two_sum
from flakehouse.query.finalexpr import Cell
from flakehouse.query.partial import NULL, PartialResultError, typed_values
from flakehouse.query.sql.scope import SUPPORTED_AGGREGATES
from flakehouse.sketches import (
    DistinctState,
    QuantileState,
    SketchFormatError,
    distinct_of_groups,
    quantiles_of_groups,
)

_REPEATED = ("counts", "sums", "int_sums", "float_seen", "sketches", "means", "squares")


class StateColumn(ABC):
    """The merged states of one aggregate of the plan, one entry per group number.

    `decode` reads and checks a partial's StateColumn (nothing is merged until every column of
    the partial is checked); `merge` adds it to the groups `target` (distinct numbers)."""

    members: tuple[str, ...] = ()
    """The repeated members of StateColumn this aggregate uses (the others must be empty)."""
    extremes = False
    """Whether it uses StateColumn.extremes."""

    def decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        """A partial's states, checked to fit: one entry per group in each member used."""
        for name in _REPEATED:
            found, expected = len(getattr(state, name)), size if name in self.members else 0
            if found != expected:
                raise PartialResultError(f"{what} has {found} {name}, expected {expected}")
        if not self.extremes and state.HasField("extremes") and len(state.extremes.types):
            raise PartialResultError(f"{what} has extremes, expected none")
        return self._decode(state, size, what)

    @abstractmethod
    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any: ...

    @abstractmethod
    def merge(self, target: Index, data: Any, size: int) -> None:
        """Merge a partial's decoded states into groups `target`; `size` groups in all."""

    @abstractmethod
    def resize(self, size: int) -> None:
        """Make room for `size` groups, the new ones without any state."""

    @abstractmethod
    def finals(self, positions: Positions) -> list[Cell]:
        """The SQL values of the aggregate in these groups."""


def state_columns(plan: plan_pb2.QueryPlan) -> list[StateColumn]:
    """An empty StateColumn for each aggregate of the plan."""
    columns: list[StateColumn] = []
    for aggregate in plan.aggregates:
        function = aggregate.function
        if function not in SUPPORTED_AGGREGATES:
            raise PartialResultError(f"cannot merge {plan_pb2.AggregateFunction.Name(function)}")
        if function in (plan_pb2.AGGREGATE_FUNCTION_COUNT, plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD):
            columns.append(Counts())
        elif function in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
            columns.append(Sums(average=function == plan_pb2.AGGREGATE_FUNCTION_AVG))
        elif function in (plan_pb2.AGGREGATE_FUNCTION_MIN, plan_pb2.AGGREGATE_FUNCTION_MAX):
            columns.append(MinMax(maximum=function == plan_pb2.AGGREGATE_FUNCTION_MAX))
        elif function == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
            columns.append(Sketches(DistinctState, _distinct_batch))
        elif function in (
            plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
            plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP,
        ):
            columns.append(Moments(sample=function == plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP))
        else:
            columns.append(Sketches(QuantileState, _quantile_batch(aggregate.quantile)))
    return columns


class Counts(StateColumn):
    """COUNT and COUNT_FIELD: the sum of the counts."""

    members = ("counts",)

    def __init__(self) -> None:
        self.counts = ExactSums()

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return np.asarray(state.counts, dtype=np.int64)

    def merge(self, target: Index, data: Any, size: int) -> None:
        self.counts.add(target, data, size)

    def resize(self, size: int) -> None:
        self.counts.resize(size)

    def finals(self, positions: Positions) -> list[Cell]:
        return self.counts.values[positions].tolist()  # type: ignore[no-any-return]


class Sums(StateColumn):
    """SUM and AVG over int and float values (see plan.proto's StateColumn).

    Counts and int sums are summed exactly (flakehouse.kernels' ExactSums). The float sums of
    the partials are added up exactly rounded (as math.fsum does), so that the answer does not
    depend on the order in which partials arrive: with numpy, each group keeps a sum and the
    exact errors of its additions (Knuth's TwoSum) summed in a second float; while that second
    sum is exact too, sum + errors is the exact total and one addition rounds it correctly.
    Where it was not (errors spanning more than 53 bits, or ±inf and NaN), the group's float
    sums, kept aside, go through math.fsum."""

    members = ("counts", "sums", "int_sums", "float_seen")

    def __init__(self, average: bool) -> None:
        self.average = average
        self.counts = ExactSums()
        self.int_sums = ExactSums()
        self.seen = np.zeros(0, dtype=bool)
        self._sums = np.zeros(0, dtype=np.float64)
        self._errors = np.zeros(0, dtype=np.float64)
        self._inexact = np.zeros(0, dtype=bool)
        # Every partial's nonzero float sums, by group: for the groups left inexact.
        self._floats: list[tuple[Index, npt.NDArray[np.float64]]] = []

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return (
            np.asarray(state.counts, dtype=np.int64),
            np.asarray(state.int_sums, dtype=np.int64),
            np.asarray(state.float_seen, dtype=bool),
            np.asarray(state.sums, dtype=np.float64),
        )

    def resize(self, size: int) -> None:
        self.counts.resize(size)
        self.int_sums.resize(size)
        self.seen = grow(self.seen, size, False)
        self._sums = grow(self._sums, size, 0.0)
        self._errors = grow(self._errors, size, 0.0)
        self._inexact = grow(self._inexact, size, False)

    def merge(self, target: Index, data: Any, size: int) -> None:
        counts, int_sums, seen, sums = data
        self.counts.add(target, counts, size)
        self.int_sums.add(target, int_sums, size)
        self.resize(size)
        self.seen[target] |= seen
        # Zeros change no sum (nor its sign: see finals).
        nonzero = np.flatnonzero(sums != 0)
        if len(nonzero) == 0:
            return
        if len(nonzero) < len(sums):
            target, sums = target[nonzero], sums[nonzero]
        self._floats.append((target, sums))
        total, error = two_sum(self._sums[target], sums)
        errors, inexact = two_sum(self._errors[target], error)
        self._sums[target] = total
        self._errors[target] = errors
        # NaN != 0 too: an inf or NaN anywhere makes the group inexact.
        self._inexact[target] |= inexact != 0

    def float_sums(self, positions: Positions) -> npt.NDArray[np.float64]:
        """These groups' float sums added up, exactly rounded (math.fsum)."""
        totals = self._sums[positions] + self._errors[positions]
        inexact = np.flatnonzero(self._inexact[positions])
        if len(inexact):
            groups = np.arange(len(self._sums))[positions][inexact]
            values: dict[int, list[float]] = {group: [] for group in groups.tolist()}
            for target, sums in self._floats:
                keep = np.flatnonzero(self._inexact[target])
                for group, value in zip(target[keep].tolist(), sums[keep].tolist(), strict=True):
                    if group in values:
                        values[group].append(value)
            totals[inexact] = [fsum(values[group]) for group in groups.tolist()]
        return totals

    def finals(self, positions: Positions) -> list[Cell]:
        counts = self.counts.values[positions]
        int_sums = self.int_sums.values[positions]
        seen = self.seen[positions]
        out = np.full(len(counts), None, dtype=object)
        present = counts != 0
        ints = np.flatnonzero(present & ~seen)
        floats = np.flatnonzero(present & seen)
        if len(floats):
            # float(int_sum) + float_sum, as a float: -0.0 becomes 0.0 there.
            totals = as_floats(int_sums[floats]) + self.float_sums(positions)[floats]
            out[floats] = totals / as_floats(counts[floats]) if self.average else totals
        if len(ints):
            if self.average:
                out[ints] = int_averages(int_sums[ints], counts[ints])
            else:
                out[ints] = int_sums[ints]
        return out.tolist()


class MinMax(StateColumn):
    """MIN and MAX: flakehouse.kernels' Extremes over the partials' extremes."""

    extremes = True

    def __init__(self, maximum: bool) -> None:
        self.state = Extremes(maximum)
        self._by_type = {
            INT: self.state.ints,
            FLOAT: self.state.floats,
            STRING: self.state.strings,
            BOOL: self.state.bools,
        }

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return typed_values(state.extremes, size, what)

    def resize(self, size: int) -> None:
        self.state.resize(size)

    def merge(self, target: Index, data: Any, size: int) -> None:
        self.resize(size)
        for kind, positions, values in data:
            if kind == NULL:
                continue
            groups = target if positions is None else target[positions]
            if kind == STRING:
                strings = np.empty(len(values), dtype=object)
                strings[:] = values
                values = strings
            self._by_type[kind].merge(groups, None, values, size)

    def finals(self, positions: Positions) -> list[Cell]:
        won = self.state.winners(positions)
        out = np.full(len(won.ints), None, dtype=object)
        out[won.is_int] = won.ints[won.is_int]
        out[won.is_float] = won.floats[won.is_float]
        out[won.is_string] = won.strings[won.is_string]
        out[won.is_bool] = won.bools[won.is_bool]
        return out.tolist()


_Moments = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""Counts, means and squares, one entry per group."""
_MomentsPart = tuple[Index, npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
"""A partial's states: their groups, counts, means and squares."""


class Moments(StateColumn):
    """STDDEV_SAMP and STDDEV_POP: counts, means and squared differences from the mean (see
    plan.proto's StateColumn), merged with Chan et al.'s formula (flakehouse.kernels.moments).

    The formula rounds differently when states are merged in another order, so each partial's
    states are kept as they arrive and merged when finalized, every group's in an order the
    states themselves fix (by mean, then squares, then count): the answer does not depend on the
    order in which partitions reply. That keeps 32 bytes per group and partial until then, as
    Sums keeps its float sums."""

    members = ("counts", "means", "squares")

    def __init__(self, sample: bool) -> None:
        self.sample = sample
        self.size = 0
        self._parts: list[_MomentsPart] = []
        self._merged: _Moments | None = None

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        counts = np.asarray(state.counts, dtype=np.int64)
        if size and counts.min() < 0:
            raise PartialResultError(f"{what} has a negative count")
        means = np.asarray(state.means, dtype=np.float64)
        return counts, means, np.asarray(state.squares, dtype=np.float64)

    def resize(self, size: int) -> None:
        if size > self.size:
            self.size = size
            self._merged = None

    def merge(self, target: Index, data: Any, size: int) -> None:
        self.resize(size)
        counts, means, squares = data
        # A state over no values changes nothing (its mean and squares mean nothing).
        kept = np.flatnonzero(counts)
        if len(kept):
            self._parts.append((target[kept], counts[kept], means[kept], squares[kept]))
            self._merged = None

    def _moments(self) -> _Moments:
        if self._merged is None:
            self._merged = _merge_moments(self._parts, self.size)
        return self._merged

    def finals(self, positions: Positions) -> list[Cell]:
        counts, means, squares = self._moments()
        counts, means, squares = counts[positions], means[positions], squares[positions]
        out = np.full(len(counts), None, dtype=object)
        # As DuckDB: the sample's is NULL below 2 values, the population's below 1.
        answered = np.flatnonzero(counts >= (2 if self.sample else 1))
        if not len(answered):
            return out.tolist()
        n = counts[answered]
        with np.errstate(invalid="ignore", over="ignore"):
            # Rounding can leave a sum of squares a hair below 0; NaN stays NaN.
            variances = np.maximum(squares[answered], 0.0) / as_floats(n - int(self.sample))
        # As DuckDB: a NaN or an infinity among the values makes NaN (the mean is not finite
        # then), but one value alone deviates by 0, whatever it is.
        variances[~np.isfinite(means[answered])] = np.nan
        variances[n == 1] = 0.0
        out[answered] = np.sqrt(variances)
        return out.tolist()


def _merge_moments(parts: list[_MomentsPart], size: int) -> _Moments:
    """Every group's states merged, in the order of their (mean, squares, count).

    Groups are taken together by how many states they have (k): their states side by side,
    one row of k per group, sorted within rows, then merged a column at a time, vectorized over
    the rows. Sorting short rows by one float key is an order of magnitude faster than one sort
    of every state by group and three keys; a NaN mean makes the answer NaN in any order."""
    merged: _Moments = (
        np.zeros(size, dtype=np.int64),
        np.zeros(size, dtype=np.float64),
        np.zeros(size, dtype=np.float64),
    )
    if not parts:
        return merged
    # Each group's states next to each other (a counting sort): a partial's groups are
    # distinct, so a state's place within its group is how many partials before had the group.
    per_group = np.zeros(size, dtype=np.int64)
    places = []
    for target, *_ in parts:
        places.append(per_group[target])
        per_group[target] += 1
    starts = np.cumsum(per_group) - per_group
    at = np.concatenate(
        [starts[part[0]] + place for part, place in zip(parts, places, strict=True)]
    )
    counts = np.empty(len(at), dtype=np.int64)
    means, squares = np.empty(len(at)), np.empty(len(at))
    counts[at] = np.concatenate([part[1] for part in parts])
    means[at] = np.concatenate([part[2] for part in parts])
    squares[at] = np.concatenate([part[3] for part in parts])

    by_size = np.argsort(per_group, kind="stable")
    sizes = per_group[by_size]
    bounds = np.searchsorted(sizes, np.arange(int(sizes[-1]) + 2))
    for k in range(1, int(sizes[-1]) + 1):
        rows = by_size[bounds[k] : bounds[k + 1]]
        if not len(rows):
            continue
        states = starts[rows][:, None] + np.arange(k)
        if k > 1:
            states = np.take_along_axis(states, np.argsort(means[states], axis=1), axis=1)
            # Equal means were left in arrival order: those rows are sorted by all three.
            ordered = means[states]
            tied = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
            if len(tied):
                ties = states[tied]
                keys = (counts[ties], squares[ties], means[ties])
                states[tied] = np.take_along_axis(ties, np.lexsort(keys, axis=1), axis=1)
        total = (counts[states[:, 0]], means[states[:, 0]], squares[states[:, 0]])
        for column in range(1, k):
            state = states[:, column]
            total = combine(total, (counts[state], means[state], squares[state]))
        merged[0][rows], merged[1][rows], merged[2][rows] = total
    return merged


_State = TypeVar("_State", DistinctState, QuantileState)

# Partial sketch states kept per group before they are merged into one, bounding memory when
# many partitions answer.
_FOLD_AT = 64


class Sketches(StateColumn):
    """COUNT_DISTINCT and PERCENTILE: the serialized states of each group's partials, finalized
    for all the groups asked about at once by flakehouse.sketches' vectorized batch functions.
    A malformed state is reported then, or when a group holds too many to keep (they are
    folded into one every _FOLD_AT).

    An entry is the bytes of a group's state from its first partial, and a list of serialized
    states (and decoded ones, once folded) when more arrive."""

    members = ("sketches",)

    def __init__(
        self,
        kind: type[_State],
        batch: Callable[[list[list[bytes]]], list[Cell]],
    ) -> None:
        self.entries: list[Any] = []
        self.kind: Any = kind
        # Many groups' serialized states → their final values, vectorized (flakehouse.sketches).
        self.batch = batch

    def _decode(self, state: plan_pb2.StateColumn, size: int, what: str) -> Any:
        return state.sketches[:]

    def resize(self, size: int) -> None:
        if len(self.entries) < size:
            self.entries.extend([b""] * (size - len(self.entries)))

    def merge(self, target: Index, data: Any, size: int) -> None:
        known = len(self.entries)
        old = np.flatnonzero(target < known).tolist()
        if len(old) < len(data):
            # The groups new with this partial are numbered known, known + 1, ...
            new = np.flatnonzero(target >= known)
            self.entries.extend([data[i] for i in new[np.argsort(target[new])].tolist()])
        for i, index in zip(old, target[old].tolist(), strict=True):
            self._add(index, data[i])

    def _parts(self, index: int) -> list[Any]:
        entry = self.entries[index]
        if type(entry) is bytes:
            entry = self.entries[index] = [entry] if entry else []
        return entry  # type: ignore[no-any-return]

    def _add(self, index: int, data: bytes) -> None:
        parts = self._parts(index)
        if not data:
            return
        parts.append(data)
        if len(parts) > _FOLD_AT:
            self.entries[index] = [self._merge(parts).to_bytes()]

    def _merge(self, parts: list[Any]) -> Any:
        states = [self._decode_state(part) if isinstance(part, bytes) else part for part in parts]
        if not states:
            return self.kind.empty()
        # States are immutable: one needs no merge.
        return states[0] if len(states) == 1 else self.kind.merge_all(states)

    def _decode_state(self, data: bytes) -> Any:
        try:
            return self.kind.from_bytes(data)
        except SketchFormatError as exc:
            raise PartialResultError(f"bad sketch in a partial result: {exc}") from None

    def finals(self, positions: Positions) -> list[Cell]:
        if isinstance(positions, slice):
            indexes: Iterable[int] = range(len(self.entries))[positions]
        else:
            indexes = positions.tolist()
        groups = [self._parts(i) for i in indexes]
        try:
            return self.batch(groups)
        except SketchFormatError as exc:
            raise PartialResultError(f"bad sketch in a partial result: {exc}") from None


def _quantile_batch(q: float) -> Callable[[list[list[bytes]]], list[Cell]]:
    def batch(groups: list[list[bytes]]) -> list[Cell]:
        return [values[0] for values in quantiles_of_groups(groups, [q])]

    return batch


def _distinct_batch(groups: list[list[bytes]]) -> list[Cell]:
    return list(distinct_of_groups(groups))
