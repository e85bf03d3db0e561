"""COUNT_DISTINCT partial states: per group, the distinct typed hashes of the field's values
(any type, NULL not counted), kept exact up to the sketch library's limit and as an HLL sketch
beyond it; `StateColumn.sketches` carries `flakehouse.sketches.DistinctState` bytes.

Vectorized: each segment yields its distinct (group, hash) pairs with numpy — strings through
the dictionary (each distinct code among the matched rows is hashed once), numbers and bools by
array hashing — and pairs are deduplicated across segments by sorting. Python work is per group
(and per hash for groups past the exact limit, which the HLL bindings update one at a time)."""

from __future__ import annotations

import weakref

import numpy as np
import numpy.typing as npt

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.sketches import EXACT_LIMIT, DistinctState
from flakehouse.sketches.distinct import sorted_unique
from flakehouse.sketches.hashing import Hashes, hash_bools, hash_floats, hash_ints, hash_strings
from flakehouse.storage.grouping import SegmentGroups
from flakehouse.storage.segment import ColumnView

Groups = npt.NDArray[np.int64]

# Pairs gathered before they are deduplicated together (and big groups moved to HLL).
_COMPACT_AT = 1 << 21
# Key ranges up to this size are deduplicated with bincount instead of a sort.
_DENSE_LIMIT = 1 << 16


