"""Mergeable quantile state of one group: a DDSketch (the `ddsketch` library) plus exact counts of
NaN and ±infinity, built from values or bucket counts. Accuracy and bytes: FORMAT.md."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.store import DenseStore

from flakehouse.sketches.packed import Ints
from flakehouse.sketches.quantile_buckets import (
    CODE_NAN,
    CODE_NEG,
    CODE_POS,
    CODE_POS_INF,
    CODE_ZERO,
    KEY_MAX,
    KEY_MIN,
    MAPPING,
    bucket_codes,
    buckets_of_stores,
    checked_triples,
    summed,
)
from flakehouse.sketches.quantile_codec import decode, encode_one


@dataclass
class _Store:
    """One DDSketch store: its non-empty buckets, keys ascending, and, once made, the
    contiguous counts from the smallest key to the largest."""

    keys: list[int]
    counts: list[float]  # whole numbers, > 0
    total: int  # their exact sum
    dense: list[float] | None = None

    def contiguous(self) -> list[float]:
        if self.dense is None:
            self.dense = [0.0] * (self.keys[-1] - self.keys[0] + 1)
            low = self.keys[0]
            for key, count in zip(self.keys, self.counts, strict=True):
                self.dense[key - low] = count
        return self.dense

    def library_store(self) -> DenseStore:
        """The library's store holding these counts. Filled through the attributes that its
        docstring documents (as its own `copy` does): one `add` per bucket costs too much when
        a query merges thousands of states."""
        store = DenseStore()
        if self.keys:
            store.bins = list(self.contiguous())
            store.offset = store.min_key = self.keys[0]
            store.max_key = self.keys[-1]
            store.count = float(self.total)
        return store


@dataclass
class _Parts:
    """Everything a state holds, in the shape of the library's sketch."""

    positive: _Store
    negative: _Store
    zero: int = 0
    nan: int = 0
    neg_inf: int = 0
    pos_inf: int = 0

    def sketch(self) -> BaseDDSketch:
        return BaseDDSketch(
            mapping=MAPPING,
            store=self.positive.library_store(),
            negative_store=self.negative.library_store(),
            zero_count=float(self.zero),
        )


# Class of each bucket code: 0 -inf, 1 negative, 2 zero, 3 positive, 4 +inf, 5 NaN.
_CLASS_STARTS = np.array([CODE_NEG, CODE_ZERO, CODE_POS, CODE_POS_INF, CODE_NAN])
_CLASSES = 6


