"""The batch finalizers against the per-state API they stand for, on seeded random groups:
`quantiles_of_groups` and `merge_quantile_groups` against QuantileState.merge_all(...).quantile
and .to_bytes, `distinct_of_groups` against DistinctState.merge_all(...).estimate; and their
refusal of malformed states anywhere in a batch."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from flakehouse.sketches import (
    EXACT_LIMIT,
    DistinctState,
    QuantileState,
    SketchFormatError,
    distinct_of_groups,
    hash_ints,
    hash_strings,
    merge_quantile_groups,
    quantiles_of_groups,
)

QS = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0, 1 / 3, 0.123456789]
Groups = list[list[bytes]]


def bits(rows: Iterable[Sequence[float | None]]) -> list[list[bytes | None]]:
    """Answers compared bit for bit (NaN equals NaN of the same bits)."""
    return [[None if a is None else struct.pack("<d", a) for a in row] for row in rows]


def per_state_quantiles(groups: Groups, qs: Sequence[float]) -> list[list[float | None]]:
    answers = []
    for group in groups:
        merged = QuantileState.merge_all([QuantileState.from_bytes(data) for data in group])
        answers.append([merged.quantile(q) for q in qs])
    return answers


def random_values(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """1-30 values (or 1 000s, or one, or none) mixing durations, negatives, zeros, ints, tiny
    and huge magnitudes, NaN and infinities."""
    shape = rng.random()
    if shape < 0.1:
        return np.zeros(0)
    size = 1 if shape < 0.25 else int(rng.integers(1_000, 5_000)) if shape < 0.28 else 0
    size = size or int(rng.integers(1, 31))
    # Extreme magnitudes in a few states only: they make the library's stores span every key,
    # which the per-state merges walk in Python.
    extremes = 0.05 if rng.random() < 0.1 else 0.0
    p = np.array([0.4, 0.15, 0.1, 0.12, 0.05, 0.05, 0.05, extremes, 0.04])
    kind = rng.choice(9, size=size, p=p / p.sum())
    lognormal = rng.lognormal(0.0, 3.0, size)
    choices = [
        lognormal,
        -lognormal,
        np.zeros(size),
        rng.integers(-5, 100, size).astype(np.float64),
        np.full(size, math.nan),
        np.full(size, math.inf),
        np.full(size, -math.inf),
        rng.choice([5e-324, -1e-310, 1.7e308, -1.79e308], size),
        np.full(size, 2.5),  # repeated values
    ]
    return np.choose(kind, choices)


def random_groups(seed: int, n_groups: int, v1: Callable[..., bytes] | None = None) -> Groups:
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_groups):
        states = []
        for _ in range(int(rng.choice([0, 1, 2, 3, 8], p=[0.05, 0.25, 0.2, 0.2, 0.3]))):
            data = QuantileState.from_values(random_values(rng)).to_bytes()
            if v1 is not None and rng.random() < 0.2:
                data = v1(data, sparse=bool(rng.random() < 0.5))
            states.append(data)
        groups.append(states)
    return groups


# -- quantiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_of_groups_are_the_per_state_answers(seed: int) -> None:
    groups = random_groups(seed, 250)
    assert any(not g for g in groups) and any(g and not any(g) for g in groups)
    got = quantiles_of_groups(groups, QS)
    assert bits(got) == bits(per_state_quantiles(groups, QS))
    assert [row for row in got if row[0] is None] == [[None] * len(QS)] * sum(
        1 for g in groups if not any(g)
    )


def test_quantiles_of_groups_read_version_1_states_too(v1: Callable[..., bytes]) -> None:
    groups = random_groups(10, 300, v1)
    assert any(data.startswith(b"FHQ\x01") for group in groups for data in group)
    assert bits(quantiles_of_groups(groups, QS)) == bits(per_state_quantiles(groups, QS))
    want = [QuantileState.merge_all(map(QuantileState.from_bytes, g)).to_bytes() for g in groups]
    assert merge_quantile_groups(groups) == want


def test_every_quantile_of_a_few_groups() -> None:
    # Random qs, every rank: the interpolation is the same float arithmetic.
    groups = random_groups(20, 40)
    qs = [*random.Random(3).choices([i / 1000 for i in range(1001)], k=200), 0.5 + 1e-12]
    assert bits(quantiles_of_groups(groups, qs)) == bits(per_state_quantiles(groups, qs))


def test_merge_quantile_groups_gives_the_bytes_of_the_merged_state() -> None:
    groups = random_groups(30, 300)
    want = [QuantileState.merge_all(map(QuantileState.from_bytes, g)).to_bytes() for g in groups]
    merged = merge_quantile_groups(groups)
    assert merged == want
    # Merging merged states again changes nothing.
    assert bits(quantiles_of_groups([[m] for m in merged], QS)) == bits(
        quantiles_of_groups(groups, QS)
    )


def test_special_groups() -> None:
    one = QuantileState.from_values([3.0]).to_bytes()
    assert quantiles_of_groups([], QS) == []
    assert quantiles_of_groups([[], [b""], [b"", b""]], [0.5]) == [[None], [None], [None]]
    assert quantiles_of_groups([[one], [], [one, one]], []) == [[], [], []]
    assert merge_quantile_groups([[], [b""], [one, b""]]) == [b"", b"", one]
    nan_inf = QuantileState.from_values([-math.inf, math.inf]).to_bytes()
    ((answer,),) = quantiles_of_groups([[nan_inf]], [0.5])
    assert answer is not None and math.isnan(answer)
    for q in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match="quantile must be in"):
            quantiles_of_groups([[one]], [0.5, q])


def test_huge_counts() -> None:
    # 2^53 values a state (the most a state holds): groups of 2^54 values are answered, a group
    # of more than 2^62 values is refused, and batches beyond 2^62 in all are cut in halves.
    top = QuantileState.from_counts([1000], [2**53]).to_bytes()
    other = QuantileState.from_counts([2000, 3000], [2**52, 2**52]).to_bytes()
    ((a, b),) = quantiles_of_groups([[top, other]], [0.25, 1.0])
    assert a is not None and b is not None and a < b
    merged = QuantileState.merge_all([QuantileState.from_bytes(d) for d in (top, other)])
    assert merge_quantile_groups([[top, other]]) == [merged.to_bytes()]
    assert merged.to_bytes()[12] & 3 == 3  # 8-byte counts
    big = [top] * 300
    assert quantiles_of_groups([big, [other], big], [0.5]) == quantiles_of_groups(
        [big], [0.5]
    ) + quantiles_of_groups([[other]], [0.5]) + quantiles_of_groups([big], [0.5])
    with pytest.raises(SketchFormatError, match="group 1 holds more than 2\\^62 values"):
        quantiles_of_groups([[other], [top] * 600], [0.5])


def test_a_malformed_state_is_named() -> None:
    good = QuantileState.from_values([1.0, 2.0]).to_bytes()
    cases = [
        (b"junk", "bad magic"),
        (good[:-1], "15 bytes, not the 16 of its 2 buckets"),
        (b"FHQ\x01" + bytes(24), "mapping differs"),  # version 1
        (b"FHQ\x09" + bytes(30), "version 9"),
        (DistinctState.from_values([1]).to_bytes(), "bad magic"),
    ]
    for bad, message in cases:
        groups = [[good], [], [good, good, bad, good], [bad]]
        for finalize in (lambda g: quantiles_of_groups(g, [0.5]), merge_quantile_groups):
            with pytest.raises(SketchFormatError, match=f"^group 2, state 2: .*{message}"):
                finalize(groups)


def test_corrupted_states_in_a_batch(v1: Callable[..., bytes]) -> None:
    # Batch and per-state decoding refuse the same bytes with the same message, and answer
    # the same for the bytes they accept.
    rng = random.Random(5)
    values = np.random.default_rng(5)
    samples = [QuantileState.from_values(random_values(values)).to_bytes() for _ in range(40)]
    samples = [s for s in samples if s] + [v1(s) for s in samples[:6] if s]
    good = samples[0]
    rejected = 0
    for _ in range(1_500):
        data = bytearray(rng.choice(samples))
        action = rng.random()
        if action < 0.3:
            data = data[: rng.randrange(len(data))]
        elif action < 0.6:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif action < 0.8:
            data[rng.randrange(min(len(data), 13))] = rng.randrange(256)
        else:
            data = bytearray(rng.randbytes(rng.randrange(1, 40)))
        corrupt = bytes(data)
        try:
            want = QuantileState.from_bytes(corrupt).quantile(0.5)
        except SketchFormatError as exc:
            rejected += 1
            with pytest.raises(SketchFormatError) as caught:
                quantiles_of_groups([[good], [good, corrupt]], [0.5])
            assert str(caught.value) == f"group 1, state 1: {exc}"
            continue
        got = quantiles_of_groups([[corrupt]], [0.5])
        assert bits(got) == bits([[want]])
    assert rejected > 700


# -- count distinct ----------------------------------------------------------------------------


def per_state_distinct(groups: Groups) -> list[int]:
    return [
        DistinctState.merge_all([DistinctState.from_bytes(data) for data in group]).estimate()
        for group in groups
    ]


def distinct_groups(seed: int, n_groups: int) -> Groups:
    """Groups of 0-8 states of ints drawn from ranges that overlap within a group; a few
    states of 1 000s of values, some beyond EXACT_LIMIT (HLL), and some groups whose exact
    states add up to more than EXACT_LIMIT."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n_groups):
        span = int(rng.choice([3, 30, 1_000, 9_000]))
        states = []
        for _ in range(int(rng.choice([0, 1, 2, 8], p=[0.05, 0.3, 0.25, 0.4]))):
            size = int(rng.choice([0, 1, 5, 30, 3_000, 6_000], p=[0.1, 0.2, 0.3, 0.3, 0.07, 0.03]))
            state = DistinctState.from_hashes(hash_ints(rng.integers(0, span, size)))
            states.append(state.to_bytes())
        groups.append(states)
    return groups