def _distinct_keys(keys: Groups, upper: int) -> Groups:
    """The distinct values of `keys` (all in [0, upper)), ascending."""
    if upper <= max(4 * len(keys), _DENSE_LIMIT):
        return np.flatnonzero(np.bincount(keys, minlength=upper)).astype(np.int64)
    ordered = np.sort(keys)
    keep = np.ones(len(ordered), dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _group_sort_dtype(n_groups: int) -> npt.DTypeLike:
    # numpy sorts 16-bit keys stably with a radix sort: much faster than 64-bit ones.
    if n_groups <= 1 << 16:
        return np.uint16
    return np.uint32 if n_groups <= 1 << 32 else np.int64


def unique_pairs(groups: Groups, hashes: Hashes, n_groups: int) -> tuple[Groups, Hashes]:
    """The distinct (group, hash) pairs, sorted by group and then hash (groups < n_groups)."""
    if len(hashes) == 0:
        return groups[:0], hashes[:0]
    if n_groups == 1:
        distinct = sorted_unique(hashes)
        return np.zeros(len(distinct), dtype=np.int64), distinct
    order = np.argsort(hashes)
    order = order[np.argsort(groups[order].astype(_group_sort_dtype(n_groups)), kind="stable")]
    g, h = groups[order], hashes[order]
    keep = np.ones(len(h), dtype=bool)
    keep[1:] = (g[1:] != g[:-1]) | (h[1:] != h[:-1])
    return g[keep], h[keep]


_DICTIONARY_HASHES: dict[int, Hashes] = {}


def dictionary_hashes(dictionary: npt.NDArray[np.object_]) -> Hashes:
    """The hash of every entry of a decoded string dictionary, computed once per dictionary:
    sealed columns stay decoded in the store's cache, so repeated queries hash nothing. Hashing
    (one blake2b per string) was nearly all of a count(DISTINCT) over a string column. The memo
    lives as long as the dictionary array itself."""
    key = id(dictionary)
    hashes = _DICTIONARY_HASHES.get(key)
    if hashes is None:
        hashes = hash_strings(dictionary.tolist())
        _DICTIONARY_HASHES[key] = hashes
        weakref.finalize(dictionary, _DICTIONARY_HASHES.pop, key, None)
    return hashes


def _segment_pairs(
    kind: int, col: ColumnView, keep: npt.NDArray[np.bool_], local: Groups, n_local: int
) -> tuple[Groups, Hashes]:
    """Distinct (local group, hash) pairs of the selected values of one column."""
    if kind == v.STRING:
        assert col.codes is not None and col.dictionary is not None
        size = len(col.dictionary)
        pairs = _distinct_keys(local * size + col.codes[keep].astype(np.int64), n_local * size)
        groups, codes = pairs // size, pairs % size
        return groups, dictionary_hashes(col.dictionary)[codes]
    assert col.values is not None
    if kind == v.BOOL:
        pairs = _distinct_keys(local * 2 + col.values[keep].astype(np.int64), n_local * 2)
        return pairs // 2, hash_bools(pairs % 2 == 1)
    values = col.values[keep]
    hashes = hash_ints(values) if kind == v.INT else hash_floats(values)
    return unique_pairs(local, hashes, n_local)


class CountDistinct:
    """COUNT_DISTINCT over every type of the field, accumulated over global groups."""

    def __init__(self, agg: plan_pb2.Aggregate) -> None:
        self.field = agg.field
        # Deduplicated exact pairs, sorted by (group, hash), of groups still in exact mode.
        self._groups: Groups = np.zeros(0, dtype=np.int64)
        self._hashes: Hashes = np.zeros(0, dtype=np.uint64)
        self._pending: list[tuple[Groups, Hashes]] = []
        self._pending_size = 0
        self._n = 0
        # Groups past the exact limit.
        self._sketches: dict[int, DistinctState] = {}
        self._is_sketch = np.zeros(0, dtype=bool)

    def add(self, part: SegmentGroups) -> None:
        self._n = max(self._n, part.n_global)
        for kind, col in part.seg.columns(self.field).items():
            local, keep = part.column(col)
            if len(local) == 0:
                continue
            groups, hashes = _segment_pairs(kind, col, keep, local.astype(np.int64), part.n_local)
            self._pending.append((part.target[groups].astype(np.int64), hashes))
            self._pending_size += len(hashes)
        if self._pending_size > max(_COMPACT_AT, len(self._hashes)):
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        groups = np.concatenate([self._groups, *(g for g, _ in self._pending)])
        hashes = np.concatenate([self._hashes, *(h for _, h in self._pending)])
        self._pending, self._pending_size = [], 0
        if len(self._is_sketch) < self._n:
            grown = np.zeros(max(self._n, 2 * len(self._is_sketch)), dtype=bool)
            grown[: len(self._is_sketch)] = self._is_sketch
            self._is_sketch = grown
        to_sketch = self._is_sketch[groups]
        if to_sketch.any():
            self._add_to_sketches(*unique_pairs(groups[to_sketch], hashes[to_sketch], self._n))
            groups, hashes = groups[~to_sketch], hashes[~to_sketch]
        groups, hashes = unique_pairs(groups, hashes, self._n)
        sizes = np.bincount(groups, minlength=self._n)
        big = np.flatnonzero(sizes > EXACT_LIMIT)
        if len(big):
            moving = np.isin(groups, big)
            for group, chunk in _split(groups[moving], hashes[moving]):
                self._sketches[group] = DistinctState.from_hashes(chunk, sorted_unique_input=True)
                self._is_sketch[group] = True
            groups, hashes = groups[~moving], hashes[~moving]
        self._groups, self._hashes = groups, hashes

    def _add_to_sketches(self, groups: Groups, hashes: Hashes) -> None:
        for group, chunk in _split(groups, hashes):
            new = DistinctState.from_hashes(chunk, sorted_unique_input=True)
            self._sketches[group] = self._sketches[group].merge(new)

    def states(self, n: int, out: plan_pb2.StateColumn) -> None:
        self._n = max(self._n, n)
        self._compact()
        bounds = np.searchsorted(self._groups, np.arange(n + 1)).tolist()
        sketches: list[bytes] = []
        for group in range(n):
            sketch = self._sketches.get(group)
            if sketch is None:
                lo, hi = bounds[group], bounds[group + 1]
                if lo == hi:
                    sketches.append(b"")
                    continue
                chunk = self._hashes[lo:hi]
                sketch = DistinctState.from_hashes(chunk, sorted_unique_input=True)
            sketches.append(sketch.to_bytes())
        out.sketches.extend(sketches)


def _split(groups: Groups, hashes: Hashes) -> list[tuple[int, Hashes]]:
    """(group, its hashes) for each group present in pairs sorted by group."""
    if len(groups) == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    ends = [*starts[1:].tolist(), len(groups)]
    return [(int(groups[s]), hashes[s:e]) for s, e in zip(starts.tolist(), ends, strict=True)]
