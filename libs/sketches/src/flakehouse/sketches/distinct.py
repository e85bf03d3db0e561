"""Mergeable count-distinct state: the exact set of the values' typed hashes while it is small,
an Apache DataSketches HLL sketch beyond that. Accuracy and bytes: FORMAT.md."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import datasketches
import numpy as np
import numpy.typing as npt

from flakehouse.sketches import packed
from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.hashing import Hashes, hash_scalars
from flakehouse.sketches.packed import Flat, Ints

LG_K = 16
"""HLL registers: 2^16. FORMAT.md gives the error this makes."""
EXACT_LIMIT = 4096
"""Most distinct values a state holds exactly (8 bytes each)."""

_TARGET = datasketches.tgt_hll_type.HLL_4
_MAGIC = b"FHD\x01"
_EXACT = 0
_HLL = 1
# DataSketches HLL preamble (bytes 0..7): preamble ints, serial version, family, lg_k, lg_arr,
# flags, list count, mode (bits 0-1: list/set/HLL, bits 2-3: HLL_4/6/8).
_HLL_SER_VER = 1
_HLL_FAMILY = 7
_HLL_PREAMBLE_INTS = {0: 2, 1: 3, 2: 10}


def sorted_unique(hashes: Hashes) -> Hashes:
    """The distinct hashes, ascending. (np.unique is much slower on high-cardinality uint64 in
    numpy 2.4, so this sorts and compares neighbours.)"""
    ordered = np.sort(hashes)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _normalized(sketch: Any) -> Any:
    # A union of a sketch with itself leaves the registers alone but sets the out-of-order flag:
    # the estimate is then the composite one, a function of the registers only, so it does not
    # depend on the order in which values or partial states arrived (HIP would).
    union = datasketches.hll_union(LG_K)
    union.update(sketch)
    union.update(sketch)
    return union.get_result(_TARGET)


def _sketch_of(hashes: Hashes) -> Any:
    sketch = datasketches.hll_sketch(LG_K, datasketches.tgt_hll_type.HLL_8)
    # No batch update in the bindings: one call per distinct hash (~0.25 µs each).
    for _ in map(sketch.update, hashes.view(np.int64).tolist()):
        pass
    return _normalized(sketch)


class DistinctState:
    """Count-distinct state of one aggregate in one group. Immutable: `merge` returns a new
    state."""

    __slots__ = ("_exact", "_sketch")

    def __init__(self, exact: Hashes | None, sketch: Any) -> None:
        """Use the class methods; exactly one of `exact` (sorted distinct hashes) and `sketch`
        (a normalized HLL_4 sketch) is set."""
        self._exact = exact
        self._sketch = sketch

    # -- building ------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> DistinctState:
        return cls(np.zeros(0, dtype=np.uint64), None)

    @classmethod
    def from_values(cls, values: Iterable[object]) -> DistinctState:
        """From Python scalars; None (NULL) is not counted."""
        return cls.from_hashes(hash_scalars(values))

    @classmethod
    def from_hashes(
        cls, hashes: npt.NDArray[np.uint64], *, sorted_unique_input: bool = False
    ) -> DistinctState:
        """From typed hashes (`hashing.py`), duplicates allowed unless `sorted_unique_input`
        promises they are already distinct and ascending."""
        distinct = (
            np.asarray(hashes, dtype=np.uint64)
            if sorted_unique_input
            else sorted_unique(np.asarray(hashes, dtype=np.uint64))
        )
        if len(distinct) <= EXACT_LIMIT:
            return cls(distinct, None)
        return cls(None, _sketch_of(distinct))

    # -- merging -------------------------------------------------------------------------

    def merge(self, other: DistinctState) -> DistinctState:
        return DistinctState.merge_all((self, other))

    @classmethod
    def merge_all(cls, states: Iterable[DistinctState]) -> DistinctState:
        """The merge of any number of states at once (one HLL union, not one per pair)."""
        exact: list[Hashes] = []
        sketches: list[Any] = []
        for state in states:
            if state._sketch is not None:
                sketches.append(state._sketch)
            elif state._exact is not None and len(state._exact):
                exact.append(state._exact)
        if not sketches:
            if not exact:
                return cls.empty()
            if len(exact) == 1:
                return cls(exact[0], None)
            return cls.from_hashes(np.concatenate(exact))
        if len(sketches) == 1 and not exact:
            return cls(None, sketches[0])
        union = datasketches.hll_union(LG_K)
        for sketch in sketches:
            union.update(sketch)
        for hashes in exact:
            for _ in map(union.update, hashes.view(np.int64).tolist()):
                pass
        return cls(None, _normalized(union.get_result(_TARGET)))

    # -- reading -------------------------------------------------------------------------

    @property
    def is_exact(self) -> bool:
        return self._sketch is None

    def estimate(self) -> int:
        """The number of distinct values: exact in exact mode, else the HLL estimate."""
        if self._exact is not None:
            return len(self._exact)
        return round(float(self._sketch.get_estimate()))

    # -- bytes ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        if self._exact is not None:
            if not len(self._exact):
                return b""
            return _MAGIC + bytes([_EXACT]) + self._exact.astype("<u8").tobytes()
        return _MAGIC + bytes([_HLL]) + bytes(self._sketch.serialize_compact())

    @classmethod
    def from_bytes(cls, data: bytes) -> DistinctState:
        """Decode and validate `to_bytes` output; raises SketchFormatError for anything else."""
        if not data:
            return cls.empty()
        if len(data) < len(_MAGIC) + 1 or data[:3] != _MAGIC[:3]:
            raise SketchFormatError("not a count-distinct state (bad magic)")
        if data[3] != _MAGIC[3]:
            raise SketchFormatError(f"count-distinct state version {data[3]} is not supported")
        mode, payload = data[4], data[5:]
        if mode == _EXACT:
            return cls(_decode_exact(payload), None)
        if mode == _HLL:
            return cls(None, _decode_hll(payload))
        raise SketchFormatError(f"unknown count-distinct mode {mode}")

    def __repr__(self) -> str:
        mode = "exact" if self.is_exact else "hll"
        return f"DistinctState({mode}, estimate={self.estimate()})"


def _decode_exact(payload: bytes) -> Hashes:
    if len(payload) % 8:
        raise SketchFormatError(
            f"exact count-distinct state of {len(payload)} bytes, not a multiple of 8"
        )
    n = len(payload) // 8
    if not 1 <= n <= EXACT_LIMIT:
        raise SketchFormatError(f"exact count-distinct state with {n} values (1..{EXACT_LIMIT})")
    hashes = np.frombuffer(payload, dtype="<u8").astype(np.uint64)
    if n > 1 and not bool(np.all(hashes[1:] > hashes[:-1])):
        raise SketchFormatError("exact count-distinct hashes are not strictly ascending")
    return hashes


def _decode_hll(payload: bytes) -> Any:
    if len(payload) < 8:
        raise SketchFormatError("HLL sketch truncated")
    cur_mode, target = payload[7] & 3, (payload[7] >> 2) & 3
    if (
        payload[1] != _HLL_SER_VER
        or payload[2] != _HLL_FAMILY
        or cur_mode not in _HLL_PREAMBLE_INTS
        or payload[0] != _HLL_PREAMBLE_INTS[cur_mode]
    ):
        raise SketchFormatError("not a DataSketches HLL sketch")
    if payload[3] != LG_K or target != 0 or payload[4] > LG_K:
        raise SketchFormatError(f"HLL sketch parameters differ (need lg_k={LG_K}, HLL_4)")
    try:
        sketch = datasketches.hll_sketch.deserialize(payload)
        estimate = float(sketch.get_estimate())
    except (ValueError, IndexError, MemoryError, RuntimeError, OverflowError) as exc:
        raise SketchFormatError(f"corrupt HLL sketch: {exc}") from None
    if sketch.lg_config_k != LG_K or sketch.tgt_type != _TARGET or not math.isfinite(estimate):
        raise SketchFormatError(f"HLL sketch parameters differ (need lg_k={LG_K}, HLL_4)")
    return sketch


# -- many groups at once -----------------------------------------------------------------------

_MAGIC_WORD = int.from_bytes(_MAGIC, "little")
_HEADER = len(_MAGIC) + 1
_MODE_BAD, _MODE_EMPTY = -1, -2


def _decode_hll_state(data: bytes) -> Any:
    """The sketch of a state whose header says HLL."""
    return _decode_hll(data[_HEADER:])


def distinct_of_groups(groups: Sequence[Sequence[bytes]]) -> list[int]:
    """For each group of serialized states, the estimate of their merge: the answers of
    `DistinctState.merge_all(map(DistinctState.from_bytes, group)).estimate()`, with the exact
    states of all groups read and counted at once. Raises SketchFormatError for the first
    malformed state, naming its group and place."""
    flat = Flat(groups)
    buf, starts, lengths = flat.buf, flat.starts, flat.lengths
    mode = np.full(len(lengths), _MODE_BAD, dtype=np.int64)
    mode[lengths == 0] = _MODE_EMPTY
    sized = np.flatnonzero(lengths >= _HEADER)
    ours = sized[packed.gather(buf, starts[sized], 4) == _MAGIC_WORD]
    mode[ours] = buf[starts[ours] + len(_MAGIC)]
    mode[(mode != _EXACT) & (mode != _HLL) & (mode != _MODE_EMPTY)] = _MODE_BAD
    n = (lengths - _HEADER) // 8
    exact = mode == _EXACT
    mode[exact & (((lengths - _HEADER) % 8 != 0) | (n < 1) | (n > EXACT_LIMIT))] = _MODE_BAD
    bad = [np.flatnonzero(mode == _MODE_BAD)]

    states = np.flatnonzero(mode == _EXACT)
    n = n[states]
    firsts = np.cumsum(n) - n
    hashes = packed.sections(buf, starts[states] + _HEADER, n, 8)
    descending = np.flatnonzero(hashes[1:] <= hashes[:-1]) + 1
    starting = np.zeros(len(hashes), dtype=bool)
    starting[firsts] = True
    descending = descending[~starting[descending]]  # a state's first hash may be below the last
    if len(descending):
        bad.append(states[[packed.first_of(firsts, int(descending[0]))]])

    first_bad = flat.first(bad)
    sketches: dict[int, Any] = {}
    for state in np.flatnonzero(mode == _HLL).tolist():
        if state > first_bad:
            break
        sketches[state] = flat.decode(state, _decode_hll_state)
    if first_bad < len(lengths):
        flat.refuse(first_bad, DistinctState.from_bytes, "count-distinct")

    group_of = flat.group_of
    answers = np.zeros(flat.n_groups, dtype=np.int64)
    with_hll = np.zeros(flat.n_groups, dtype=bool)
    with_hll[group_of[list(sketches)]] = True
    # Exact states alone in their group (and no HLL): their number of hashes.
    per_group = np.bincount(group_of[states], minlength=flat.n_groups)
    alone = (per_group[group_of[states]] == 1) & ~with_hll[group_of[states]]
    answers[group_of[states[alone]]] = n[alone]
    # Several exact states: their distinct hashes, all such groups at once.
    several = np.flatnonzero(~alone & ~with_hll[group_of[states]])
    if len(several):
        owners = np.repeat(group_of[states[several]], n[several])
        chosen = hashes
        if len(several) < len(states):
            chosen = hashes[packed.segments(len(hashes), firsts[several], n[several])]
        counted = _distinct_per_group(owners, chosen, flat.n_groups)
        answers[per_group > 1] = counted[per_group > 1]
    # The rest as merge_all does it: with HLL sketches, or more hashes than an exact state holds.
    slow = np.flatnonzero(with_hll | (answers > EXACT_LIMIT))
    group_starts = (np.cumsum(flat.sizes) - flat.sizes).tolist()
    for group in slow.tolist():
        decoded = []
        for state in range(group_starts[group], group_starts[group] + int(flat.sizes[group])):
            if state in sketches:
                decoded.append(DistinctState(None, sketches[state]))
            elif mode[state] == _EXACT:
                i = int(np.searchsorted(states, state))
                at, size = int(firsts[i]), int(n[i])
                decoded.append(DistinctState(hashes[at : at + size], None))
        answers[group] = DistinctState.merge_all(decoded).estimate()
    result: list[int] = answers.tolist()
    return result


def _distinct_per_group(groups: Ints, hashes: Hashes, n_groups: int) -> Ints:
    """The number of distinct hashes of each group 0..n_groups-1, from (group, hash) pairs
    sorted by group."""
    # One sort of one int: the group in the high bits, the hash's high bits below (a stable
    # argsort, fast on runs: each state's hashes come ascending). Equal pairs end up next to
    # each other unless a run of equal keys mixes hashes that differ in their low bits only;
    # then a sort by group and whole hash (np.lexsort, slower, but seen only with crafted
    # hashes: 2^-(64 - group bits) per pair of random ones).
    bits = max(1, (n_groups - 1).bit_length())
    shift = np.uint64(64 - bits)
    key = groups.astype(np.uint64) << shift | hashes >> np.uint64(bits)
    order = np.argsort(key, kind="stable")
    key, hashes = key[order], hashes[order]
    same_key = key[1:] == key[:-1]
    other_hash = hashes[1:] != hashes[:-1]
    if bool((same_key & other_hash).any()):
        order = np.lexsort((hashes, key))
        key, hashes = key[order], hashes[order]
        same_key, other_hash = key[1:] == key[:-1], hashes[1:] != hashes[:-1]
    new = np.ones(len(key), dtype=bool)
    new[1:] = ~same_key | other_hash
    return np.bincount((key[new] >> shift).astype(np.int64), minlength=n_groups)