@pytest.mark.parametrize("seed", range(4))
def test_distinct_of_groups_are_the_per_state_answers(seed: int) -> None:
    groups = distinct_groups(seed, 300)
    got = distinct_of_groups(groups)
    assert got == per_state_distinct(groups)
    assert any(n > EXACT_LIMIT for n in got)


def test_distinct_of_groups_of_strings_and_special_groups() -> None:
    words = [f"test_{i}" for i in range(50)]
    a = DistinctState.from_hashes(hash_strings(words[:30])).to_bytes()
    b = DistinctState.from_hashes(hash_strings(words[20:])).to_bytes()
    hll = DistinctState.from_hashes(hash_ints(np.arange(10_000))).to_bytes()
    groups = [[a, b], [], [b""], [a], [hll], [hll, a], [a, b, b"", a]]
    assert distinct_of_groups(groups) == per_state_distinct(groups)
    assert distinct_of_groups(groups)[:4] == [50, 0, 0, 30]
    assert distinct_of_groups([]) == []


def test_distinct_exact_states_that_add_up_beyond_the_limit() -> None:
    # Exact states whose union has more than EXACT_LIMIT hashes: an HLL sketch of them, as
    # merge_all builds.
    halves = [DistinctState.from_hashes(hash_ints(np.arange(i, i + 3_000))) for i in (0, 2_000)]
    group = [h.to_bytes() for h in halves]
    assert distinct_of_groups([group]) == per_state_distinct([group])
    assert abs(distinct_of_groups([group])[0] - 5_000) <= 5


