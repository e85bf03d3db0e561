"""Mergeable quantile state: a DDSketch (the `ddsketch` library, LogarithmicMapping, relative
accuracy 1 %) plus counts of NaN and ±infinity, which a DDSketch cannot hold; and the batch
finalizers of the query service, which merge and read the states of many groups at once.

Error bounds. Values are ordered -inf < negative < 0 < positive < +inf < NaN (DuckDB's order),
and `quantile(q)` interpolates like DuckDB's `quantile_cont`: with n values and r = q·(n-1),
with f = r - ⌊r⌋ it returns x[⌊r⌋]·(1 - f) + x[⌊r⌋+1]·f (DuckDB's formula), where each x[i] is
the DDSketch's value for rank i, within 1 % of the true i-th smallest value. Hence:

- When both neighbours have the same sign (or one is 0), the answer is within 1 % relative
  error of the exact `quantile_cont`; at integral ranks it is within 1 % of a value in the
  data.
- When they straddle 0, the error is at most 1 % of the larger magnitude of the two.
- Zero is exact: the library counts values with |x| ≤ 2.3e-308 (zero and tiny subnormals) in a
  zero bucket and answers 0 for them. Negative values go to a second store of the library
  keyed by |x| and are answered with the same 1 % relative accuracy.
- Magnitudes above the mapping's largest value (1.76e308) are clamped to it (up to 2.9 % off).
- NaN and ±inf are counted exactly and answered exactly at their ranks; between two ranks the
  interpolation follows IEEE arithmetic (-inf and 1 give -inf, -inf and inf NaN, like DuckDB).
- The 1 % is met with equality at bucket edges (1 is answered 0.99), plus float rounding.

Building is vectorized: bucket keys are computed with numpy from the library's own mapping
parameters (`_multiplier`, `_offset` of its LogarithmicMapping, and its `min_possible`), the
same formula as `LogarithmicMapping.key` (`ceil(log(x) / log(2) · multiplier) + offset`), then
counted per bucket (bincount) into the library's `DenseStore` (its documented `bins`, `offset`,
`min_key`, `max_key`, `count`). Merges and quantiles of `QuantileState` are the library's
(`BaseDDSketch.merge`, `get_quantile_value`).

Every bucket has a code (`bucket_codes`), and codes are ordered like the values the buckets
hold: -inf, negative keys from the largest magnitude down, zero, positive keys up, +inf, NaN.
A state is its non-empty buckets in code order, each with its count.

Serialized form (`to_bytes`), the empty state being b"":

    b"FHQ" version=2 (1 byte), then n (uint32 LE, the number of buckets, ≥ 1), the code of
    the first bucket (uint32 LE), a widths byte (bits 0-1: width class c of the counts,
    bits 2-3: width class d ≤ 2 of the steps, bits 4-7 zero; class k means 2^k bytes), then
    n - 1 steps, each a code minus the code before it (≥ 1), as little-endian unsigned ints
    of class d, then the n counts (≥ 1) as little-endian unsigned ints of class c. Both
    classes are the narrowest that hold their largest value (d = 0 when n = 1), so the form is
    canonical: equal states, equal bytes, and a state has no other encoding.

Fixed offsets and widths are what make decoding fast: `quantiles_of_groups` reads 100 000s of
states with a few numpy gathers over their joined bytes, no Python work per state. They are
also small: about 2 bytes a bucket for the few scattered buckets of a small group, 1-3 for a
large one (version 1 took ~15 a sparse bucket, 8 a contiguous one, and a 41-byte header); a
state with both negative and positive values takes 4 bytes a step (the step across zero is
wide).

Decoding validates everything and raises SketchFormatError otherwise: the length (exactly what
n and the widths make), the widths byte and canonical widths, codes in [0, N_CODES) and
strictly ascending, counts ≥ 1, at most 2^53 values in all.

Version 1 (earlier releases write it; `from_bytes` and the batch functions still read it, and
those releases refuse version 2, so query nodes are upgraded before storage nodes):
b"FHQ" version=1, then uint64 LE counts of NaN, -inf, +inf, then the library's protobuf
`DDSketch` message (ddsketch.pb, DataDog's cross-language format): mapping {gamma, indexOffset
0, interpolation NONE}, positiveValues / negativeValues (each either contiguous bins or the
sparse `binCounts` map), zeroCount. The Python library's own `DDSketchProto.from_proto` reads
only contiguous stores (and rebuilds the mapping from gamma, whose multiplier then differs from
ours in the last bits), so decoding is our own and validates every field: mapping parameters,
key range, whole non-negative counts, at most 2^53 values, not empty.

Batch finalization. The query service merges, per group, one state per partition, for up to
100 000s of groups; `quantiles_of_groups` answers their quantiles, and `merge_quantile_groups`
the bytes of their merged states, without a sketch object: all states are decoded into (group,
code, count) triples, sorted by group and code, and each group's ranks are found in the
cumulative counts (a binary search within the group). A bucket's value is the library's
(`mapping.value`, -value for negative keys, 0 for zero), interpolated with the formula above
in the same float operations, so the answers are those of
`QuantileState.merge_all(...).quantile(q)` bit for bit, for groups of up to 2^50 values (the
library's float ranks are exact below that); a group of more than 2^62 values is refused
(SketchFormatError).
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2
from ddsketch.store import DenseStore
from google.protobuf.message import DecodeError

from flakehouse.sketches import packed
from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.packed import Flat, Ints

RELATIVE_ACCURACY = 0.01
"""DDSketch's alpha: every value it returns is within 1 % of the value of that rank."""

