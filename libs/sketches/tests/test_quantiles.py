"""Quantiles: the vectorized build agrees with the library's own add(), accuracy against exact
answers, zero, negatives and special values, merge order, round trips and bad bytes."""

from __future__ import annotations

import itertools
import math
import random
import struct
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt
import pytest
from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb import ddsketch_pb2
from ddsketch.pb.proto import DDSketchProto

from flakehouse.sketches import RELATIVE_ACCURACY, QuantileState, SketchFormatError
from flakehouse.sketches.quantile_buckets import CODE_ZERO, KEY_MAX, KEY_MIN, N_CODES, bucket_codes
from flakehouse.sketches.quantile_codec import encode_counts, encode_grouped

QUANTILES = [0.5, 0.9, 0.95, 0.99]
HEADER = b"FHQ\x01" + bytes(24)  # version 1, no NaN nor infinities
Buckets = tuple[list[int], list[int]]


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


def bits(answers: Iterable[float | None]) -> list[bytes | None]:
    """Answers compared bit for bit (NaN equals NaN of the same bits)."""
    return [None if a is None else struct.pack("<d", a) for a in answers]


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


def test_non_negative_values_take_a_shortcut_to_the_same_codes() -> None:
    # bucket_codes has a shortcut for arrays of zeros and positive values in range (durations);
    # one negative value sends the same values through the general path.
    rng = np.random.default_rng(6)
    tiny = float(LogarithmicMapping(RELATIVE_ACCURACY).min_possible)
    values = np.concatenate(
        [rng.lognormal(0, 4, 50_000), np.zeros(100), [tiny, tiny / 2, 5e-324, 1e308]]
    )
    rng.shuffle(values)
    shortcut = bucket_codes(values)
    general = bucket_codes(np.append(values, -1.0))[:-1]
    assert shortcut.tolist() == general.tolist()
    assert set(shortcut[values <= tiny].tolist()) == {CODE_ZERO}


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


def test_version_1_bytes_are_read(v1: Callable[..., bytes]) -> None:
    samples = [
        durations(5_000, 3),
        np.array([1e-3, 1e6, -2.0, -3e5]),
        np.array([-math.inf, -5.0, 0.0, 0.0, 3.0, math.inf, math.nan]),
        np.array([0.0]),
        np.array([math.nan, math.nan]),
    ]
    for values in samples:
        state = QuantileState.from_values(values)
        for sparse in (False, True):
            old = v1(state.to_bytes(), sparse=sparse)
            assert old.startswith(b"FHQ\x01")
            again = QuantileState.from_bytes(old)
            assert again.to_bytes() == state.to_bytes()
            assert bits(again.quantile(q) for q in QUANTILES) == bits(
                state.quantile(q) for q in QUANTILES
            )
    # The helper writes what the library reads.
    message = ddsketch_pb2.DDSketch.FromString(
        v1(QuantileState.from_values(samples[0]).to_bytes())[len(HEADER) :]
    )
    sketch = DDSketchProto.from_proto(message)
    assert sketch.count == len(samples[0])
    want = float(np.quantile(samples[0], 0.5, method="lower"))
    assert_within(sketch.get_quantile_value(0.5), want)


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


def test_the_bytes_are_as_documented(buckets: Callable[[bytes], Buckets]) -> None:
    values = [-math.inf, -2.0, -2.0, 0.0, 1.0, 1.0, 1.0, 1e6, math.inf, math.nan]
    codes = sorted(set(bucket_codes(values).tolist()))
    counts = [1, 2, 1, 3, 1, 1, 1]
    steps = [b - a for a, b in itertools.pairwise(codes)]
    assert max(steps) >= 256  # two-byte steps, one-byte counts
    want = (
        struct.pack("<4sIIB", b"FHQ\x02", 7, codes[0], 0 | 1 << 2)
        + b"".join(step.to_bytes(2, "little") for step in steps)
        + bytes(counts)
    )
    data = QuantileState.from_values(values).to_bytes()
    assert data == want
    assert buckets(data) == (codes, counts)
    # Counts of 256 and more take wider ints; one bucket has no steps.
    many = QuantileState.from_values(np.full(70_000, 2.5)).to_bytes()
    assert many[12] == 2 and len(many) == 13 + 4 and buckets(many)[1] == [70_000]


def test_small_states_are_small() -> None:
    # A few values over a wide range (typical of a small group): ~3 bytes a bucket.
    assert len(QuantileState.from_values([1e-3, 5.0, 1e6]).to_bytes()) == 13 + 2 * 2 + 3
    # Steps across zero are wider than 2 bytes.
    assert len(QuantileState.from_values([1e-3, 1e6, -2.0, -3e5]).to_bytes()) == 13 + 3 * 4 + 4
    # Many values: one byte a step (they are mostly 1) and 2 a count (below 65 536).
    dense = QuantileState.from_values(durations(100_000, 4)).to_bytes()
    (n,) = struct.unpack_from("<I", dense, 4)
    assert n > 500 and len(dense) == 13 + (n - 1) + 2 * n


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


