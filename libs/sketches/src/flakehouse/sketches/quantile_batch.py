"""Batch finalize of quantile states for the query service: the quantiles, or the merged bytes,
of 100 000s of groups of states at once, equal to QuantileState's answers (FORMAT.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flakehouse.sketches.errors import SketchFormatError
from flakehouse.sketches.packed import Flat, Ints
from flakehouse.sketches.quantile_buckets import CODE_BITS, CODE_MASK, code_values
from flakehouse.sketches.quantile_codec import decode_many, encode_many
from flakehouse.sketches.quantile_state import check_quantile


def _sorted_buckets(keys: Ints, counts: Ints, n_groups: int) -> tuple[Ints, Ints, Ints]:
    """Groups, codes and counts of the buckets, sorted by key (group, then code; equal codes
    of a group stay, next to each other)."""
    if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        spare = 63 - (n_groups << CODE_BITS).bit_length()
        if spare > 0 and int(counts.max()) < 1 << spare:
            # Counts ride in the low bits: one sort of plain ints, no argsort.
            ordered = np.sort(keys << spare | counts)
            keys, counts = ordered >> spare, ordered & ((1 << spare) - 1)
        else:
            order = np.argsort(keys, kind="stable")
            keys, counts = keys[order], counts[order]
    return keys >> CODE_BITS, keys & CODE_MASK, counts


def _decode_groups(groups: Sequence[Sequence[bytes]]) -> tuple[Ints, Ints, Ints, int]:
    flat = Flat(groups)
    return *_sorted_buckets(*decode_many(flat), flat.n_groups), flat.n_groups


def quantiles_of_groups(
    groups: Sequence[Sequence[bytes]], qs: Sequence[float]
) -> list[list[float | None]]:
    """For each group of serialized states, the quantile of each q of their merge: the answers
    of `QuantileState.merge_all(map(QuantileState.from_bytes, group)).quantile(q)` (None for a
    group without values), computed for all groups at once. Raises SketchFormatError for the
    first malformed state, naming its group and place, and ValueError for a q outside [0, 1]."""
    for q in qs:
        check_quantile(q)
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
    found = code_values()[codes[np.minimum(at, len(codes) - 1)]].reshape(len(n), width)
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
        key = g << CODE_BITS | codes
        firsts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
        g, codes, counts = g[firsts], codes[firsts], np.add.reduceat(counts, firsts)
    return encode_many(g, codes, counts, n_groups)
