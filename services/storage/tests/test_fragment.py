"""The fragment executor, case by case: every filter op with three-valued logic, mixed-type and
sparse fields, every aggregate state, group keys, time ranges, raw rows. Each query runs over the
open-segment view and over the sealed, decoded segment, which must agree."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.storage import fragment
from flakehouse.storage.fragment import UnsupportedPlan
from flakehouse.storage.segment import SegmentView

X = [
    {"timestamp": 1, "id": 0, "x": 1},
    {"timestamp": 2, "id": 1, "x": 2.5},
    {"timestamp": 3, "id": 2, "x": "a"},
    {"timestamp": 4, "id": 3, "x": "b"},
    {"timestamp": 5, "id": 4, "x": True},
    {"timestamp": 6, "id": 5},
    {"timestamp": 7, "id": 6, "x": 3},
]
ALL = set(range(7))


def _ids(kit: Any, expr: plan_pb2.Expr, events: list[dict[str, Any]] = X) -> set[int]:
    result = kit.run(kit.plan(filter=expr, select=["id"]), events)
    ids = [row[0] for row in kit.rows(result)]
    assert result.stats.rows_matched == len(ids)
    return set(ids)


@pytest.mark.parametrize(
    ("op", "literal", "expected"),
    [
        ("=", 1, {0}),
        ("=", 1.0, {0}),
        ("=", 2.5, {1}),
        (">", 2, {1, 6}),
        (">=", 2.5, {1, 6}),
        ("<", 3, {0, 1}),
        ("<=", 1, {0}),
        # != is unknown (not true) where x is a string, a bool or absent.
        ("!=", 1, {1, 6}),
        ("=", "a", {2}),
        ("!=", "a", {3}),
        ("!=", "zz", {2, 3}),
        ("<", "b", {2}),
        ("<=", "az", {2}),
        (">", "a", {3}),
        (">=", "a", {2, 3}),
        (">", "b", set()),
        ("=", "1", set()),
        ("=", True, {4}),
        ("!=", False, {4}),
        ("<", True, set()),
        (">", False, {4}),
        ("=", None, set()),
        ("!=", None, set()),
    ],
)
def test_compare_matches_only_comparable_types(
    kit: Any, op: str, literal: Any, expected: set[int]
) -> None:
    assert _ids(kit, kit.cmp("x", op, literal)) == expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (lambda k: k.not_(k.cmp("x", "=", 1)), {1, 6}),
        (lambda k: k.not_(k.cmp("x", "!=", "a")), {2}),
        (lambda k: k.not_(k.cmp("x", "=", None)), set()),
        (lambda k: k.is_null("x"), {5}),
        (lambda k: k.is_null("x", negated=True), ALL - {5}),
        (lambda k: k.not_(k.is_null("x")), ALL - {5}),
        (lambda k: k.is_null("nope"), ALL),
        (lambda k: k.is_null("timestamp"), set()),
        (lambda k: k.or_(k.cmp("x", "=", 1), k.is_null("x")), {0, 5}),
        # NOT (T AND U) = U, NOT (F AND U) = T, NOT (U AND U) = U.
        (lambda k: k.not_(k.and_(k.cmp("x", "=", 1), k.cmp("x", "=", "a"))), {1, 3, 6}),
        # NOT (F OR U) = U, NOT (T OR U) = F: nothing is true.
        (lambda k: k.not_(k.or_(k.cmp("x", "=", 1), k.cmp("x", "=", "a"))), set()),
        (lambda k: k.or_(k.cmp("x", ">", 2), k.cmp("x", "<", "b")), {1, 2, 6}),
        (lambda k: k.and_(k.cmp("x", ">", 0), k.cmp("x", "<", 3)), {0, 1}),
        (lambda k: k.and_(), ALL),
        (lambda k: k.or_(), set()),
        (lambda k: k.not_(k.or_()), ALL),
        (lambda k: k.cmp("timestamp", ">=", 5), {4, 5, 6}),
        (lambda k: k.cmp("timestamp", "<", 2.5), {0, 1}),
        (lambda k: k.cmp("timestamp", "=", "5"), set()),
        (lambda k: k.in_("x", [1, "b"]), {0, 3}),
        (lambda k: k.in_("x", [1, None]), {0}),
        (lambda k: k.in_("x", [1, "b"], negated=True), {1, 2, 4, 6}),
        (lambda k: k.not_(k.in_("x", [1, "b"])), {1, 2, 4, 6}),
        (lambda k: k.in_("x", [1, None], negated=True), set()),
        (lambda k: k.in_("x", [], negated=True), ALL - {5}),
        (lambda k: k.in_("x", [2.5, 3, True]), {1, 4, 6}),
    ],
)
def test_three_valued_logic(kit: Any, expr: Any, expected: set[int]) -> None:
    assert _ids(kit, expr(kit)) == expected


NAMES = [
    {"timestamp": 1, "id": 0, "name": "test_a"},
    {"timestamp": 2, "id": 1, "name": "test_b"},
    {"timestamp": 3, "id": 2, "name": "A.c"},
    {"timestamp": 4, "id": 3, "name": "Abc"},
    {"timestamp": 5, "id": 4, "name": "line\nbreak"},
    {"timestamp": 6, "id": 5, "name": 7},
    {"timestamp": 7, "id": 6},
    {"timestamp": 8, "id": 7, "name": "50%"},
]


@pytest.mark.parametrize(
    ("pattern", "negated", "expected"),
    [
        ("test_%", False, {0, 1}),
        ("test_", False, set()),
        ("A.c", False, {2}),
        ("_.c", False, {2}),
        ("A_c", False, {2, 3}),
        ("%", False, {0, 1, 2, 3, 4, 7}),
        ("line%", False, {4}),
        ("%\\%", False, set()),
        ("%0%", False, {7}),
        ("a%", False, set()),
        # NOT LIKE is unknown on the int and on the absent value.
        ("test%", True, {2, 3, 4, 7}),
        ("%", True, set()),
    ],
)
def test_like(kit: Any, pattern: str, negated: bool, expected: set[int]) -> None:
    assert _ids(kit, kit.like("name", pattern, negated), NAMES) == expected


AGG = [
    {"timestamp": 0, "g": "a", "n": 1},
    {"timestamp": 1, "g": "a", "n": 2.5},
    {"timestamp": 2, "g": "a", "n": "zz"},
    {"timestamp": 3, "g": "b", "n": "m"},
    {"timestamp": 4, "g": "b", "n": "c"},
    {"timestamp": 5, "g": "c", "n": True},
    {"timestamp": 6, "g": "c", "n": False},
    {"timestamp": 7, "g": "d"},
    {"timestamp": 8, "n": 10},
    {"timestamp": 9, "g": 1, "n": 2**62},
    {"timestamp": 10, "g": 1, "n": 2**62},
    {"timestamp": 11, "g": 1.0, "n": -4},
    {"timestamp": 12, "g": True, "n": 4.0},
    {"timestamp": 13, "g": True, "n": 4},
]
AGGREGATES = ["count", ("count_field", "n"), ("sum", "n"), ("avg", "n"), ("min", "n"), ("max", "n")]


def _state(count: int = 0, sum: float = 0.0, int_sum: int = 0, float_seen: bool = False,
           extreme: Any = None) -> dict[str, Any]:  # fmt: skip
    return {
        "count": count,
        "sum": sum,
        "int_sum": int_sum,
        "float_seen": float_seen,
        "extreme": extreme,
    }


def _expected(count: int, present: int, total: dict[str, Any], low: Any, high: Any) -> list[Any]:
    return [
        _state(count=count),
        _state(count=present),
        total,
        total,
        _state(extreme=low),
        _state(extreme=high),
    ]


def test_every_aggregate_over_mixed_types(kit: Any) -> None:
    plan = kit.plan(
        group_by=["g"],
        aggregates=[kit.agg(*a) if isinstance(a, tuple) else kit.agg(a) for a in AGGREGATES],
    )
    expected = {
        (("string", "a"),): _expected(3, 3, _state(2, 2.5, 1, True), ("int", 1), ("float", 2.5)),
        (("string", "b"),): _expected(2, 2, _state(), ("string", "c"), ("string", "m")),
        (("string", "c"),): _expected(2, 2, _state(), ("bool", False), ("bool", True)),
        (("string", "d"),): _expected(1, 0, _state(), None, None),
        (None,): _expected(1, 1, _state(1, 0.0, 10), ("int", 10), ("int", 10)),
        # 2**63 does not fit sint64: the sum degrades to a float.
        (("int", 1),): _expected(
            2, 2, _state(2, float(2**63), 0, True), ("int", 2**62), ("int", 2**62)
        ),
        (("float", 1.0),): _expected(1, 1, _state(1, 0.0, -4), ("int", -4), ("int", -4)),
        # A tie between int 4 and float 4.0: the int is kept, whatever the order.
        (("bool", True),): _expected(2, 2, _state(2, 4.0, 4, True), ("int", 4), ("int", 4)),
    }
    assert kit.groups(kit.run(plan, AGG)) == expected
    # Split across segments, the merged groups are the same.
    assert kit.groups(kit.run(plan, AGG[:5], AGG[5:9], AGG[9:])) == expected
    assert kit.groups(kit.run(plan, AGG[::-1][:7], AGG[::-1][7:])) == expected


def test_int_sums_are_exact_beyond_float_precision(kit: Any) -> None:
    events = [
        {"timestamp": 0, "n": 2**62},
        {"timestamp": 1, "n": 2**62},
        {"timestamp": 2, "n": -(2**62) - 5},
        {"timestamp": 3, "n": 3},
    ]
    plan = kit.plan(aggregates=[kit.agg("sum", "n")])
    for chunks in ([events], [events[:1], events[1:]]):
        (states,) = kit.groups(kit.run(plan, *chunks)).values()
        assert states == [_state(4, 0.0, 2**62 - 2, False)]


def test_timestamp_is_a_field_for_aggregates(kit: Any) -> None:
    plan = kit.plan(
        aggregates=[
            kit.agg("min", "timestamp"),
            kit.agg("max", "timestamp"),
            kit.agg("count_field", "timestamp"),
            kit.agg("sum", "timestamp"),
        ]
    )
    events = [{"timestamp": t} for t in (5, -3, 12)]
    assert kit.groups(kit.run(plan, events)) == {
        (): [
            _state(extreme=("int", -3)),
            _state(extreme=("int", 12)),
            _state(count=3),
            _state(3, 0.0, 14),
        ]
    }


def test_no_group_by_gives_one_group_even_without_rows(kit: Any) -> None:
    aggs = [kit.agg("count"), kit.agg("sum", "n"), kit.agg("max", "n")]
    events = [{"timestamp": 10, "n": 1}]
    for plan in (
        kit.plan(aggregates=aggs, filter=kit.cmp("n", "=", 2)),
        kit.plan(aggregates=aggs, start=100),
    ):
        result = kit.run(plan, events)
        assert kit.groups(result) == {(): [_state(), _state(), _state()]}
        assert kit.group_list(result)[0].states[2].extreme is None
    result = fragment.execute(kit.plan(aggregates=aggs), [])
    assert kit.groups(result) == {(): [_state(), _state(), _state()]}
    grouped = kit.plan(aggregates=aggs, group_by=["n"], filter=kit.cmp("n", "=", 2))
    assert kit.group_list(kit.run(grouped, events)) == []


def test_group_by_time_bucket_and_field(kit: Any) -> None:
    events = [
        {"timestamp": -5, "s": "x"},
        {"timestamp": 0, "s": "x"},
        {"timestamp": 9, "s": "y"},
        {"timestamp": 10, "s": "x"},
        {"timestamp": 25},
        {"timestamp": 10**15, "s": "y"},
    ]
    plan = kit.plan(group_by=[10], aggregates=[kit.agg("count")])
    assert kit.groups(kit.run(plan, events)) == {
        (("int", -10),): [_state(1)],
        (("int", 0),): [_state(2)],
        (("int", 10),): [_state(1)],
        (("int", 20),): [_state(1)],
        (("int", 10**15),): [_state(1)],
    }
    plan = kit.plan(group_by=["s", 10], aggregates=[kit.agg("count")], end=10**15)
    assert kit.groups(kit.run(plan, events[:3], events[3:])) == {
        (("string", "x"), ("int", -10)): [_state(1)],
        (("string", "x"), ("int", 0)): [_state(1)],
        (("string", "y"), ("int", 0)): [_state(1)],
        (("string", "x"), ("int", 10)): [_state(1)],
        (None, ("int", 20)): [_state(1)],
    }


ORIGIN_US = 946_857_600_000_000
"""2000-01-03T00:00:00Z: time buckets are laid from it."""


def test_dense_time_buckets(kit: Any) -> None:
    events = [{"timestamp": 1_000 + t} for t in range(100)]
    plan = kit.plan(group_by=[7], aggregates=[kit.agg("count")])
    expected: dict[Any, list[Any]] = {}
    for e in events:
        key = (("int", ORIGIN_US + (e["timestamp"] - ORIGIN_US) // 7 * 7),)
        expected[key] = [_state(expected.get(key, [_state()])[0]["count"] + 1)]
    assert kit.groups(kit.run(plan, events[:50], events[50:])) == expected


def test_week_buckets_start_on_monday(kit: Any) -> None:
    """Buckets are laid from 2000-01-03, a Monday (DuckDB's origin): a week starts on Monday,
    where from the epoch (a Thursday) it started on Thursday; widths that divide a day keep
    their buckets."""
    day, week = 86_400_000_000, 7 * 86_400_000_000
    thursday = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
    monday = thursday - 3 * day  # 2025-12-29
    events = [{"timestamp": thursday + i * day + 5} for i in range(8)]  # Thu 1 Jan .. Thu 8 Jan
    weeks = kit.groups(kit.run(kit.plan(group_by=[week], aggregates=[kit.agg("count")]), events))
    assert weeks == {(("int", monday),): [_state(4)], (("int", monday + week),): [_state(4)]}
    days = kit.groups(kit.run(kit.plan(group_by=[day], aggregates=[kit.agg("count")]), events))
    assert sorted(days) == [(("int", thursday + i * day),) for i in range(8)]
    extreme = [{"timestamp": -(2**63) + 3}, {"timestamp": 2**63 - 1}]
    far = kit.groups(kit.run(kit.plan(group_by=[week], aggregates=[kit.agg("count")]), extreme))
    assert (("int", ORIGIN_US + (2**63 - 1 - ORIGIN_US) // week * week),) in far


def test_group_by_without_aggregates_lists_groups(kit: Any) -> None:
    events = [{"timestamp": i, "s": "ab"[i % 2]} for i in range(6)]
    result = kit.run(kit.plan(group_by=["s"]), events)
    assert kit.groups(result) == {(("string", "a"),): [], (("string", "b"),): []}


def test_many_keys_take_the_sparse_path(kit: Any) -> None:
    """Keys whose code space is far larger than the rows: np.unique, not bincount."""
    events = [
        {"timestamp": i * 10**12, "a": i * 7919, "b": f"k{i % 3}", "c": i % 2 == 0}
        for i in range(300)
    ]
    plan = kit.plan(group_by=["a", "b", "c", 1], aggregates=[kit.agg("count")])
    groups = kit.groups(kit.run(plan, events))
    assert len(groups) == 300
    assert groups[(("int", 7919), ("string", "k1"), ("bool", False), ("int", 10**12))] == [
        _state(1)
    ]


def test_time_range_prunes_segments(kit: Any) -> None:
    chunks = [[{"timestamp": t} for t in range(s, s + 10)] for s in (0, 10, 20)]
    plan = kit.plan(aggregates=[kit.agg("count")], start=12, end=25)
    result = kit.run(plan, *chunks)
    assert kit.groups(result) == {(): [_state(13)]}
    stats = result.stats
    assert (stats.segments_scanned, stats.segments_skipped) == (2, 1)
    assert (stats.rows_scanned, stats.rows_matched) == (20, 13)
    result = kit.run(kit.plan(aggregates=[kit.agg("count")], start=10, end=20), *chunks)
    assert kit.groups(result) == {(): [_state(10)]}
    assert (result.stats.segments_scanned, result.stats.segments_skipped) == (1, 2)
    result = kit.run(kit.plan(aggregates=[kit.agg("count")], start=5, end=5), *chunks)
    assert result.stats.segments_skipped == 3


def test_skipped_segments_are_never_decoded(kit: Any) -> None:
    def fail() -> Any:
        raise AssertionError("decoded a pruned segment")

    pruned = SegmentView(row_count=5, min_ts=0, max_ts=9, loader=fail, ids_loader=fail)
    result = fragment.execute(kit.plan(aggregates=[kit.agg("count")], start=100), [pruned])
    assert result.stats.segments_skipped == 1


MIXED = [
    {"timestamp": 1, "id": 0, "k": "b"},
    {"timestamp": 2, "id": 1, "k": 3},
    {"timestamp": 3, "id": 2, "k": True},
    {"timestamp": 4, "id": 3},
    {"timestamp": 5, "id": 4, "k": 2.5},
    {"timestamp": 6, "id": 5, "k": "a"},
    {"timestamp": 7, "id": 6, "k": False},
    {"timestamp": 8, "id": 7, "k": -1},
    {"timestamp": 9, "id": 8, "k": float("nan")},
]


@pytest.mark.parametrize(
    ("descending", "expected"),
    [
        # numbers (NaN greatest) < strings < bools < null, nulls last both ways.
        (False, [7, 4, 1, 8, 5, 0, 6, 2, 3]),
        (True, [8, 1, 4, 7, 0, 5, 2, 6, 3]),
    ],
)
def test_raw_rows_order_mixed_types(kit: Any, descending: bool, expected: list[int]) -> None:
    plan = kit.plan(select=["id", "k"], order_by=[("k", descending)])
    for chunks in ([MIXED], [MIXED[:4], MIXED[4:]], [MIXED[::2], MIXED[1::2]]):
        assert [r[0] for r in kit.rows(kit.run(plan, *chunks))] == expected
    limited = kit.plan(select=["id"], order_by=[("k", descending)], limit=4)
    assert [r[0] for r in kit.rows(kit.run(limited, MIXED[::2], MIXED[1::2]))] == expected[:4]


def test_raw_rows_multi_key_order_limit_and_values(kit: Any) -> None:
    events = [
        {"timestamp": 10 * i, "suite": "s" + "ba"[i % 2], "d": float(i % 3), "x": i}
        for i in range(12)
    ]
    plan = kit.plan(
        select=["suite", "d", "timestamp", "absent"],
        order_by=[("suite", False), ("d", True), ("timestamp", False)],
        limit=5,
    )
    rows = kit.rows(kit.run(plan, events[:5], events[5:]))
    assert rows == [
        ("sa", 2.0, 50, None),
        ("sa", 2.0, 110, None),
        ("sa", 1.0, 10, None),
        ("sa", 1.0, 70, None),
        ("sa", 0.0, 30, None),
    ]
    result = kit.run(plan, events)
    assert [type(x.WhichOneof("kind")) for x in result.rows[0].values] == [
        str,
        str,
        str,
        type(None),
    ]
    assert result.rows[0].values[2].int_value == 50


def test_raw_rows_without_order_stop_at_the_limit(kit: Any) -> None:
    chunks = [[{"timestamp": t, "n": t} for t in range(s, s + 10)] for s in (0, 10, 20)]
    result = kit.run(kit.plan(select=["n"], limit=15, filter=kit.cmp("n", ">=", 3)), *chunks)
    assert [r[0] for r in kit.rows(result)] == list(range(3, 18))
    assert result.stats.segments_scanned == 2
    result = kit.run(kit.plan(select=["n"], start=25), *chunks)
    assert [r[0] for r in kit.rows(result)] == list(range(25, 30))


def test_nan_is_ignored_by_min_and_max(kit: Any) -> None:
    events = [{"timestamp": 0, "f": float("nan")}, {"timestamp": 1, "f": 1.5}]
    plan = kit.plan(aggregates=[kit.agg("min", "f"), kit.agg("max", "f")])
    assert kit.groups(kit.run(plan, events)) == {
        (): [_state(extreme=("float", 1.5)), _state(extreme=("float", 1.5))]
    }
    ((only_nan,),) = [g.states[:1] for g in kit.group_list(kit.run(plan, events[:1]))]
    assert only_nan.extreme is not None and math.isnan(only_nan.extreme.float_value)


def test_nan_across_segments(kit: Any) -> None:
    nan, number = {"timestamp": 0, "f": float("nan")}, {"timestamp": 1, "f": 1.5}
    plan = kit.plan(aggregates=[kit.agg("min", "f"), kit.agg("max", "f")])
    for chunks in ([[nan], [number]], [[number], [nan]]):
        assert kit.groups(kit.run(plan, *chunks)) == {
            (): [_state(extreme=("float", 1.5)), _state(extreme=("float", 1.5))]
        }
    grouped = kit.plan(group_by=["f"], aggregates=[kit.agg("count")])
    result = kit.run(grouped, [nan, number], [dict(nan)], [number])
    counts = sorted((g.key[0].float_value, g.states[0].count) for g in kit.group_list(result))
    assert len(counts) == 2 and counts[0] == (1.5, 2)
    assert math.isnan(counts[1][0]) and counts[1][1] == 2


def test_exact_int_sums_merge_across_segments(kit: Any) -> None:
    big = [{"timestamp": 0, "n": 2**62}, {"timestamp": 1, "n": 2**62 - 1}]
    plan = kit.plan(aggregates=[kit.agg("sum", "n")])
    result = kit.run(plan, big, [{"timestamp": 2, "n": -(2**62)}], [{"timestamp": 3, "n": 6}])
    assert kit.groups(result) == {(): [_state(4, 0.0, 2**62 + 5)]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: setattr(p, "ir_version", 3), "IR version 3"),
        (lambda p: p.aggregates.add(function=7), "COUNT_DISTINCT needs a field"),
        (lambda p: p.aggregates.add(function=8, field="x"), r"quantile must be in \(0, 1\]"),
        (lambda p: p.aggregates.add(function=8, field="x", quantile=1.5), "not 1.5"),
        (lambda p: p.aggregates.add(function=8, field="x", quantile=-0.5), "not -0.5"),
        (lambda p: p.aggregates.add(function=8, field="x", quantile=math.nan), "not nan"),
        (lambda p: p.aggregates.add(function=0), "UNSPECIFIED"),
        (lambda p: p.aggregates.add(function=3), "needs a field"),
        (lambda p: p.group_by.add(time_bucket_us=0), "positive"),
        (lambda p: p.group_by.add(), "empty group-by"),
        (lambda p: p.filter.compare.SetInParent(), "compare op"),
        (lambda p: p.filter.junction.SetInParent(), "junction op"),
        (lambda p: p.ClearField("aggregates"), "no aggregates"),
    ],
)
def test_unsupported_plans_are_refused(kit: Any, change: Any, message: str) -> None:
    plan = kit.plan(aggregates=[kit.agg("count")])
    change(plan)
    with pytest.raises(UnsupportedPlan, match=message):
        fragment.execute(plan, [])
    assert issubclass(UnsupportedPlan, ValueError)


def test_fields_needed(kit: Any) -> None:
    plan = kit.plan(
        filter=kit.and_(kit.cmp("a", "=", 1), kit.not_(kit.like("b", "x%")), kit.in_("c", [1])),
        group_by=["d", 60],
        aggregates=[kit.agg("count"), kit.agg("sum", "e"), kit.agg("min", "timestamp")],
        select=["ignored"],
    )
    assert fragment.fields_needed(plan) == {"a", "b", "c", "d", "e"}
    raw = kit.plan(select=["x", "timestamp"], order_by=[("y", True)], filter=kit.is_null("z"))
    assert fragment.fields_needed(raw) == {"x", "y", "z"}


def test_describe_counts_every_field_and_type(kit: Any) -> None:
    open_views, sealed = kit.views(X, NAMES)
    expected = [
        events_pb2.FieldSummary(name=name, type=kind, count=count)
        for name, kind, count in [
            ("id", v.INT, 15),
            ("name", v.STRING, 6),
            ("name", v.INT, 1),
            ("timestamp", v.INT, 15),
            ("x", v.STRING, 2),
            ("x", v.INT, 2),
            ("x", v.FLOAT, 1),
            ("x", v.BOOL, 1),
        ]
    ]
    assert fragment.describe(open_views) == expected
    assert fragment.describe(sealed) == expected
    assert fragment.describe([]) == []
