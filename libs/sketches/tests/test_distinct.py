"""Count distinct: typed hashing, exact mode and the switch to HLL, accuracy against exact
answers, merge order, round trips and the rejection of bad bytes."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import struct
from collections.abc import Callable

import datasketches
import numpy as np
import pytest

from flakehouse.sketches import (
    EXACT_LIMIT,
    LG_K,
    DistinctState,
    SketchFormatError,
    hash_bools,
    hash_floats,
    hash_ints,
    hash_scalars,
    hash_strings,
)


def ints(start: int, stop: int) -> DistinctState:
    return DistinctState.from_hashes(hash_ints(np.arange(start, stop)))


# -- typed hashes ------------------------------------------------------------------------------


M64 = 2**64 - 1


def fmix64(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    return x ^ (x >> 33)


def reference_hash(value: object) -> int:
    """The documented canonical encoding, one value at a time in pure Python."""
    if isinstance(value, str):
        digest = hashlib.blake2b(value.encode(), digest_size=8, person=b"flakehouse/str")
        return int.from_bytes(digest.digest(), "little")
    if isinstance(value, bool):
        bits, salt = int(value), 0xA4093822299F31D0
    elif isinstance(value, int):
        bits, salt = value & M64, 0x243F6A8885A308D3
    else:
        assert isinstance(value, float)
        number = 0.0 if value == 0 else value
        bits = (
            0x7FF8000000000000
            if math.isnan(number)
            else struct.unpack("<Q", struct.pack("<d", number))[0]
        )
        salt = 0x13198A2E03707344
    return fmix64(fmix64(bits) ^ salt)


def test_hashes_follow_the_documented_encoding() -> None:
    values: list[object] = [0, 1, -1, 2**63 - 1, -(2**63), 0.0, -0.0, 1.0, -2.5, math.inf]
    values += [math.nan, True, False, "", "passed", "é✓"]
    assert hash_scalars(values).tolist() == [reference_hash(v) for v in values]


def test_hashes_are_pinned() -> None:
    # Storage nodes and query services of different versions must agree on these: a change
    # here is a format change.
    assert [hex(h) for h in hash_ints([0, 1, -1]).tolist()] == [
        "0x7acdbb98b1344213",
        "0x1b840f7bc44fa0e7",
        "0xcb021c4c4be4e62b",
    ]
    assert [hex(h) for h in hash_floats([1.0]).tolist()] == ["0x60ea9f556fb0c57c"]
    assert [hex(h) for h in hash_bools([True]).tolist()] == ["0xbea90ca20bd989eb"]
    assert [hex(h) for h in hash_strings(["passed"]).tolist()] == ["0xb407158b9b24c3f5"]


def test_values_of_different_types_are_different_values() -> None:
    state = DistinctState.from_values([1, 1.0, "1", True, 1, 1.0, "1", True, None])
    assert state.estimate() == 4
    assert DistinctState.from_values([0, 0.0, False, "0", "", None]).estimate() == 5
    assert DistinctState.from_values([None, None]).estimate() == 0


def test_float_zero_signs_and_nans_are_one_value_each() -> None:
    # Like the GROUP BY keys and DuckDB's count(DISTINCT).
    nan_bits = np.array([0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000000], np.uint64)
    nans = nan_bits.view(np.float64)
    assert hash_floats([0.0]).tolist() == hash_floats([-0.0]).tolist()
    assert len(set(hash_floats(nans).tolist())) == 1
    assert DistinctState.from_values([0.0, -0.0, *nans.tolist(), 1.5]).estimate() == 3


def test_numbers_never_collide_within_their_type() -> None:
    values = np.arange(-500_000, 500_000, dtype=np.int64) * 7919
    assert len(np.unique(hash_ints(values))) == len(values)
    floats = np.linspace(-1e6, 1e6, 1_000_000)
    assert len(np.unique(hash_floats(floats))) == len(floats)
    assert len({*hash_bools([True, False]).tolist()}) == 2


def test_scalar_hashes_match_the_column_hashes() -> None:
    got = hash_scalars([3, 2.5, "x", False, None])
    want = np.concatenate(
        [hash_ints([3]), hash_floats([2.5]), hash_bools([False]), hash_strings(["x"])]
    )
    assert got.tolist() == want.tolist()
    with pytest.raises(TypeError):
        hash_scalars([b"bytes"])


# -- exact mode and the switch to HLL ----------------------------------------------------------


def test_exact_up_to_the_limit_then_hll() -> None:
    at_limit = ints(0, EXACT_LIMIT)
    assert at_limit.is_exact and at_limit.estimate() == EXACT_LIMIT
    over = ints(0, EXACT_LIMIT + 1)
    assert not over.is_exact
    # Just above the limit the HLL sketch is still in its coupon mode: nearly exact.
    assert abs(over.estimate() - (EXACT_LIMIT + 1)) <= 2


def test_merging_exact_states_stays_exact_while_the_union_is_small() -> None:
    half = EXACT_LIMIT // 2
    a, b = ints(0, half + 100), ints(half - 100, EXACT_LIMIT)  # overlapping
    merged = a.merge(b)
    assert merged.is_exact and merged.estimate() == EXACT_LIMIT
    bigger = merged.merge(ints(EXACT_LIMIT, EXACT_LIMIT + 10))
    assert not bigger.is_exact
    assert abs(bigger.estimate() - (EXACT_LIMIT + 10)) <= 2


def test_exact_plus_hll_and_hll_plus_hll() -> None:
    big = ints(0, 50_000)
    small = ints(49_000, 51_000)  # exact, half new
    other = ints(40_000, 100_000)
    assert small.is_exact and not big.is_exact
    # Whatever the path, the registers are those of the union of the values.
    whole = ints(0, 100_000)
    for merged in (
        big.merge(small).merge(other),
        small.merge(big).merge(other),
        DistinctState.merge_all([other, small, big]),
    ):
        assert not merged.is_exact
        assert merged.estimate() == whole.estimate()
        assert merged.to_bytes() == whole.to_bytes()
    assert abs(big.merge(small).estimate() / 51_000 - 1) < 0.02


def test_merge_with_empty_states() -> None:
    empty = DistinctState.empty()
    assert empty.estimate() == 0 and empty.to_bytes() == b""
    for state in (ints(0, 10), ints(0, 10_000)):
        assert state.merge(empty).to_bytes() == state.to_bytes()
        assert empty.merge(state).estimate() == state.estimate()
    assert DistinctState.merge_all([]).estimate() == 0


# -- accuracy ----------------------------------------------------------------------------------


def _partitioned(values: list[object], parts: int, seed: int) -> DistinctState:
    """Values dealt at random to `parts` partial states, then merged, as storage and query do."""
    rng = random.Random(seed)
    buckets: list[list[object]] = [[] for _ in range(parts)]
    for value in values:
        buckets[rng.randrange(parts)].append(value)
    return DistinctState.merge_all(DistinctState.from_values(b) for b in buckets)


@pytest.mark.parametrize("distinct", [10_000, 30_000, 100_000, 300_000, 1_000_000])
def test_int_and_string_accuracy_within_2_percent(distinct: int) -> None:
    rng = np.random.default_rng(distinct)
    # Every value at least once, many twice or more, in random order and across partitions.
    base = rng.choice(2**62, size=distinct, replace=False)
    repeated = np.concatenate([base, rng.choice(base, size=distinct // 2)])
    rng.shuffle(repeated)
    chunks = np.array_split(repeated, 7)
    state = DistinctState.merge_all(DistinctState.from_hashes(hash_ints(c)) for c in chunks)
    error = state.estimate() / distinct - 1
    assert abs(error) < 0.02, error
    strings = DistinctState.from_hashes(hash_strings(f"test_{x}" for x in base.tolist()))
    error = strings.estimate() / distinct - 1
    assert abs(error) < 0.02, error


def test_mixed_types_accuracy_across_partitions() -> None:
    n = 20_000
    values: list[object] = [*range(n), *(float(i) for i in range(n)), *map(str, range(n))]
    values += [True, False, None]
    state = _partitioned(values * 2, parts=5, seed=3)
    assert abs(state.estimate() / (3 * n + 2) - 1) < 0.02


# -- merge order -------------------------------------------------------------------------------


def test_merge_is_order_independent() -> None:
    states = [ints(0, 3_000), ints(1_000, 9_000), ints(5_000, 60_000), ints(59_000, 59_500)]
    results = set()
    for order in itertools.permutations(states):
        left = order[0].merge(order[1]).merge(order[2]).merge(order[3])
        right = order[0].merge(order[1].merge(order[2].merge(order[3])))
        pairs = order[0].merge(order[1]).merge(order[2].merge(order[3]))
        for merged in (left, right, pairs, DistinctState.merge_all(order)):
            results.add((merged.estimate(), merged.to_bytes()))
    assert len(results) == 1


def test_merge_order_of_coupon_mode_states_gives_one_estimate() -> None:
    # Totals just above the exact limit: sketches in coupon (set) mode, whose bytes may list
    # coupons in another order, but whose estimate must not move.
    states = [ints(0, 2_000), ints(1_500, 4_000), ints(3_900, 5_000)]
    estimates = {merged_in_order(order).estimate() for order in itertools.permutations(states)}
    assert len(estimates) == 1 and abs(estimates.pop() - 5_000) <= 3


def merged_in_order(states: tuple[DistinctState, ...]) -> DistinctState:
    merged = states[0]
    for state in states[1:]:
        merged = merged.merge(state)
    return merged


# -- bytes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 7, EXACT_LIMIT, EXACT_LIMIT + 1, 6_000, 200_000])
def test_round_trip(n: int) -> None:
    state = ints(0, n)
    data = state.to_bytes()
    again = DistinctState.from_bytes(data)
    assert again.estimate() == state.estimate()
    assert again.is_exact == state.is_exact
    if n <= EXACT_LIMIT or n > 3 * 2 ** (LG_K - 3):
        assert again.to_bytes() == data
    else:
        # Coupon mode lists coupons in hash-table order, which decoding may change.
        assert DistinctState.from_bytes(again.to_bytes()).estimate() == state.estimate()
    if n:
        assert again.merge(ints(n, n + 1)).estimate() >= state.estimate()


def test_exact_state_is_8_bytes_a_value_and_hll_is_bounded() -> None:
    assert len(ints(0, 100).to_bytes()) == 5 + 800
    assert len(ints(0, 1_000_000).to_bytes()) < 33_000  # 2^16 4-bit registers + header


def _hll_bytes(lg_k: int, target: object, n: int = 10_000) -> bytes:
    sketch = datasketches.hll_sketch(lg_k, target)
    for i in range(n):
        sketch.update(i)
    return b"FHD\x01\x01" + bytes(sketch.serialize_compact())


def _exact(hashes: list[int]) -> bytes:
    return b"FHD\x01\x00" + np.array(hashes, dtype="<u8").tobytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"x", "bad magic"),
        (b"FHQ\x01\x00" + bytes(8), "bad magic"),
        (b"FHD\x02\x00" + bytes(8), "version 2"),
        (b"FHD\x01\x07" + bytes(8), "unknown count-distinct mode 7"),
        (b"FHD\x01\x00", r"0 values"),
        (b"FHD\x01\x00" + bytes(12), "not a multiple of 8"),
        (_exact([3, 2]), "not strictly ascending"),
        (_exact([2, 2]), "not strictly ascending"),
        (_exact(list(range(EXACT_LIMIT + 1))), f"{EXACT_LIMIT + 1} values"),
        (b"FHD\x01\x01" + bytes(3), "truncated"),
        (b"FHD\x01\x01" + bytes(40), "not a DataSketches HLL"),
        (_hll_bytes(12, datasketches.tgt_hll_type.HLL_4), "parameters differ"),
        (_hll_bytes(LG_K, datasketches.tgt_hll_type.HLL_8), "parameters differ"),
        (_hll_bytes(LG_K, datasketches.tgt_hll_type.HLL_4)[:-100], "corrupt HLL"),
    ],
)
def test_bad_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(SketchFormatError, match=message):
        DistinctState.from_bytes(data)


def test_corrupted_bytes_never_raise_anything_else(corrupt: Callable[..., bytes]) -> None:
    rng = random.Random(11)
    samples = [ints(0, 50).to_bytes(), ints(0, 5_000).to_bytes(), ints(0, 100_000).to_bytes()]
    rejected = 0
    for _ in range(3_000):
        data = corrupt(rng, rng.choice(samples), 16)
        try:
            DistinctState.from_bytes(bytes(data)).estimate()
        except SketchFormatError:
            rejected += 1
    assert rejected > 1_500
