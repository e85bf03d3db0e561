"""The decoder of version 1 quantile states, which releases before version 2 write (FORMAT.md).
REMOVAL of version 1: this whole module, when FORMAT.md ("Removing the version 1 decoder") says."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
from ddsketch.pb import ddsketch_pb2
from google.protobuf.message import DecodeError

from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.packed import Ints
from flakehouse.sketches.quantile_buckets import (
    KEY_MAX,
    KEY_MIN,
    KEYS,
    MAPPING,
    MAX_COUNT,
    OFFSET,
    RELATIVE_ACCURACY,
    buckets_of_stores,
)

# The generated protobuf module has no stubs that mypy can use.
pb: Any = ddsketch_pb2
MAGIC_V1 = b"FHQ\x01"
_SPECIALS = struct.Struct("<QQQ")


def decode_v1(data: bytes) -> tuple[Ints, Ints]:
    """The codes (ascending) and counts of the non-empty buckets of a version 1 state,
    validated; raises SketchFormatError otherwise."""
    if len(data) < len(MAGIC_V1) + _SPECIALS.size:
        raise SketchFormatError("not a quantile state (bad magic or truncated)")
    nan, neg_inf, pos_inf = _SPECIALS.unpack_from(data, len(MAGIC_V1))
    message = pb.DDSketch()
    try:
        message.ParseFromString(data[len(MAGIC_V1) + _SPECIALS.size :])
    except DecodeError as exc:
        raise SketchFormatError(f"corrupt DDSketch protobuf: {exc}") from None
    mapping = message.mapping
    if (
        mapping.gamma != MAPPING.gamma
        or mapping.indexOffset != OFFSET
        or mapping.interpolation != pb.IndexMapping.NONE
    ):
        raise SketchFormatError(
            f"DDSketch mapping differs (need logarithmic, relative accuracy"
            f" {RELATIVE_ACCURACY}, gamma {MAPPING.gamma!r}, offset 0)"
        )
    positive_keys, positive_counts = _decode_store(message.positiveValues, "positive")
    negative_keys, negative_counts = _decode_store(message.negativeValues, "negative")
    zero = _decode_count(message.zeroCount, "zero count")
    # Each store's counts sum below 2^62 (checked), so their int64 sums are exact.
    positive = int(positive_counts.astype(np.int64).sum())
    negative = int(negative_counts.astype(np.int64).sum())
    total = positive + negative + zero + nan + neg_inf + pos_inf
    if total == 0:
        raise SketchFormatError("empty quantile state (the empty state is no bytes)")
    if total > MAX_COUNT:
        raise SketchFormatError(f"quantile state counts {total} values, more than 2^53")
    specials = (neg_inf, zero, pos_inf, nan)
    return buckets_of_stores(
        negative_keys, negative_counts, positive_keys, positive_counts, specials
    )


def _decode_count(value: float, what: str) -> int:
    if not (math.isfinite(value) and value >= 0 and value == math.floor(value)):
        raise SketchFormatError(f"DDSketch {what} {value!r} is not a whole number ≥ 0")
    if value > MAX_COUNT:
        raise SketchFormatError(f"DDSketch {what} {value!r} exceeds 2^53")
    return int(value)


def _decode_store(message_store: Any, what: str) -> tuple[Ints, npt.NDArray[np.float64]]:
    """The keys (ascending) and counts (whole, > 0, summing below 2^62) of the non-empty
    buckets of one protobuf store, contiguous or sparse (not both), validated."""
    n = len(message_store.contiguousBinCounts)
    if n and len(message_store.binCounts):
        raise SketchFormatError(f"DDSketch {what} store has both contiguous and sparse bins")
    if n:
        low = message_store.contiguousBinIndexOffset
        if n > KEYS or low < KEY_MIN or low + n - 1 > KEY_MAX:
            raise SketchFormatError(
                f"DDSketch {what} bins [{low}, {low + n - 1}] outside [{KEY_MIN}, {KEY_MAX}]"
            )
        dense = np.fromiter(message_store.contiguousBinCounts, dtype=np.float64, count=n)
        with np.errstate(invalid="ignore"):
            whole = (dense >= 0) & (dense <= MAX_COUNT) & (dense == np.floor(dense))
        if not bool(whole.all()):
            bad = dense[~whole][0]
            raise SketchFormatError(f"DDSketch {what} bin count {bad!r} is not a whole number ≥ 0")
        if float(dense.sum()) > 2.0**62:  # surely beyond 2^53; below, int64 sums are exact
            raise SketchFormatError(f"DDSketch {what} bins count more than 2^53 values")
        nonzero = np.flatnonzero(dense)
        return nonzero + low, dense[nonzero]
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
        whole = (counts >= 0) & (counts <= MAX_COUNT) & (counts == np.floor(counts))
    if not bool(whole.all()):
        bad = float(counts[~whole][0])
        raise SketchFormatError(f"DDSketch {what} bin count {bad!r} is not a whole number ≥ 0")
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    kept = counts > 0
    keys, counts = keys[kept], counts[kept]
    if float(counts.sum()) > 2.0**62:  # surely beyond 2^53; below, int64 sums are exact
        raise SketchFormatError(f"DDSketch {what} bins count more than 2^53 values")
    return keys, counts
