"""Mergeable quantile state: a DDSketch (the `ddsketch` library, LogarithmicMapping, relative
accuracy 1 %) plus counts of NaN and ±infinity, which a DDSketch cannot hold.

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
`min_key`, `max_key`, `count`). Merges and quantiles are the library's (`BaseDDSketch.merge`,
`get_quantile_value`).

Serialized form (`to_bytes`), the empty state being b"":

    b"FHQ" version=1 (1 byte), then uint64 LE counts of NaN, -inf, +inf, then the library's
    protobuf `DDSketch` message (ddsketch.pb): mapping {gamma, indexOffset 0, interpolation
    NONE}, positiveValues / negativeValues, zeroCount. All counts are whole numbers. A store
    holds its non-empty keys either as contiguous bins from the smallest to the largest, or,
    when that is smaller (a few values over a wide range, typical of small groups), in the
    sparse `binCounts` map. Serialization is deterministic: equal states, equal bytes.

The protobuf part is DataDog's cross-language DDSketch format. The Python library's own
`DDSketchProto.from_proto` reads only contiguous stores (and rebuilds the mapping from gamma,
whose multiplier then differs from ours in the last bits), so decoding here is our own and
validates every field: mapping parameters, key range, whole non-negative counts, at most 2^53
values, not empty.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2
from ddsketch.store import DenseStore
from google.protobuf.message import DecodeError

from flakehouse.sketches.errors import SketchFormatError

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
_MAGIC = b"FHQ\x01"
_SPECIALS = struct.Struct("<QQQ")
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

    def is_empty(self) -> bool:
        return not (
            self.positive.keys
            or self.negative.keys
            or self.zero
            or self.nan
            or self.neg_inf
            or self.pos_inf
        )

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
        keep = k > 0
        g, c, k = g[keep], c[keep], k[keep]
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


def _parts_of_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> _Parts:
    """The parts of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat, in any order)."""
    c = np.asarray(codes, dtype=np.int64)
    k = np.asarray(counts, dtype=np.int64)
    if c.shape != k.shape or c.ndim != 1:
        raise ValueError("codes and counts must be 1-d arrays of one length")
    if len(c) and (int(c.min()) < 0 or int(c.max()) >= N_CODES or int(k.min()) < 0):
        raise ValueError("bucket code out of range or negative count")
    # Float weights are exact: counts stay below 2^53.
    dense = np.bincount(c, weights=k.astype(np.float64), minlength=N_CODES)
    present = np.flatnonzero(dense)
    (parts,) = _grouped_parts(
        np.zeros(len(present), dtype=np.int64), present, dense[present].astype(np.int64), 1
    )
    return parts


# Bytes per bucket: 8 for a packed double in a contiguous range (empty buckets included), about
# 15 for a sparse map entry (tags, lengths, a zigzag key and a double).
_CONTIGUOUS_BYTES = 8
_SPARSE_BYTES = 15


def _fill(message_store: Any, store: _Store) -> None:
    if not store.keys:
        return
    span = store.keys[-1] - store.keys[0] + 1
    if _SPARSE_BYTES * len(store.keys) < _CONTIGUOUS_BYTES * span:
        # Few buckets over a wide range (e.g. a group of a few values): the sparse map.
        bins = message_store.binCounts
        for key, count in zip(store.keys, store.counts, strict=True):
            bins[key] = count  # faster than update(), which loops in Python anyway
    else:
        message_store.contiguousBinIndexOffset = store.keys[0]
        message_store.contiguousBinCounts.extend(store.contiguous())


def _encode(parts: _Parts) -> bytes:
    if parts.is_empty():
        return b""
    message = pb.DDSketch()
    _fill(message.positiveValues, parts.positive)
    _fill(message.negativeValues, parts.negative)
    message.zeroCount = float(parts.zero)
    payload: bytes = message.SerializeToString(deterministic=True)
    # The mapping is field 1, serialized first: prepending its bytes gives the bytes of the
    # whole message.
    return _header(parts) + _MAPPING_FIELD + payload


def _header(parts: _Parts) -> bytes:
    return _MAGIC + _SPECIALS.pack(parts.nan, parts.neg_inf, parts.pos_inf)


_MAPPING_FIELD: bytes = pb.DDSketch(
    mapping=pb.IndexMapping(
        gamma=_MAPPING.gamma, indexOffset=_OFFSET, interpolation=pb.IndexMapping.NONE
    )
).SerializeToString(deterministic=True)


def encode_counts(codes: npt.ArrayLike, counts: npt.ArrayLike) -> bytes:
    """`to_bytes()` of the state holding counts[i] values of bucket code codes[i] (codes may
    repeat), without building the library's objects."""
    return _encode(_parts_of_counts(codes, counts))


def encode_grouped(
    groups: npt.ArrayLike, codes: npt.ArrayLike, counts: npt.ArrayLike, n_groups: int
) -> list[bytes]:
    """`to_bytes()` of the state of each group 0..n_groups-1, from (group, code, count) triples
    sorted by group and code without repeats (storage nodes serialize many groups this way);
    b"" for a group without triples."""
    return [_encode(parts) for parts in _grouped_parts(groups, codes, counts, n_groups)]


def _new_sketch() -> BaseDDSketch:
    return BaseDDSketch(
        mapping=_MAPPING, store=DenseStore(), negative_store=DenseStore(), zero_count=0.0
    )


def _store_of_library(store: DenseStore) -> _Store:
    if store.count == 0:
        return _Store([], [], 0)
    low, high = int(store.min_key), int(store.max_key)
    dense = store.bins[low - store.offset : high - store.offset + 1]
    return _Store.of_dense(low, np.asarray(dense, dtype=np.float64))


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
        counts = np.bincount(bucket_codes(values), minlength=N_CODES)
        codes = np.flatnonzero(counts)
        return cls.from_counts(codes, counts[codes])

    @classmethod
    def from_counts(cls, codes: npt.ArrayLike, counts: npt.ArrayLike) -> QuantileState:
        """The state holding counts[i] values of bucket code codes[i] (`bucket_codes`)."""
        parts = _parts_of_counts(codes, counts)
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
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q}")
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
        parts = _Parts(
            positive=_store_of_library(self._sketch._store),
            negative=_store_of_library(self._sketch._negative_store),
            zero=int(self._sketch._zero_count),
            nan=self._nan,
            neg_inf=self._neg_inf,
            pos_inf=self._pos_inf,
        )
        return _encode(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileState:
        """Decode and validate `to_bytes` output; raises SketchFormatError for anything else."""
        if not data:
            return cls.empty()
        if len(data) < len(_MAGIC) + _SPECIALS.size or data[:3] != _MAGIC[:3]:
            raise SketchFormatError("not a quantile state (bad magic or truncated)")
        if data[3] != _MAGIC[3]:
            raise SketchFormatError(f"quantile state version {data[3]} is not supported")
        nan, neg_inf, pos_inf = _SPECIALS.unpack_from(data, len(_MAGIC))
        message = pb.DDSketch()
        try:
            message.ParseFromString(data[len(_MAGIC) + _SPECIALS.size :])
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
        return cls(parts.sketch(), nan, neg_inf, pos_inf)

    def __repr__(self) -> str:
        return f"QuantileState(count={self.count})"


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