def test_encode_grouped_checks_its_triples() -> None:
    # Triples of count 0 are no buckets; bad triples are the caller's bug.
    assert encode_grouped([0, 0, 1], [5, 6, 5], [0, 2, 0], 3) == [
        encode_counts([6], [2]),
        b"",
        b"",
    ]
    for groups, codes, counts, message in [
        ([0, 0], [6, 5], [1, 1], "sorted"),
        ([0, 0], [5, 5], [1, 1], "sorted"),
        ([1, 0], [5, 5], [1, 1], "sorted"),
        ([0], [N_CODES], [1], "out of range"),
        ([0], [5], [-1], "negative count"),
        ([3], [5], [1], "group out of range"),
        ([0, 1], [5], [1], "one length"),
    ]:
        with pytest.raises(ValueError, match=message):
            encode_grouped(groups, codes, counts, 3)


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


def _v2(
    first: int,
    steps: list[int],
    counts: list[int],
    *,
    step_class: int = 0,
    count_class: int = 0,
    n: int | None = None,
    widths: int | None = None,
    tail: bytes = b"",
) -> bytes:
    """Version 2 bytes, any of them wrong on request."""
    header = struct.pack(
        "<4sIIB",
        b"FHQ\x02",
        len(counts) if n is None else n,
        first,
        count_class | step_class << 2 if widths is None else widths,
    )
    step_bytes = b"".join(s.to_bytes(1 << step_class, "little") for s in steps)
    count_bytes = b"".join(c.to_bytes(1 << count_class, "little") for c in counts)
    return header + step_bytes + count_bytes + tail


def test_the_test_helpers_make_valid_bytes() -> None:
    assert QuantileState.from_bytes(_sketch_bytes(bins=[1.0, 0.0, 2.0], offset=10)).count == 3
    data = _v2(CODE_ZERO, [1, 300], [5, 1, 2], step_class=1)
    assert QuantileState.from_bytes(data).to_bytes() == data
    assert QuantileState.from_bytes(data).count == 8


TOO_MANY = 2**53


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"FHQ", "bad magic or truncated"),
        (b"FHD\x01" + bytes(24), "bad magic"),
        (b"FHQ\x07" + bytes(24), "version 7"),
        # Version 1.
        (b"FHQ\x01" + bytes(20), "bad magic or truncated"),
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
        # Version 2.
        (b"FHQ\x02" + bytes(8), "truncated"),
        (_v2(5, [], [1], widths=12), "widths byte"),
        (_v2(5, [], [1], widths=0x10), "widths byte"),
        (_v2(5, [], [], n=0), "empty quantile state"),
        (_v2(5, [], [1], tail=b"\x00"), "not the 14 of its 1 buckets"),
        (_v2(5, [1], [1, 1])[:-1], "15 bytes, not the 16 of its 2"),
        (_v2(5, [], [1], n=2**32 - 1), "not the"),
        (_v2(N_CODES, [], [1]), "outside"),
        (_v2(2**32 - 1, [], [1]), "outside"),
        (_v2(N_CODES - 1, [], [1]), None),
        (_v2(N_CODES - 2, [1], [1, 1]), None),
        (_v2(N_CODES - 2, [2], [1, 1]), "outside"),
        (_v2(5, [N_CODES + 1], [1, 1], step_class=2), "outside"),
        (_v2(5, [2**32 - 1, 2**32 - 1], [1, 1, 1], step_class=2), "outside"),
        (_v2(5, [1, 0], [1, 1, 1]), "not strictly ascending"),
        (_v2(5, [], [0]), "count 0"),
        (_v2(5, [1], [3, 0]), "count 0"),
        (_v2(5, [], [255], count_class=1), "not canonical"),
        (_v2(5, [], [256], count_class=1), None),
        (_v2(5, [], [256], count_class=2), "not canonical"),
        (_v2(5, [], [2**32], count_class=3), None),
        (_v2(5, [], [2**31], count_class=3), "not canonical"),
        (_v2(5, [], [1], step_class=1), "not canonical"),
        (_v2(5, [255], [1, 1], step_class=1), "not canonical"),
        (_v2(5, [256], [1, 1], step_class=1), None),
        (_v2(5, [], [TOO_MANY], count_class=3), None),
        (_v2(5, [], [TOO_MANY + 1], count_class=3), "more than 2\\^53"),
        (_v2(5, [], [2**64 - 1], count_class=3), "more than 2\\^53"),
        (_v2(5, [1], [TOO_MANY, 1], count_class=3), "more than 2\\^53"),
        (_v2(5, [1] * 2000, [TOO_MANY] * 2001, count_class=3), "more than 2\\^53"),
    ],
)
def test_bad_bytes_are_rejected(data: bytes, message: str | None) -> None:
    if message is None:  # the edge that is still valid
        assert QuantileState.from_bytes(data).to_bytes() == data
        return
    with pytest.raises(SketchFormatError, match=message):
        QuantileState.from_bytes(data)


def test_corrupted_bytes_never_raise_anything_else(
    v1: Callable[..., bytes], corrupt: Callable[..., bytes]
) -> None:
    rng = random.Random(12)
    samples = [QuantileState.from_values(durations(n, n)).to_bytes() for n in (1, 100, 10_000)]
    samples += [v1(data, sparse=sparse) for data in samples for sparse in (False, True)]
    rejected = 0
    for _ in range(6_000):
        data = corrupt(rng, rng.choice(samples), None)
        try:
            QuantileState.from_bytes(bytes(data)).quantile(0.5)
        except SketchFormatError:
            rejected += 1
    assert rejected > 2_000
