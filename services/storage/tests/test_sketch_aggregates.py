"""COUNT_DISTINCT and PERCENTILE partial states, case by case: types, NULLs, filters, groups,
the switch from exact sets to HLL inside and across segments. Each query runs over open-segment
views and over sealed, decoded segments, which must agree."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.sketches import EXACT_LIMIT, DistinctState, QuantileState
from flakehouse.storage import aggregate, distinct, fragment, quantiles


def _answers(kit: Any, result: plan_pb2.PartialResult, q: float = 0.5) -> dict[Any, list[Any]]:
    """{group key: [answer per aggregate]}: distinct counts and (for PERCENTILE) the q-quantile."""
    out: dict[Any, list[Any]] = {}
    for group in kit.group_list(result):
        key = tuple(kit.typed(k) for k in group.key)
        assert key not in out
        answers: list[Any] = []
        for state in group.states:
            assert not state.count and state.extreme is None  # only the sketch is set
            if state.sketch.startswith(b"FHQ"):
                answers.append(QuantileState.from_bytes(state.sketch).quantile(q))
            else:
                answers.append(DistinctState.from_bytes(state.sketch).estimate())
        out[key] = answers
    return out


MIXED = [
    {"timestamp": 1, "x": 1, "g": "a"},
    {"timestamp": 2, "x": 1.0, "g": "a"},
    {"timestamp": 3, "x": "1", "g": "a"},
    {"timestamp": 4, "x": True, "g": "a"},
    {"timestamp": 5, "x": 1, "g": "a"},
    {"timestamp": 6, "g": "a"},
    {"timestamp": 7, "x": -0.0, "g": "b"},
    {"timestamp": 8, "x": 0.0, "g": "b"},
    {"timestamp": 9, "x": float("nan"), "g": "b"},
    {"timestamp": 10, "x": float("nan"), "g": "b"},
    {"timestamp": 11, "g": "c"},
]


def test_count_distinct_keeps_types_apart_and_skips_nulls(kit: Any) -> None:
    plan = kit.plan(group_by=["g"], aggregates=[kit.agg("count_distinct", "x")])
    # 0.0 and -0.0 are one value, NaNs one value (as in GROUP BY); a group of NULLs counts 0.
    expected = {(("string", "a"),): [4], (("string", "b"),): [2], (("string", "c"),): [0]}
    assert _answers(kit, kit.run(plan, MIXED)) == expected
    # Spread over segments, in another order: the same answer.
    assert _answers(kit, kit.run(plan, MIXED[::2], MIXED[1::2][::-1])) == expected
    everything = kit.plan(aggregates=[kit.agg("count_distinct", "x")])
    assert _answers(kit, kit.run(everything, MIXED)) == {(): [6]}


def test_a_group_without_values_has_an_empty_sketch(kit: Any) -> None:
    plan = kit.plan(
        group_by=["g"],
        aggregates=[kit.agg("count_distinct", "x"), kit.agg("percentile", "x", 0.5)],
    )
    result = kit.run(plan, MIXED)
    (c,) = [g for g in kit.group_list(result) if g.key[0].string_value == "c"]
    assert [s.sketch for s in c.states] == [b"", b""]


def test_count_distinct_strings_come_from_matched_rows_only(kit: Any) -> None:
    events = [
        {"timestamp": i, "name": f"n{i % 7}", "status": "failed" if i % 3 else "passed"}
        for i in range(60)
    ]
    plan = kit.plan(
        filter=kit.cmp("status", "=", "failed"), aggregates=[kit.agg("count_distinct", "name")]
    )
    expected = len({e["name"] for e in events if e["status"] == "failed"})
    assert _answers(kit, kit.run(plan, events[:25], events[25:])) == {(): [expected]}
    none = kit.plan(
        filter=kit.cmp("status", "=", "nope"),
        group_by=["status"],
        aggregates=[kit.agg("count_distinct", "name")],
    )
    assert _answers(kit, kit.run(none, events)) == {}


def test_count_distinct_of_timestamps_and_bools(kit: Any) -> None:
    events = [{"timestamp": i // 2, "ok": i % 3 == 0} for i in range(40)]
    plan = kit.plan(
        aggregates=[kit.agg("count_distinct", "timestamp"), kit.agg("count_distinct", "ok")]
    )
    assert _answers(kit, kit.run(plan, events[:13], events[13:])) == {(): [20, 2]}


def test_count_distinct_per_group_matches_python(kit: Any) -> None:
    rng = random.Random(5)
    events = []
    for i in range(6000):
        event: dict[str, Any] = {"timestamp": i, "g": rng.randrange(300)}
        kind = rng.random()
        if kind < 0.4:
            event["x"] = rng.randrange(50)
        elif kind < 0.7:
            event["x"] = f"s{rng.randrange(50)}"
        elif kind < 0.9:
            event["x"] = rng.randrange(50) / 2
        events.append(event)
    plan = kit.plan(group_by=["g"], aggregates=[kit.agg("count_distinct", "x")])
    expected: dict[Any, set[Any]] = {}
    for e in events:
        values = expected.setdefault((("int", e["g"]),), set())
        if "x" in e:
            values.add((v.type_of(e["x"]), e["x"]))
    got = _answers(kit, kit.run(plan, events[:2000], events[2000:4500], events[4500:]))
    assert got == {key: [len(values)] for key, values in expected.items()}


def test_switch_to_hll_inside_and_across_segments(kit: Any) -> None:
    big = EXACT_LIMIT + EXACT_LIMIT // 2
    first = [{"timestamp": i, "g": "big", "x": i} for i in range(big)]
    second = [{"timestamp": i, "g": "big", "x": i} for i in range(big // 2, 2 * big)]
    small = [{"timestamp": i, "g": "small", "x": i % 10} for i in range(100)]
    near = [{"timestamp": i, "g": "near", "x": i} for i in range(EXACT_LIMIT)]
    plan = kit.plan(group_by=["g"], aggregates=[kit.agg("count_distinct", "x")])
    result = kit.run(plan, first + small, near + second + small)
    states = {
        g.key[0].string_value: DistinctState.from_bytes(g.states[0].sketch)
        for g in kit.group_list(result)
    }
    assert not states["big"].is_exact
    assert abs(states["big"].estimate() / (2 * big) - 1) < 0.02
    assert states["near"].is_exact and states["near"].estimate() == EXACT_LIMIT
    assert states["small"].is_exact and states["small"].estimate() == 10


def test_compaction_gives_the_same_states(kit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8)
    chunks = [
        [
            {"timestamp": i, "g": rng.randrange(5), "x": rng.randrange(10 * EXACT_LIMIT)}
            for i in range(3000)
        ]
        for _ in range(6)
    ]
    plan = kit.plan(
        group_by=["g"],
        aggregates=[kit.agg("count_distinct", "x"), kit.agg("percentile", "x", 0.9)],
    )
    once = fragment.execute(plan, kit.views(*chunks)[1])
    # Deduplicate (and move big groups to HLL) after every segment instead of at the end.
    monkeypatch.setattr(distinct, "_COMPACT_AT", 0)
    monkeypatch.setattr(quantiles, "_COMPACT_AT", 0)
    often = fragment.execute(plan, kit.views(*chunks)[1])
    assert _answers(kit, once) == _answers(kit, often)
    for group in kit.group_list(once):
        values = {e["x"] for chunk in chunks for e in chunk if e["g"] == group.key[0].int_value}
        estimate = DistinctState.from_bytes(group.states[0].sketch).estimate()
        assert abs(estimate / len(values) - 1) < 0.02


def test_percentile_over_ints_and_floats_ignores_strings_and_bools(kit: Any) -> None:
    events = [
        {"timestamp": 1, "d": 1},
        {"timestamp": 2, "d": 2.0},
        {"timestamp": 3, "d": "1000"},
        {"timestamp": 4, "d": True},
        {"timestamp": 5, "d": 3},
        {"timestamp": 6, "d": 4.0},
        {"timestamp": 7},
    ]
    plan = kit.plan(aggregates=[kit.agg("percentile", "d", 0.5)])
    result = kit.run(plan, events[:3], events[3:])
    state = QuantileState.from_bytes(kit.group_list(result)[0].states[0].sketch)
    assert state.count == 4
    for q, want in [(0.0, 1.0), (0.5, 2.5), (1.0, 4.0)]:
        got = state.quantile(q)
        assert got is not None and abs(got - want) <= 0.01 * want


def test_percentile_per_group_and_time_bucket(kit: Any) -> None:
    rng = np.random.default_rng(3)
    events = [
        {"timestamp": int(i), "suite": f"s{i % 4}", "d": float(d)}
        for i, d in enumerate(rng.lognormal(0, 1, 4000))
    ]
    plan = kit.plan(group_by=["suite", 1000], aggregates=[kit.agg("percentile", "d", 0.9)])
    result = kit.run(plan, events[:1500], events[1500:])
    groups = kit.group_list(result)
    assert len(groups) == 16
    for group in groups:
        suite, bucket = group.key[0].string_value, group.key[1].int_value
        values = [
            e["d"]
            for e in events
            if e["suite"] == suite and bucket <= e["timestamp"] < bucket + 1000
        ]
        got = QuantileState.from_bytes(group.states[0].sketch).quantile(0.9)
        want = float(np.quantile(values, 0.9))
        assert got is not None and abs(got - want) <= 0.01 * want


def test_percentiles_of_one_field_share_their_state(
    kit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # p50, p95 and p99 of d need one state (the quantile is applied after the merge); each
    # aggregate still gets its column, and min(d) beside them keeps its own.
    built: list[str] = []

    def counting(agg: plan_pb2.Aggregate) -> quantiles.Percentile:
        built.append(agg.field)
        return quantiles.Percentile(agg)

    monkeypatch.setitem(aggregate.AGGREGATORS, plan_pb2.AGGREGATE_FUNCTION_PERCENTILE, counting)
    events = [{"timestamp": i, "g": f"g{i % 3}", "d": float(i % 17)} for i in range(300)]
    plan = kit.plan(
        group_by=["g"],
        aggregates=[
            kit.agg("percentile", "d", 0.5),
            kit.agg("min", "d"),
            kit.agg("percentile", "d", 0.95),
            kit.agg("percentile", "x", 0.95),
            kit.agg("percentile", "d", 0.99),
        ],
    )
    result = kit.run(plan, events[:100], events[100:])
    for group in kit.group_list(result):
        p50, low, p95, other, p99 = group.states
        assert p50.sketch == p95.sketch == p99.sketch != b""
        assert other.sketch == b"" and low.extreme is not None
        state = QuantileState.from_bytes(p50.sketch)
        assert state.quantile(0.5) == pytest.approx(8, rel=0.01)
        assert state.quantile(0.99) == pytest.approx(16, rel=0.01)
    # One percentile state per field, however many quantiles, in each of kit.run's two
    # executions (open-segment views, then sealed segments).
    assert sorted(built) == ["d", "d", "x", "x"]


def test_percentile_special_values(kit: Any) -> None:
    events = [
        {"timestamp": 1, "d": -5},
        {"timestamp": 2, "d": 0},
        {"timestamp": 3, "d": math.inf},
        {"timestamp": 4, "d": math.nan},
        {"timestamp": 5, "d": -math.inf},
    ]
    plan = kit.plan(aggregates=[kit.agg("percentile", "d", 1.0)])
    state = QuantileState.from_bytes(kit.group_list(kit.run(plan, events))[0].states[0].sketch)
    assert state.quantile(0) == -math.inf and state.quantile(0.5) == 0.0
    assert state.quantile(0.75) == math.inf
    top = state.quantile(1.0)
    assert top is not None and math.isnan(top)
    low = state.quantile(0.25)
    assert low is not None and abs(low + 5) <= 0.05