def _grouped_parts(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> Iterator[_Parts]:
    """The parts of each group 0..n_groups-1 from (group, code, count) triples sorted by group
    and code, without repeated (group, code). Classified with numpy once; per group only list
    slices remain. A generator: each group's objects are gone before the next group's are made,
    which keeps the garbage collector from running over and over on 100 000 groups."""
    g, c, k = checked_triples(groups, codes, counts, n_groups)
    kind = np.searchsorted(_CLASS_STARTS, c, side="right")
    key = np.where(kind == 1, KEY_MAX - (c - CODE_NEG), c - CODE_POS + KEY_MIN)
    cell = g * _CLASSES + kind
    bounds = np.searchsorted(cell, np.arange(_CLASSES * n_groups + 1)).tolist()
    # Per (group, class) totals; float weights are exact below 2^53.
    weights = k.astype(np.float64)
    totals = np.bincount(cell, weights=weights, minlength=_CLASSES * n_groups)
    flat = totals.astype(np.int64).tolist()
    keys, floats = key.tolist(), weights.tolist()
    for b in range(0, _CLASSES * n_groups, _CLASSES):
        n0, n1, p0, p1 = bounds[b + 1], bounds[b + 2], bounds[b + 3], bounds[b + 4]
        yield _Parts(
            # Codes of negative values ascend as their keys (|x|) descend.
            negative=_Store(keys[n0:n1][::-1], floats[n0:n1][::-1], flat[b + 1]),
            positive=_Store(keys[p0:p1], floats[p0:p1], flat[b + 3]),
            neg_inf=flat[b],
            zero=flat[b + 2],
            pos_inf=flat[b + 4],
            nan=flat[b + 5],
        )


def _parts_of_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> _Parts:
    """The parts of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat, in any order)."""
    present, sums = summed(codes, counts)
    (parts,) = _grouped_parts(np.zeros(len(present), dtype=np.int64), present, sums, 1)
    return parts


def _new_sketch() -> BaseDDSketch:
    return BaseDDSketch(
        mapping=MAPPING, store=DenseStore(), negative_store=DenseStore(), zero_count=0.0
    )


def _store_buckets(store: DenseStore) -> tuple[Ints, npt.NDArray[np.float64]]:
    """Keys (ascending) and counts of the non-empty buckets of a library store."""
    if store.count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    low, high = int(store.min_key), int(store.max_key)
    dense = np.asarray(store.bins[low - store.offset : high - store.offset + 1], np.float64)
    nonzero = np.flatnonzero(dense)
    return nonzero + low, dense[nonzero]


class QuantileState:
    """Quantile state of one aggregate in one group. Immutable: `merge` returns a new state."""

    __slots__ = ("_nan", "_neg_inf", "_pos_inf", "_sketch")

    def __init__(self, sketch: BaseDDSketch, nan: int, neg_inf: int, pos_inf: int) -> None:
        """Use the class methods."""
        self._sketch = sketch
        self._nan = nan
        self._neg_inf = neg_inf
        self._pos_inf = pos_inf

    # -- building ------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> QuantileState:
        return cls(_new_sketch(), 0, 0, 0)

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> QuantileState:
        """From numbers (a numpy array or anything numpy turns into float64)."""
        codes = bucket_codes(values)
        return cls.from_counts(codes, np.ones(len(codes), dtype=np.int64))

    @classmethod
    def from_counts(cls, codes: npt.ArrayLike, counts: npt.ArrayLike) -> QuantileState:
        """The state holding counts[i] values of bucket code codes[i] (`bucket_codes`)."""
        return cls._of_parts(_parts_of_counts(codes, counts))

    @classmethod
    def _of_parts(cls, parts: _Parts) -> QuantileState:
        return cls(parts.sketch(), parts.nan, parts.neg_inf, parts.pos_inf)

    # -- merging -------------------------------------------------------------------------

    def merge(self, other: QuantileState) -> QuantileState:
        return QuantileState.merge_all((self, other))

    @classmethod
    def merge_all(cls, states: Iterable[QuantileState]) -> QuantileState:
        sketch = _new_sketch()
        nan = neg_inf = pos_inf = 0
        for state in states:
            sketch.merge(state._sketch)
            nan += state._nan
            neg_inf += state._neg_inf
            pos_inf += state._pos_inf
        return cls(sketch, nan, neg_inf, pos_inf)

    # -- reading -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many values the state holds."""
        return int(self._sketch.count) + self._nan + self._neg_inf + self._pos_inf

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 ≤ q ≤ 1), interpolated like quantile_cont; None when empty."""
        check_quantile(q)
        n = self.count
        if n == 0:
            return None
        rank = q * (n - 1)
        low = min(math.floor(rank), n - 1)
        fraction = rank - low
        lo = self._value_at(low)
        if fraction == 0.0 or low == n - 1:
            return lo
        hi = self._value_at(low + 1)
        # DuckDB's formula, also for infinities: (-inf, 1) gives -inf, (-inf, inf) NaN.
        return lo * (1.0 - fraction) + hi * fraction

    def _value_at(self, rank: int) -> float:
        """The value of integral rank `rank` (0-based) in the order -inf, sketch, +inf, NaN."""
        if rank < self._neg_inf:
            return -math.inf
        rank -= self._neg_inf
        in_sketch = int(self._sketch.count)
        if rank < in_sketch:
            return self._sketch_value(rank, in_sketch)
        rank -= in_sketch
        return math.inf if rank < self._pos_inf else math.nan

    def _sketch_value(self, rank: int, n: int) -> float:
        # The library takes a quantile and uses rank = q·(n-1), returning the value whose rank
        # is ⌊that⌋. k/(n-1) may round below k once multiplied back, so ask for the next float
        # up: the product is then ≥ k (k is representable) and far below k + 1.
        if rank == 0:
            q = 0.0
        elif rank == n - 1:
            q = 1.0
        else:
            q = math.nextafter(rank / (n - 1), math.inf)
        value = self._sketch.get_quantile_value(q)
        assert value is not None
        return float(value)

    # -- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        negative_keys, negative_counts = _store_buckets(self._sketch._negative_store)
        positive_keys, positive_counts = _store_buckets(self._sketch._store)
        specials = (self._neg_inf, int(self._sketch._zero_count), self._pos_inf, self._nan)
        codes, counts = buckets_of_stores(
            negative_keys, negative_counts, positive_keys, positive_counts, specials
        )
        return encode_one(codes, counts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileState:
        """Decode and validate `to_bytes` output (of this version or version 1); raises
        SketchFormatError for anything else."""
        if not data:
            return cls.empty()
        codes, counts = decode(data)
        (parts,) = _grouped_parts(np.zeros(len(codes), dtype=np.int64), codes, counts, 1)
        return cls._of_parts(parts)

    def __repr__(self) -> str:
        return f"QuantileState(count={self.count})"


def check_quantile(q: float) -> None:
    """Raise ValueError unless 0 ≤ q ≤ 1."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
