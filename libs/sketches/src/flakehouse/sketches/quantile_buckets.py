"""The buckets of a quantile state: the DDSketch mapping (relative accuracy 1 %), one code per
bucket ordered like the values it holds, and checks of (code, count) input. See FORMAT.md."""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from ddsketch.mapping import LogarithmicMapping

from flakehouse.sketches.packed import Ints

RELATIVE_ACCURACY = 0.01
"""DDSketch's alpha: every value it returns is within 1 % of the value of that rank."""

# Keys are computed with numpy from the library's own mapping parameters (the private
# `_multiplier` and `_offset` of its LogarithmicMapping), with the formula of
# `LogarithmicMapping.key`, so that a vectorized build puts each value in the library's bucket.
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_LN2 = math.log(2)
_MULTIPLIER = float(MAPPING._multiplier)
OFFSET = float(MAPPING._offset)
_MIN_POSSIBLE = float(MAPPING.min_possible)
_MAX_POSSIBLE = float(MAPPING.max_possible)
KEY_MIN = int(MAPPING.key(_MIN_POSSIBLE))
KEY_MAX = int(MAPPING.key(_MAX_POSSIBLE))
KEYS = KEY_MAX - KEY_MIN + 1

# Bucket codes: one small int per bucket, ordered like the values they hold.
CODE_NEG_INF = 0
CODE_NEG = 1  # negative key k → CODE_NEG + (KEY_MAX - k)
CODE_ZERO = CODE_NEG + KEYS
CODE_POS = CODE_ZERO + 1  # positive key k → CODE_POS + (k - KEY_MIN)
CODE_POS_INF = CODE_POS + KEYS
CODE_NAN = CODE_POS_INF + 1
N_CODES = CODE_NAN + 1
"""Codes are in [0, N_CODES)."""

CODE_BITS = (N_CODES - 1).bit_length()
"""Bits of a code: the batch functions sort buckets by group << CODE_BITS | code."""
CODE_MASK = (1 << CODE_BITS) - 1

MAX_COUNT = 2**53
"""Most values in a state: counts are doubles in the library and its protobuf, exact below this."""


def _keys(magnitudes: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """LogarithmicMapping.key for positive finite values, vectorized: the library computes
    int(ceil(math.log(x, 2) * multiplier) + offset), and math.log(x, 2) is log(x) / log(2)."""
    keys = np.ceil(np.log(magnitudes) / _LN2 * _MULTIPLIER) + OFFSET
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
            keyed += OFFSET
            codes = keyed.astype(np.int64)
        codes += CODE_POS - KEY_MIN
        codes[x <= _MIN_POSSIBLE] = CODE_ZERO
        return codes
    codes = np.full(len(x), CODE_ZERO, dtype=np.int64)
    magnitude = np.abs(x)
    finite = np.isfinite(x)
    keyed = finite & (magnitude > _MIN_POSSIBLE)
    keys = _keys(np.minimum(magnitude[keyed], _MAX_POSSIBLE))
    negative = x[keyed] < 0
    codes[keyed] = np.where(negative, CODE_NEG + (KEY_MAX - keys), CODE_POS + (keys - KEY_MIN))
    codes[np.isnan(x)] = CODE_NAN
    infinite = ~finite & ~np.isnan(x)
    codes[infinite & (x > 0)] = CODE_POS_INF
    codes[infinite & (x < 0)] = CODE_NEG_INF
    return codes


@functools.cache
def code_values() -> npt.NDArray[np.float64]:
    """The value the library answers for a rank in each bucket, by code."""
    magnitudes = np.array([MAPPING.value(key) for key in range(KEY_MIN, KEY_MAX + 1)])
    values = np.empty(N_CODES, dtype=np.float64)
    values[CODE_NEG_INF] = -math.inf
    values[CODE_NEG:CODE_ZERO] = -magnitudes[::-1]
    values[CODE_ZERO] = 0.0
    values[CODE_POS:CODE_POS_INF] = magnitudes
    values[CODE_POS_INF] = math.inf
    values[CODE_NAN] = math.nan
    return values


def buckets_of_stores(
    negative_keys: Ints,
    negative_counts: npt.NDArray[np.float64],
    positive_keys: Ints,
    positive_counts: npt.NDArray[np.float64],
    specials: tuple[int, int, int, int],
) -> tuple[Ints, Ints]:
    """Codes (ascending) and counts of the non-empty buckets, from the keys (ascending) and
    counts of the library's two stores and the counts of -inf, zero, +inf and NaN."""
    neg_inf, zero, pos_inf, nan = specials
    codes = np.concatenate(
        [
            [CODE_NEG_INF],
            CODE_NEG + (KEY_MAX - negative_keys[::-1]),
            [CODE_ZERO],
            CODE_POS + (positive_keys - KEY_MIN),
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


def summed(codes: npt.ArrayLike, counts: npt.ArrayLike) -> tuple[Ints, Ints]:
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


def checked_triples(
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
