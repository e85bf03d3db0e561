"""Quantiles: the vectorized build agrees with the library's own add(), accuracy against exact
answers, zero, negatives and special values, merge order, round trips and bad bytes."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import numpy.typing as npt
import pytest
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

from flakehouse.sketches import RELATIVE_ACCURACY, QuantileState, SketchFormatError
from flakehouse.sketches.quantiles import (
    KEY_MAX,
    KEY_MIN,
    bucket_codes,
    encode_counts,
    encode_grouped,
)

QUANTILES = [0.5, 0.9, 0.95, 0.99]
HEADER = b"FHQ\x01" + bytes(24)


def exact(values: npt.NDArray[np.float64], q: float) -> float:
    """quantile_cont: linear interpolation between the neighbouring ranks, as DuckDB does."""
    return float(np.quantile(values, q, method="linear"))


def assert_within(got: float | None, want: float, tolerance: float = RELATIVE_ACCURACY) -> None:
    assert got is not None
    # 1 % is met with equality at bucket edges (e.g. 1 → 0.99): allow float rounding on top.
    assert abs(got - want) <= tolerance * (1 + 1e-9) * abs(want), (
        got,
        want,
        got / want - 1 if want else 0,
    )


def durations(n: int, seed: int) -> npt.NDArray[np.float64]:
    """Lognormal test durations in seconds, from milliseconds to hours."""
    return np.random.default_rng(seed).lognormal(mean=0.0, sigma=2.0, size=n)


def skewed_ints(n: int, seed: int) -> npt.NDArray[np.int64]:
    """Retries-like counts: mostly 0, a long tail."""
    return np.random.default_rng(seed).zipf(1.6, size=n) - 1


# -- the vectorized build is the library's ----------------------------------------------------


def test_vectorized_keys_equal_the_library_keys() -> None:
    mapping = LogarithmicMapping(RELATIVE_ACCURACY)
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [
            rng.lognormal(0, 4, 100_000),
            np.exp(rng.uniform(-700, 700, 50_000)),
            np.arange(1, 20_000, dtype=np.float64),
            # Bucket boundaries, where rounding would show first.
            np.array([mapping.gamma**k for k in range(-3000, 3000)]),
        ]
    )
    codes = bucket_codes(values)
    keys = codes - bucket_codes(np.array([1.0]))[0] + mapping.key(1.0)
    assert keys.tolist() == [mapping.key(v) for v in values.tolist()]


def test_same_bins_and_quantiles_as_adding_one_at_a_time() -> None:
    values = np.concatenate([durations(20_000, 1), -durations(3_000, 2), np.zeros(501)])
    library = DDSketch(RELATIVE_ACCURACY)
    for value in values.tolist():
        library.add(value)
    ours = QuantileState.from_values(values)
    assert len(values) - 1 == 23_500  # so that every whole percent is a (nearly) whole rank
    for q in [i / 100 for i in range(101)]:
        # Nothing to interpolate at whole ranks: the library's own answer.
        assert ours.quantile(q) == pytest.approx(library.get_quantile_value(q), rel=1e-9)
    proto = DDSketchProto.to_proto(library)
    assert list(proto.positiveValues.contiguousBinCounts) != []
    reread = QuantileState.from_bytes(HEADER + proto.SerializeToString())
    assert reread.to_bytes() == ours.to_bytes()


def test_the_library_reads_our_protobuf() -> None:
    values = durations(5_000, 3)
    data = QuantileState.from_values(values).to_bytes()
    message = ddsketch_pb2.DDSketch.FromString(data[len(HEADER) :])
    # Our bytes are what protobuf itself writes for that message.
    assert message.SerializeToString(deterministic=True) == data[len(HEADER) :]
    sparse = QuantileState.from_values([1e-3, 1e6]).to_bytes()[len(HEADER) :]
    assert ddsketch_pb2.DDSketch.FromString(sparse).SerializeToString(deterministic=True) == sparse
    sketch = DDSketchProto.from_proto(message)
    assert sketch.count == len(values)
    assert_within(sketch.get_quantile_value(0.5), float(np.quantile(values, 0.5, method="lower")))


# -- accuracy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1_000, 100_000, 1_000_000])
def test_lognormal_durations_within_1_percent(n: int) -> None:
    values = durations(n, n)
    state = QuantileState.merge_all(QuantileState.from_values(c) for c in np.array_split(values, 5))
    assert state.count == n
    for q in QUANTILES:
        assert_within(state.quantile(q), exact(values, q))


@pytest.mark.parametrize("n", [1_000, 100_000, 1_000_000])
def test_skewed_ints_within_1_percent(n: int) -> None:
    values = skewed_ints(n, n)
    state = QuantileState.from_values(values)
    for q in QUANTILES:
        want = exact(values.astype(np.float64), q)
        assert_within(state.quantile(q), want)


def test_every_quantile_is_within_1_percent_of_quantile_cont() -> None:
    values = np.concatenate([durations(2_000, 9), skewed_ints(2_000, 9).astype(np.float64)])
    state = QuantileState.from_values(values)
    for q in np.linspace(0, 1, 201).tolist():
        assert_within(state.quantile(q), exact(values, q))


def test_a_single_value_and_constant_data() -> None:
    assert_within(QuantileState.from_values([42.0]).quantile(0.99), 42.0)
    state = QuantileState.from_values(np.full(1000, 7))
    assert all(state.quantile(q) == state.quantile(0.5) for q in QUANTILES)
    assert_within(state.quantile(0.5), 7.0)


# -- zero, negatives, specials -----------------------------------------------------------------


def test_zero_is_exact_and_negatives_are_mirrored() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate(
        [-rng.lognormal(1, 1, 3000), np.zeros(1000), rng.lognormal(1, 1, 6000), [-0.0, 5e-324]]
    )
    state = QuantileState.from_values(values)
    ordered = np.sort(values)
    for q in np.linspace(0, 1, 101).tolist():
        rank = q * (len(values) - 1)
        lo, hi = ordered[math.floor(rank)], ordered[math.ceil(rank)]
        got = state.quantile(q)
        assert got is not None
        if lo * hi >= 0:
            assert_within(got, exact(values, q))
        else:  # straddling zero: within 1 % of the larger neighbour
            assert abs(got - exact(values, q)) <= RELATIVE_ACCURACY * max(abs(lo), abs(hi))
    # The 1000 zeros (and the tiny subnormal) occupy ranks 3000..4001 exactly.
    assert state.quantile(3500 / (len(values) - 1)) == 0.0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Compared with DuckDB's quantile_cont at q = 0.5 and 0.25.
        ([-math.inf, 1.0], (-math.inf, -math.inf)),
        ([1.0, math.inf], (math.inf, math.inf)),
        ([-math.inf, math.inf], (math.nan, math.nan)),
        ([1.0, math.nan], (math.nan, math.nan)),
        ([math.inf, math.nan], (math.nan, math.nan)),
        ([1.0, 2.0, math.nan], (2.0, 1.5)),
        ([math.inf, math.inf, 3.0], (math.inf, math.inf)),
    ],
)
def test_nan_and_infinities_like_duckdb(values: list[float], expected: tuple[float, float]) -> None:
    state = QuantileState.from_values(values)
    for q, want in zip((0.5, 0.25), expected, strict=True):
        got = state.quantile(q)
        assert got is not None
        if math.isnan(want) or math.isinf(want):
            assert got == want or (math.isnan(got) and math.isnan(want))
        else:
            assert_within(got, want)
    again = QuantileState.from_bytes(state.to_bytes())
    assert again.count == len(values) and again.to_bytes() == state.to_bytes()


def test_huge_magnitudes_are_clamped() -> None:
    state = QuantileState.from_values([1.79e308, -1.79e308])
    top, bottom = state.quantile(1.0), state.quantile(0.0)
    assert top is not None and bottom is not None
    assert math.isfinite(top) and abs(top / 1.79e308 - 1) < 0.03
    assert bottom == -top


def test_empty_state() -> None:
    empty = QuantileState.from_values(np.zeros(0))
    assert empty.count == 0 and empty.quantile(0.5) is None
    assert empty.to_bytes() == b"" and QuantileState.from_bytes(b"").count == 0
    assert encode_counts([], []) == b""
    one = QuantileState.from_values([3.0])
    assert empty.merge(one).to_bytes() == one.to_bytes() == one.merge(empty).to_bytes()


def test_quantile_outside_0_1_is_refused() -> None:
    state = QuantileState.from_values([1.0])
    for q in (-0.1, 1.01, math.nan):
        with pytest.raises(ValueError, match="quantile must be in"):
            state.quantile(q)


# -- merging and bytes -------------------------------------------------------------------------


def test_merge_is_order_independent() -> None:
    parts = [
        durations(3000, 1),
        -durations(100, 2),
        np.array([0.0, math.nan, math.inf]),
        skewed_ints(2000, 3).astype(np.float64),
    ]
    states = [QuantileState.from_values(p) for p in parts]
    results = set()
    for order in itertools.permutations(states):
        left = order[0].merge(order[1]).merge(order[2]).merge(order[3])
        right = order[0].merge(order[1].merge(order[2].merge(order[3])))
        for merged in (left, right, QuantileState.merge_all(order)):
            results.add(merged.to_bytes())
    whole = QuantileState.from_values(np.concatenate(parts))
    assert results == {whole.to_bytes()}


def test_encode_counts_gives_the_bytes_of_the_state() -> None:
    values = np.concatenate([durations(5000, 8), -durations(50, 9), [0.0, math.nan, -math.inf]])
    codes = bucket_codes(values)
    counts = np.ones(len(codes), dtype=np.int64)  # codes repeat: encode_counts adds them up
    assert encode_counts(codes, counts) == QuantileState.from_values(values).to_bytes()


def test_sparse_stores_for_few_values_over_a_wide_range() -> None:
    values = [1e-3, 1e6, -2.0, -3e5]
    state = QuantileState.from_values(values)
    data = state.to_bytes()
    message = ddsketch_pb2.DDSketch.FromString(data[len(HEADER) :])
    assert len(message.positiveValues.binCounts) == 2
    assert not message.positiveValues.contiguousBinCounts
    assert len(data) < 120  # the contiguous form would take 8 bytes a bucket, ~1000 buckets
    again = QuantileState.from_bytes(data)
    assert again.to_bytes() == data
    for q, want in [(0.0, -3e5), (1 / 3, -2.0), (2 / 3, 1e-3), (1.0, 1e6)]:
        assert_within(again.quantile(q), want)
    # Dense data keeps the contiguous form.
    dense = ddsketch_pb2.DDSketch.FromString(
        QuantileState.from_values(durations(1000, 4)).to_bytes()[len(HEADER) :]
    )
    assert dense.positiveValues.contiguousBinCounts and not dense.positiveValues.binCounts


def test_encode_grouped_gives_each_group_its_bytes() -> None:
    parts = [durations(300, 1), np.zeros(0), np.array([5.0, -1.0, math.nan]), durations(2, 2)]
    groups, codes, counts = [], [], []
    for group, values in enumerate(parts):
        bucket = bucket_codes(values)
        for code in sorted(set(bucket.tolist())):
            groups.append(group)
            codes.append(code)
            counts.append(int((bucket == code).sum()))
    encoded = encode_grouped(groups, codes, counts, len(parts) + 1)
    assert encoded == [QuantileState.from_values(p).to_bytes() for p in parts] + [b""]
    assert encoded[1] == b""


@pytest.mark.parametrize("n", [1, 10, 10_000])
def test_round_trip(n: int) -> None:
    state = QuantileState.from_values(np.concatenate([durations(n, n), -durations(n // 3, 1)]))
    again = QuantileState.from_bytes(state.to_bytes())
    assert again.to_bytes() == state.to_bytes()
    assert [again.quantile(q) for q in QUANTILES] == [state.quantile(q) for q in QUANTILES]


def _sketch_bytes(
    *,
    gamma: float | None = None,
    offset: int = 0,
    bins: list[float] | None = None,
    sparse: bool = False,
    zero: float = 0.0,
    interpolation: int = 0,
    specials: bytes = bytes(24),
) -> bytes:
    message = ddsketch_pb2.DDSketch()
    message.mapping.gamma = LogarithmicMapping(RELATIVE_ACCURACY).gamma if gamma is None else gamma
    message.mapping.interpolation = interpolation
    message.positiveValues.contiguousBinIndexOffset = offset
    message.positiveValues.contiguousBinCounts.extend([1.0] if bins is None else bins)
    if sparse:
        message.positiveValues.binCounts[3] = 1.0
    message.zeroCount = zero
    return b"FHQ\x01" + specials + message.SerializeToString()


def test_the_test_helper_makes_valid_bytes() -> None:
    assert QuantileState.from_bytes(_sketch_bytes(bins=[1.0, 0.0, 2.0], offset=10)).count == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"FHQ", "bad magic or truncated"),
        (b"FHD\x01" + bytes(24), "bad magic"),
        (b"FHQ\x07" + bytes(24), "version 7"),
        (HEADER + b"\xff\xff\xff", "corrupt DDSketch protobuf"),
        (HEADER, "mapping differs"),
        (_sketch_bytes(gamma=LogarithmicMapping(0.02).gamma), "mapping differs"),
        (_sketch_bytes(interpolation=3), "mapping differs"),
        (_sketch_bytes(sparse=True), "both contiguous and sparse"),
        (_sketch_bytes(bins=[1.0, -1.0]), "whole number"),
        (_sketch_bytes(bins=[0.5]), "whole number"),
        (_sketch_bytes(bins=[math.nan]), "whole number"),
        (_sketch_bytes(bins=[math.inf]), "whole number"),
        (_sketch_bytes(offset=KEY_MAX, bins=[1.0, 1.0]), "outside"),
        (_sketch_bytes(offset=KEY_MIN - 1), "outside"),
        (_sketch_bytes(zero=-1.0), "zero count"),
        (_sketch_bytes(zero=2.5), "zero count"),
        (_sketch_bytes(bins=[0.0]), "empty quantile state"),
        (_sketch_bytes(bins=[2.0**52, 2.0**52, 1.0]), "more than 2"),
        (_sketch_bytes(specials=(2**60).to_bytes(8, "little") + bytes(16)), "more than 2"),
    ],
)
def test_bad_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(SketchFormatError, match=message):
        QuantileState.from_bytes(data)


def test_corrupted_bytes_never_raise_anything_else() -> None:
    rng = random.Random(12)
    samples = [QuantileState.from_values(durations(n, n)).to_bytes() for n in (1, 100, 10_000)]
    rejected = 0
    for _ in range(3_000):
        data = bytearray(rng.choice(samples))
        action = rng.random()
        if action < 0.4:
            data = data[: rng.randrange(len(data))]
        elif action < 0.8:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = bytearray(rng.randbytes(rng.randrange(1, 80)))
        try:
            QuantileState.from_bytes(bytes(data)).quantile(0.5)
        except SketchFormatError:
            rejected += 1
    assert rejected > 1_000