def test_distinct_hashes_that_differ_in_their_low_bits_only() -> None:
    # The batch sorts by group and the high bits of the hash; hashes equal but for their low
    # bits are told apart.
    x = 0x5DEECE66D0000000
    states = [[x, x + 1], [x], [x + 1, x + 2], [x + 3]]
    data = [DistinctState.from_hashes(np.array(h, dtype=np.uint64)).to_bytes() for h in states]
    groups = [data, data[1:], [data[0], data[1]], [data[1], data[1]]]
    assert distinct_of_groups(groups) == per_state_distinct(groups) == [4, 4, 2, 1]


def test_a_malformed_distinct_state_is_named() -> None:
    good = DistinctState.from_values([1, 2]).to_bytes()
    hll = DistinctState.from_hashes(hash_ints(np.arange(10_000))).to_bytes()
    cases = [
        (b"junk", "bad magic"),
        (good[:-1], "not a multiple of 8"),
        (good[:5] + good[13:] + good[5:13], "not strictly ascending"),
        (b"FHD\x01\x07" + bytes(8), "unknown count-distinct mode 7"),
        (hll[:-100], "corrupt HLL"),
        (QuantileState.from_values([1.0]).to_bytes(), "bad magic"),
    ]
    for bad, message in cases:
        groups = [[good], [], [good, hll, bad, good], [bad]]
        with pytest.raises(SketchFormatError, match=f"^group 2, state 2: .*{message}"):
            distinct_of_groups(groups)


def test_corrupted_distinct_states_in_a_batch(corrupt: Callable[..., bytes]) -> None:
    rng = random.Random(7)
    samples = [
        DistinctState.from_hashes(hash_ints(np.arange(n))).to_bytes() for n in (1, 50, 5_000)
    ]
    good = samples[1]
    rejected = 0
    for _ in range(1_500):
        damaged = corrupt(rng, rng.choice(samples), 40)
        try:
            want = DistinctState.from_bytes(damaged).estimate()
        except SketchFormatError as exc:
            rejected += 1
            with pytest.raises(SketchFormatError) as caught:
                distinct_of_groups([[good], [good, damaged]])
            assert str(caught.value) == f"group 1, state 1: {exc}"
            continue
        assert distinct_of_groups([[damaged]]) == [want]
    assert rejected > 700