_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_LN2 = math.log(2)
_MULTIPLIER = float(_MAPPING._multiplier)
_OFFSET = float(_MAPPING._offset)
_MIN_POSSIBLE = float(_MAPPING.min_possible)
_MAX_POSSIBLE = float(_MAPPING.max_possible)
KEY_MIN = int(_MAPPING.key(_MIN_POSSIBLE))
KEY_MAX = int(_MAPPING.key(_MAX_POSSIBLE))
_KEYS = KEY_MAX - KEY_MIN + 1

# Bucket codes: one small int per bucket, ordered like the values they hold.
CODE_NEG_INF = 0
_CODE_NEG = 1  # negative key k → _CODE_NEG + (KEY_MAX - k)
CODE_ZERO = _CODE_NEG + _KEYS
_CODE_POS = CODE_ZERO + 1  # positive key k → _CODE_POS + (k - KEY_MIN)
CODE_POS_INF = _CODE_POS + _KEYS
CODE_NAN = CODE_POS_INF + 1
N_CODES = CODE_NAN + 1
"""Codes are in [0, N_CODES)."""

# The generated protobuf module has no stubs that mypy can use.
pb: Any = ddsketch_pb2
_MAGIC = b"FHQ\x02"
_MAGIC_V1 = b"FHQ\x01"
# Version 2: magic, buckets, first code, widths (count class | step class << 2).
_HEADER = struct.Struct("<4sIIB")
_HEADER_DTYPE = np.dtype([("magic", "S4"), ("n", "<u4"), ("first", "<u4"), ("widths", "u1")])
_WIDTHS_LIMIT = 12  # widths bytes from 12 up have bits 4-7 set or a step class of 3
_UINTS = ("<u1", "<u2", "<u4", "<u8")
_SPECIALS = struct.Struct("<QQQ")  # version 1
_MAX_COUNT = 2**53  # counts are doubles in the library and its protobuf: exact below this


def _keys(magnitudes: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """LogarithmicMapping.key for positive finite values, vectorized: the library computes
    int(ceil(math.log(x, 2) * multiplier) + offset), and math.log(x, 2) is log(x) / log(2)."""
    keys = np.ceil(np.log(magnitudes) / _LN2 * _MULTIPLIER) + _OFFSET
    return np.clip(keys, KEY_MIN, KEY_MAX).astype(np.int64)


def bucket_codes(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The bucket code of each value (ints are taken as float64): a DDSketch key for nonzero
    finite values, or the zero, -inf, +inf or NaN bucket."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) and x.min() >= 0 and x.max() <= _MAX_POSSIBLE:  # NaN fails both
        # Zero or positive and in the mapping's range (durations): keys need no clip, and the
        # float operations are _keys' own, in place.
        with np.errstate(divide="ignore", invalid="ignore"):  # zeros: log 0 = -inf
            keyed = np.log(x)
            keyed /= _LN2
            keyed *= _MULTIPLIER
            np.ceil(keyed, out=keyed)
            keyed += _OFFSET
            codes = keyed.astype(np.int64)
        codes += _CODE_POS - KEY_MIN
        codes[x <= _MIN_POSSIBLE] = CODE_ZERO
        return codes
    codes = np.full(len(x), CODE_ZERO, dtype=np.int64)
    magnitude = np.abs(x)
    finite = np.isfinite(x)
    keyed = finite & (magnitude > _MIN_POSSIBLE)
    keys = _keys(np.minimum(magnitude[keyed], _MAX_POSSIBLE))
    negative = x[keyed] < 0
    codes[keyed] = np.where(negative, _CODE_NEG + (KEY_MAX - keys), _CODE_POS + (keys - KEY_MIN))
    codes[np.isnan(x)] = CODE_NAN
    infinite = ~finite & ~np.isnan(x)
    codes[infinite & (x > 0)] = CODE_POS_INF
    codes[infinite & (x < 0)] = CODE_NEG_INF
    return codes


@dataclass
class _Store:
    """One DDSketch store: its non-empty buckets, keys ascending, and, when already at hand,
    the contiguous counts from the smallest key to the largest."""

    keys: list[int]
    counts: list[float]  # whole numbers, > 0
    total: int  # their exact sum
    dense: list[float] | None = None

    @classmethod
    def of_dense(cls, low: int, dense: npt.NDArray[np.float64]) -> _Store:
        """From counts of keys low, low+1, … (whole numbers summing below 2^63)."""
        nonzero = np.flatnonzero(dense)
        if not len(nonzero):
            return cls([], [], 0)
        trimmed = dense[nonzero[0] : nonzero[-1] + 1]
        total = int(dense.astype(np.int64).sum())
        return cls((nonzero + low).tolist(), dense[nonzero].tolist(), total, trimmed.tolist())

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
    """Everything a state holds, in the shape of its serialized form."""

    positive: _Store
    negative: _Store
    zero: int = 0
    nan: int = 0
    neg_inf: int = 0
    pos_inf: int = 0

    def total(self) -> int:
        stores = self.positive.total + self.negative.total
        return stores + self.zero + self.nan + self.neg_inf + self.pos_inf

    def sketch(self) -> BaseDDSketch:
        return BaseDDSketch(
            mapping=_MAPPING,
            store=self.positive.library_store(),
            negative_store=self.negative.library_store(),
            zero_count=float(self.zero),
        )


# Class of each bucket code: 0 -inf, 1 negative, 2 zero, 3 positive, 4 +inf, 5 NaN.
_CLASS_STARTS = np.array([_CODE_NEG, CODE_ZERO, _CODE_POS, CODE_POS_INF, CODE_NAN])
_CLASSES = 6


def _grouped_parts(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> Iterator[_Parts]:
    """The parts of each group 0..n_groups-1 from (group, code, count) triples sorted by group
    and code, without repeated (group, code). Classified with numpy once; per group only list
    slices remain. A generator: each group's objects are gone before the next group's are made,
    which keeps the garbage collector from running over and over on 100 000 groups."""
    g, c, k = _checked_triples(groups, codes, counts, n_groups)
    kind = np.searchsorted(_CLASS_STARTS, c, side="right")
    key = np.where(kind == 1, KEY_MAX - (c - _CODE_NEG), c - _CODE_POS + KEY_MIN)
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


def _summed(codes: npt.ArrayLike, counts: npt.ArrayLike) -> tuple[Ints, Ints]:
    """The codes (ascending, without repeats) and summed counts (> 0) of the state holding
    counts[i] values of bucket code codes[i] (codes may repeat, in any order)."""
    c = np.asarray(codes, dtype=np.int64)
    k = np.asarray(counts, dtype=np.int64)
    if c.shape != k.shape or c.ndim != 1:
        raise ValueError("codes and counts must be 1-d arrays of one length")
    if len(c) and (int(c.min()) < 0 or int(c.max()) >= N_CODES or int(k.min()) < 0):
        raise ValueError("bucket code out of range or negative count")
    # Float weights are exact: counts stay below 2^53.
    weights = k.astype(np.float64)
    if len(c) < N_CODES // 16:  # a sort of a few codes costs less than N_CODES slots
        present, inverse = np.unique(c, return_inverse=True)
        sums = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(present))
        kept = sums > 0
        return present[kept], sums[kept].astype(np.int64)
    dense = np.bincount(c, weights=weights, minlength=N_CODES)
    present = np.flatnonzero(dense)
    return present, dense[present].astype(np.int64)


def _parts_of_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> _Parts:
    """The parts of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat, in any order)."""
    present, sums = _summed(codes, counts)
    (parts,) = _grouped_parts(np.zeros(len(present), dtype=np.int64), present, sums, 1)
    return parts


def _checked_triples(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> tuple[Ints, Ints, Ints]:
    """(group, code, count) triples as int64 arrays, checked to be sorted by group and code
    without repeats, in range, with counts ≥ 0; triples of count 0 are dropped."""
    g = np.asarray(groups, dtype=np.int64)
    c = np.asarray(codes, dtype=np.int64)
    k = np.asarray(counts, dtype=np.int64)
    if not g.shape == c.shape == k.shape or g.ndim != 1:
        raise ValueError("groups, codes and counts must be 1-d arrays of one length")
    if len(g):
        if int(c.min()) < 0 or int(c.max()) >= N_CODES or int(k.min()) < 0:
            raise ValueError("bucket code out of range or negative count")
        if int(g.min()) < 0 or int(g.max()) >= n_groups:
            raise ValueError("group out of range")
        combined = g * N_CODES + c
        if not bool(np.all(combined[1:] > combined[:-1])):
            raise ValueError("triples must be sorted by group and code, without repeats")
        if not bool(k.all()):
            keep = k > 0
            g, c, k = g[keep], c[keep], k[keep]
    return g, c, k


# -- version 2 bytes ---------------------------------------------------------------------------


def _encode_one(codes: Ints, counts: Ints) -> bytes:
    """The bytes of the state of these buckets (codes ascending, counts ≥ 1)."""
    if not len(codes):
        return b""
    steps = np.diff(codes)
    count_class = packed.width_class(int(counts.max()))
    step_class = packed.width_class(int(steps.max())) if len(steps) else 0
    header = _HEADER.pack(_MAGIC, len(codes), int(codes[0]), count_class | step_class << 2)
    return (
        header
        + steps.astype(_UINTS[step_class]).tobytes()
        + counts.astype(_UINTS[count_class]).tobytes()
    )


def _encode_many(states: Ints, codes: Ints, counts: Ints, n_states: int) -> list[bytes]:
    """The bytes of each state 0..n_states-1 from its buckets: (state, code, count) triples
    sorted by state and code, without repeats, counts ≥ 1. The same bytes as `_encode_one`,
    written for all states at once into one buffer."""
    result = [b""] * n_states
    if not len(states):
        return result
    per_state = np.bincount(states, minlength=n_states)
    present = np.flatnonzero(per_state)
    n = per_state[present]
    firsts = np.cumsum(n) - n  # each state's first triple
    steps = np.diff(codes, prepend=0)
    steps[firsts] = 0
    count_class = packed.width_classes(np.maximum.reduceat(counts, firsts))
    step_class = packed.width_classes(np.maximum.reduceat(steps, firsts))
    count_width, step_width = 1 << count_class, 1 << step_class
    sizes = _HEADER.size + (n - 1) * step_width + n * count_width
    ends = np.cumsum(sizes)
    offsets = ends - sizes
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    header = np.empty(len(present), dtype=_HEADER_DTYPE)
    header["magic"] = _MAGIC
    header["n"] = n
    header["first"] = codes[firsts]
    header["widths"] = count_class | step_class << 2
    out[offsets[:, None] + np.arange(_HEADER.size)] = header.view(np.uint8).reshape(
        -1, _HEADER.size
    )
    index = np.arange(len(codes)) - np.repeat(firsts, n)  # of the bucket in its state
    body = np.repeat(offsets + _HEADER.size, n)
    each_step, each_count = np.repeat(step_width, n), np.repeat(count_width, n)
    counts_at = body + np.repeat((n - 1) * step_width, n) + index * each_count
    packed.scatter(out, counts_at, counts, each_count)
    later = index > 0
    steps_at = body[later] + (index[later] - 1) * each_step[later]
    packed.scatter(out, steps_at, steps[later], each_step[later])
    data = out.tobytes()
    for state, start, end in zip(present.tolist(), offsets.tolist(), ends.tolist(), strict=True):
        result[state] = data[start:end]
    return result


def encode_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> bytes:
    """`to_bytes()` of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat, in any order), without building the library's objects."""
    return _encode_one(*_summed(codes, counts))


def encode_grouped(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> list[bytes]:
    """`to_bytes()` of the state of each group 0..n_groups-1, from (group, code, count) triples
    sorted by group and code without repeats (storage nodes serialize many groups this way);
    b"" for a group without triples."""
    return _encode_many(*_checked_triples(groups, codes, counts, n_groups), n_groups)


def _decode_v2(data: bytes) -> tuple[Ints, Ints]:
    """The codes and counts of a version 2 state, validated."""
    if len(data) < _HEADER.size:
        raise SketchFormatError("quantile state truncated (shorter than its header)")
    _, n, first, widths = _HEADER.unpack_from(data)
    if widths >= _WIDTHS_LIMIT:
        raise SketchFormatError(f"quantile state widths byte {widths:#04x} is not valid")
    count_class, step_class = widths & 3, widths >> 2
    if n == 0:
        raise SketchFormatError("empty quantile state (the empty state is no bytes)")
    size = _HEADER.size + (n - 1) * (1 << step_class) + n * (1 << count_class)
    if len(data) != size:
        raise SketchFormatError(
            f"quantile state of {len(data)} bytes, not the {size} of its {n} buckets"
        )
    if first >= N_CODES:
        raise SketchFormatError(f"quantile bucket code {first} outside [0, {N_CODES})")
    steps = np.frombuffer(data, _UINTS[step_class], n - 1, _HEADER.size).astype(np.int64)
    at = _HEADER.size + (n - 1) * (1 << step_class)
    counts = np.frombuffer(data, _UINTS[count_class], n, at).astype(np.uint64)
    if len(steps) and int(steps.min()) < 1:
        raise SketchFormatError("quantile bucket codes are not strictly ascending")
    if (len(steps) and int(steps.max()) >= N_CODES) or first + int(steps.sum()) >= N_CODES:
        raise SketchFormatError(f"quantile bucket code outside [0, {N_CODES})")
    if int(counts.min()) < 1:
        raise SketchFormatError("quantile state has a bucket of count 0")
    if int(counts.max()) > _MAX_COUNT or float(counts.sum(dtype=np.float64)) > 2.0**62:
        raise SketchFormatError("quantile state counts more than 2^53 values")
    total = int(counts.sum())  # exact in uint64: below 2^62 and some
    if total > _MAX_COUNT:
        raise SketchFormatError(f"quantile state counts {total} values, more than 2^53")
    canonical_steps = packed.width_class(int(steps.max())) if len(steps) else 0
    if count_class != packed.width_class(int(counts.max())) or step_class != canonical_steps:
        raise SketchFormatError("quantile state widths are not the narrowest (not canonical)")
    codes = np.empty(n, dtype=np.int64)
    codes[0] = first
    np.cumsum(steps, out=codes[1:])
    codes[1:] += first
    return codes, counts.astype(np.int64)


def _decode(data: bytes) -> tuple[Ints, Ints] | _Parts:
    """A non-empty state's buckets: codes and counts (version 2), or its parts (version 1)."""
    if len(data) < len(_MAGIC) or data[:3] != _MAGIC[:3]:
        raise SketchFormatError("not a quantile state (bad magic or truncated)")
    if data[3] == _MAGIC[3]:
        return _decode_v2(data)
    if data[3] == _MAGIC_V1[3]:
        return _decode_v1(data)
    raise SketchFormatError(f"quantile state version {data[3]} is not supported")


def _buckets_of_parts(parts: _Parts) -> tuple[Ints, Ints]:
    """The codes (ascending) and counts of the non-empty buckets of `parts`."""
    return _buckets(
        np.asarray(parts.negative.keys, dtype=np.int64),
        np.asarray(parts.negative.counts, dtype=np.float64),
        np.asarray(parts.positive.keys, dtype=np.int64),
        np.asarray(parts.positive.counts, dtype=np.float64),
        (parts.neg_inf, parts.zero, parts.pos_inf, parts.nan),
    )


def _buckets(
    negative_keys: Ints,
    negative_counts: npt.NDArray[np.float64],
    positive_keys: Ints,
    positive_counts: npt.NDArray[np.float64],
    specials: tuple[int, int, int, int],
) -> tuple[Ints, Ints]:
    """Codes (ascending) and counts of the non-empty buckets, from the keys (ascending) and
    counts of the two stores and the counts of -inf, zero, +inf and NaN."""
    neg_inf, zero, pos_inf, nan = specials
    codes = np.concatenate(
        [
            [CODE_NEG_INF],
            _CODE_NEG + (KEY_MAX - negative_keys[::-1]),
            [CODE_ZERO],
            _CODE_POS + (positive_keys - KEY_MIN),
            [CODE_POS_INF, CODE_NAN],
        ]
    ).astype(np.int64)
    counts = np.concatenate(
        [
            np.array([neg_inf], dtype=np.int64),
            negative_counts[::-1].astype(np.int64),
            np.array([zero], dtype=np.int64),
            positive_counts.astype(np.int64),
            np.array([pos_inf, nan], dtype=np.int64),
        ]
    )
    kept = counts > 0
    return codes[kept], counts[kept]


def _new_sketch() -> BaseDDSketch:
    return BaseDDSketch(
        mapping=_MAPPING, store=DenseStore(), negative_store=DenseStore(), zero_count=0.0
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
        _check_quantile(q)
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
        codes, counts = _buckets(
            negative_keys, negative_counts, positive_keys, positive_counts, specials
        )
        return _encode_one(codes, counts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileState:
        """Decode and validate `to_bytes` output (of this version or version 1); raises
        SketchFormatError for anything else."""
        if not data:
            return cls.empty()
        decoded = _decode(data)
        if isinstance(decoded, _Parts):
            return cls._of_parts(decoded)
        codes, counts = decoded
        (parts,) = _grouped_parts(np.zeros(len(codes), dtype=np.int64), codes, counts, 1)
        return cls._of_parts(parts)

    def __repr__(self) -> str:
        return f"QuantileState(count={self.count})"


def _check_quantile(q: float) -> None:
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")


# -- version 1 bytes ---------------------------------------------------------------------------


def _decode_v1(data: bytes) -> _Parts:
    if len(data) < len(_MAGIC_V1) + _SPECIALS.size:
        raise SketchFormatError("not a quantile state (bad magic or truncated)")
    nan, neg_inf, pos_inf = _SPECIALS.unpack_from(data, len(_MAGIC_V1))
    message = pb.DDSketch()
    try:
        message.ParseFromString(data[len(_MAGIC_V1) + _SPECIALS.size :])
    except DecodeError as exc:
        raise SketchFormatError(f"corrupt DDSketch protobuf: {exc}") from None
    mapping = message.mapping
    if (
        mapping.gamma != _MAPPING.gamma
        or mapping.indexOffset != _OFFSET
        or mapping.interpolation != pb.IndexMapping.NONE
    ):
        raise SketchFormatError(
            f"DDSketch mapping differs (need logarithmic, relative accuracy"
            f" {RELATIVE_ACCURACY}, gamma {_MAPPING.gamma!r}, offset 0)"
        )
    parts = _Parts(
        positive=_decode_store(message.positiveValues, "positive"),
        negative=_decode_store(message.negativeValues, "negative"),
        zero=_decode_count(message.zeroCount, "zero count"),
        nan=nan,
        neg_inf=neg_inf,
        pos_inf=pos_inf,
    )
    total = parts.total()
    if total == 0:
        raise SketchFormatError("empty quantile state (the empty state is no bytes)")
    if total > _MAX_COUNT:
        raise SketchFormatError(f"quantile state counts {total} values, more than 2^53")
    return parts


def _decode_count(value: float, what: str) -> int:
    if not (math.isfinite(value) and value >= 0 and value == math.floor(value)):
        raise SketchFormatError(f"DDSketch {what} {value!r} is not a whole number ≥ 0")
    if value > _MAX_COUNT:
        raise SketchFormatError(f"DDSketch {what} {value!r} exceeds 2^53")
    return int(value)


def _decode_store(message_store: Any, what: str) -> _Store:
    """The buckets of one protobuf store, contiguous or sparse (not both), validated."""
    n = len(message_store.contiguousBinCounts)
    if n and len(message_store.binCounts):
        raise SketchFormatError(f"DDSketch {what} store has both contiguous and sparse bins")
    if n:
        low = message_store.contiguousBinIndexOffset
        if n > _KEYS or low < KEY_MIN or low + n - 1 > KEY_MAX:
            raise SketchFormatError(
                f"DDSketch {what} bins [{low}, {low + n - 1}] outside [{KEY_MIN}, {KEY_MAX}]"
            )
        dense = np.fromiter(message_store.contiguousBinCounts, dtype=np.float64, count=n)
        with np.errstate(invalid="ignore"):
            whole = (dense >= 0) & (dense <= _MAX_COUNT) & (dense == np.floor(dense))
        if not bool(whole.all()):
            bad = dense[~whole][0]
            raise SketchFormatError(f"DDSketch {what} bin count {bad!r} is not a whole number ≥ 0")
        if float(dense.sum()) > 2.0**62:  # surely beyond 2^53; below, int64 sums are exact
            raise SketchFormatError(f"DDSketch {what} bins count more than 2^53 values")
        return _Store.of_dense(low, dense)
    # Sparse: validated with numpy, as the dense case above; a Python check per bucket made
    # decoding most of a percentile query's merge.
    sparse = dict(message_store.binCounts)
    keys = np.fromiter(sparse.keys(), dtype=np.int64, count=len(sparse))
    counts = np.fromiter(sparse.values(), dtype=np.float64, count=len(sparse))
    outside = (keys < KEY_MIN) | (keys > KEY_MAX)
    if bool(outside.any()):
        key = int(keys[outside][0])
        raise SketchFormatError(f"DDSketch {what} key {key} outside [{KEY_MIN}, {KEY_MAX}]")
    with np.errstate(invalid="ignore"):
        whole = (counts >= 0) & (counts <= _MAX_COUNT) & (counts == np.floor(counts))
    if not bool(whole.all()):
        bad = float(counts[~whole][0])
        raise SketchFormatError(f"DDSketch {what} bin count {bad!r} is not a whole number ≥ 0")
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    kept = counts > 0
    keys, counts = keys[kept], counts[kept]
    if float(counts.sum()) > 2.0**62:  # surely beyond 2^53; below, int64 sums are exact
        raise SketchFormatError(f"DDSketch {what} bins count more than 2^53 values")
    return _Store(keys.tolist(), counts.tolist(), int(counts.astype(np.int64).sum()))


# -- many groups at once -----------------------------------------------------------------------

_MAGIC_WORD = int.from_bytes(_MAGIC, "little")
_MAGIC_V1_WORD = int.from_bytes(_MAGIC_V1, "little")
_V1, _V2, _BAD = 1, 2, -1


_CODE_BITS = (N_CODES - 1).bit_length()
_CODE_MASK = (1 << _CODE_BITS) - 1


def _decode_many(flat: Flat) -> tuple[Ints, Ints]:
    """The buckets of every state of `flat` as keys (group << _CODE_BITS | code) and counts:
    version 2 states decoded and validated with numpy for all at once (the checks of
    `_decode_v2`), version 1 ones one by one. Raises SketchFormatError for the first malformed
    state, with the message of `_decode` and its place in the batch."""
    buf, starts, lengths = flat.buf, flat.starts, flat.lengths
    kind = np.zeros(len(lengths), dtype=np.int64)  # 0 for empty states
    kind[lengths > 0] = _BAD
    sized = np.flatnonzero(lengths >= len(_MAGIC))
    magic = packed.gather(buf, starts[sized], 4)
    kind[sized[magic == _MAGIC_V1_WORD]] = _V1  # _decode_v1 refuses those too short
    kind[sized[(magic == _MAGIC_WORD) & (lengths[sized] >= _HEADER.size)]] = _V2
    bad = [np.flatnonzero(kind == _BAD)]

    # Headers, all in one gather.
    states = np.flatnonzero(kind == _V2)
    header = buf[starts[states, None] + np.arange(_HEADER.size)].view(_HEADER_DTYPE).reshape(-1)
    n = header["n"].astype(np.int64)
    first = header["first"].astype(np.int64)
    widths = header["widths"].astype(np.int64)
    valid = widths < _WIDTHS_LIMIT
    count_class, step_class = widths & 3, np.where(valid, widths >> 2, 0)
    size = _HEADER.size + (n - 1) * (1 << step_class) + n * (1 << count_class)
    wrong = ~valid | (n == 0) | (size != lengths[states]) | (first >= N_CODES)
    wrong |= (n == 1) & (step_class > 0)  # one bucket and wide steps: not canonical
    bad.append(states[wrong])
    right = ~wrong
    states, n, first = states[right], n[right], first[right]
    count_class, step_class = count_class[right], step_class[right]

    # Steps and counts: the sections of each width in one boolean mask over the joined bytes.
    # The first bucket of each state has no step.
    firsts = np.cumsum(n) - n
    total = int(n.sum())
    steps = np.zeros(total, dtype=np.int64)
    counts = np.zeros(total, dtype=np.int64)
    steps_at = starts[states] + _HEADER.size
    counts_at = steps_at + (n - 1) * (1 << step_class)
    for cls in np.flatnonzero(np.bincount(step_class, minlength=4)).tolist():
        chosen = np.flatnonzero(step_class == cls)
        got = packed.sections(buf, steps_at[chosen], n[chosen] - 1, 1 << cls)
        offsets = np.cumsum(n[chosen] - 1) - (n[chosen] - 1)
        wrong_at = np.flatnonzero((got == 0) | (got >= N_CODES))
        if len(wrong_at):
            bad.append(states[chosen[[packed.first_of(offsets, int(wrong_at[0]))]]])
        if cls:  # canonical: some step needs this width
            small = np.maximum.reduceat(got, offsets) < 1 << (4 << cls)
            bad.append(states[chosen[small]])
        if len(chosen) == len(states):
            later = np.ones(total, dtype=bool)
            later[firsts] = False
        else:
            later = packed.segments(total, firsts[chosen] + 1, n[chosen] - 1)
        steps[later] = np.minimum(got, N_CODES)  # kept below N_CODES (and refused) if above
    for cls in np.flatnonzero(np.bincount(count_class, minlength=4)).tolist():
        chosen = np.flatnonzero(count_class == cls)
        got = packed.sections(buf, counts_at[chosen], n[chosen], 1 << cls)
        offsets = np.cumsum(n[chosen]) - n[chosen]
        wrong_at = np.flatnonzero((got == 0) | (got > _MAX_COUNT))
        if len(wrong_at):
            bad.append(states[chosen[[packed.first_of(offsets, int(wrong_at[0]))]]])
        if cls:
            small = np.maximum.reduceat(got, offsets) < 1 << (4 << cls)
            bad.append(states[chosen[small]])
        clipped = np.minimum(got, _MAX_COUNT + 1).astype(np.int64)
        if len(chosen) == len(states):
            counts = clipped
        else:
            counts[packed.segments(total, firsts[chosen], n[chosen])] = clipped
    if total:
        if bool((count_class == 3).any()):
            # Int sums of up to ~2^17 counts of 2^53 could wrap: floats first.
            bad.append(states[np.add.reduceat(counts.astype(np.float64), firsts) > 2.0**62])
        bad.append(states[np.add.reduceat(counts, firsts) > _MAX_COUNT])
        last = first + np.add.reduceat(steps, firsts)
        bad.append(states[last >= N_CODES])
        # Keys: one cumulative sum over all steps, each state's first step going from the key
        # of the last bucket before to the key of its first bucket.
        high = flat.group_of[states] << _CODE_BITS
        steps[firsts] = high + first - np.concatenate([[0], (high + last)[:-1]])
    keys = np.cumsum(steps)

    first_bad = min((int(b.min()) for b in bad if len(b)), default=len(lengths))
    extra_keys, extra_counts = [keys], [counts]
    for state in np.flatnonzero(kind == _V1).tolist():
        if state > first_bad:
            break
        try:
            parts = _decode_v1(flat.states[state])
        except SketchFormatError as exc:
            raise flat.located(state, exc) from None
        codes, more = _buckets_of_parts(parts)
        extra_keys.append(int(flat.group_of[state]) << _CODE_BITS | codes)
        extra_counts.append(more)
    if first_bad < len(lengths):
        try:
            _decode(flat.states[first_bad])
        except SketchFormatError as exc:
            raise flat.located(first_bad, exc) from None
        raise flat.located(first_bad, SketchFormatError("malformed quantile state"))
    if len(extra_keys) > 1:
        return np.concatenate(extra_keys), np.concatenate(extra_counts)
    return keys, counts


@functools.cache
def _code_values() -> npt.NDArray[np.float64]:
    """The value the library answers for a rank in each bucket, by code."""
    magnitudes = np.array([_MAPPING.value(key) for key in range(KEY_MIN, KEY_MAX + 1)])
    values = np.empty(N_CODES, dtype=np.float64)
    values[CODE_NEG_INF] = -math.inf
    values[_CODE_NEG:CODE_ZERO] = -magnitudes[::-1]
    values[CODE_ZERO] = 0.0
    values[_CODE_POS:CODE_POS_INF] = magnitudes
    values[CODE_POS_INF] = math.inf
    values[CODE_NAN] = math.nan
    return values


def _sorted_buckets(keys: Ints, counts: Ints, n_groups: int) -> tuple[Ints, Ints, Ints]:
    """Groups, codes and counts of the buckets, sorted by key (group, then code; equal codes
    of a group stay, next to each other)."""
    if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        spare = 63 - (n_groups << _CODE_BITS).bit_length()
        if spare > 0 and int(counts.max()) < 1 << spare:
            # Counts ride in the low bits: one sort of plain ints, no argsort.
            ordered = np.sort(keys << spare | counts)
            keys, counts = ordered >> spare, ordered & ((1 << spare) - 1)
        else:
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
    return keys >> _CODE_BITS, keys & _CODE_MASK, counts


def _decode_groups(groups: Sequence[Sequence[bytes]]) -> tuple[Ints, Ints, Ints, int]:
    flat = Flat(groups)
    return *_sorted_buckets(*_decode_many(flat), flat.n_groups), flat.n_groups


def quantiles_of_groups(
    groups: Sequence[Sequence[bytes]], qs: Sequence[float]
) -> list[list[float | None]]:
    """For each group of serialized states, the quantile of each q of their merge: the answers
    of `QuantileState.merge_all(map(QuantileState.from_bytes, group)).quantile(q)` (None for a
    group without values), computed for all groups at once. Raises SketchFormatError for the
    first malformed state, naming its group and place, and ValueError for a q outside [0, 1]."""
    for q in qs:
        _check_quantile(q)
    g, codes, counts, n_groups = _decode_groups(groups)
    return _quantiles(g, codes, counts, n_groups, [float(q) for q in qs], 0)


def _quantiles(
    g: Ints, codes: Ints, counts: Ints, n_groups: int, qs: list[float], first_group: int
) -> list[list[float | None]]:
    """`quantiles_of_groups` from triples sorted by group and code."""
    if float(counts.sum(dtype=np.float64)) > 2.0**62:
        # Cumulative counts would wrap: halves, down to single groups.
        if n_groups == 1:
            raise SketchFormatError(f"group {first_group} holds more than 2^62 values")
        half = n_groups // 2
        cut = int(np.searchsorted(g, half))
        return _quantiles(g[:cut], codes[:cut], counts[:cut], half, qs, first_group) + _quantiles(
            g[cut:] - half, codes[cut:], counts[cut:], n_groups - half, qs, first_group + half
        )
    sizes = np.bincount(g, minlength=n_groups)
    ends = np.cumsum(sizes)
    present = np.flatnonzero(sizes)
    cumulative = np.cumsum(counts)
    end = ends[present]
    start = end - sizes[present]
    base = np.where(start > 0, cumulative[np.maximum(start - 1, 0)], 0) if len(start) else start
    n = cumulative[end - 1] - base if len(end) else end
    # Ranks of each group (row) and q (column): the float operations of QuantileState.quantile.
    last = (n - 1)[:, None]
    rank = np.array(qs, dtype=np.float64)[None, :] * last.astype(np.float64)
    low = np.minimum(np.floor(rank).astype(np.int64), last)
    fraction = rank - low
    # The codes at ranks low and low + 1, all found in one search, a group's next to each other
    # (the search then reads memory in order).
    width = 2 * len(qs)
    targets = (base[:, None] + np.concatenate([low, low + 1], axis=1)).reshape(-1)
    at = _first_above(cumulative, targets, np.repeat(start, width), np.repeat(end, width))
    found = _code_values()[codes[np.minimum(at, len(codes) - 1)]].reshape(len(n), width)
    answer, above = found[:, : len(qs)], found[:, len(qs) :]
    between = (fraction != 0.0) & (low != last)
    f = fraction[between]
    with np.errstate(all="ignore"):  # infinities interpolate to ±inf or NaN, as IEEE says
        answer[between] = answer[between] * (1.0 - f) + above[between] * f
    rows: list[Any] = answer.tolist()
    if len(present) == n_groups:
        return rows
    # A list per group only where there is no row: 100 000s of small lists wake the garbage
    # collector over and over.
    result: list[Any] = [None] * n_groups
    for group, row in zip(present.tolist(), rows, strict=True):
        result[group] = row
    for group in np.flatnonzero(sizes == 0).tolist():
        result[group] = [None] * len(qs)
    return result


def _first_above(cumulative: Ints, targets: Ints, lo: Ints, hi: Ints) -> Ints:
    """For each target, the first index i in [lo, hi) with cumulative[i] > target (hi if none):
    a binary search of all targets at once, each within its own range (a group's buckets,
    which stay in cache where np.searchsorted would cross the whole array each time). Targets
    leave the arrays once found, so a few large groups cost no work for the small ones."""
    position, left = lo.copy(), hi - lo
    active = np.flatnonzero(left > 0)
    at, left, targets = position[active], left[active], targets[active]
    while len(active):
        step = left >> 1
        probe = at + step  # below hi: step < left
        right = cumulative[probe] <= targets
        at = np.where(right, probe + 1, at)
        left = np.where(right, left - step - 1, step)
        done = left == 0
        if bool(done.any()):
            position[active[done]] = at[done]
            going = ~done
            active, at, left, targets = active[going], at[going], left[going], targets[going]
    return position


def merge_quantile_groups(groups: Sequence[Sequence[bytes]]) -> list[bytes]:
    """For each group of serialized states, the bytes of their merge: the answers of
    `QuantileState.merge_all(map(QuantileState.from_bytes, group)).to_bytes()`, computed for
    all groups at once (e.g. to fold many partial states into one). Raises SketchFormatError
    like `quantiles_of_groups`."""
    g, codes, counts, n_groups = _decode_groups(groups)
    if len(g) > 1:
        key = g << _CODE_BITS | codes
        firsts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        g, codes, counts = g[firsts], codes[firsts], np.add.reduceat(counts, firsts)
    return _encode_many(g, codes, counts, n_groups)
