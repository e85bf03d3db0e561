"""Aggregates with a filter of their own (FILTER (WHERE …), count_if): each takes the rows of its
group where its filter is TRUE, groups without such rows keep their empty states, one mask is
computed per distinct filter and segment, and the answers match DuckDB's."""

from __future__ import annotations

import random
from typing import Any

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.storage import fragment, predicate
from services.storage.tests.duck_sql import check_against_duckdb, duckdb_table

EVENTS = [
    {"timestamp": 0, "suite": "a", "status": "failed", "duration": 2.0},
    {"timestamp": 1, "suite": "a", "status": "passed", "duration": 1.0},
    {"timestamp": 2, "suite": "a", "status": "failed", "duration": 4},
    {"timestamp": 3, "suite": "b", "status": "passed", "duration": 8.0},
    {"timestamp": 4, "suite": "b"},
    {"timestamp": 5, "suite": "c", "status": "failed"},
]


def test_each_aggregate_takes_the_rows_its_filter_keeps(kit: Any) -> None:
    failed = kit.cmp("status", "=", "failed")
    plan = kit.plan(
        group_by=["suite"],
        aggregates=[
            kit.agg("count"),
            kit.agg("count", filter=failed),
            kit.agg("sum", "duration", filter=failed),
            kit.agg("max", "duration", filter=failed),
            kit.agg("sum", "duration"),
        ],
    )
    groups = kit.groups(kit.run(plan, EVENTS[:3], EVENTS[3:]))
    a, b, c = (groups[(("string", s),)] for s in "abc")
    assert [s["count"] for s in a] == [3, 2, 2, 0, 3]
    assert a[2]["int_sum"] == 4 and a[2]["sum"] == 2.0 and a[2]["float_seen"]
    assert a[3]["extreme"] == ("int", 4)
    # b has no failed row: its group is still there, with empty states (count 0, sum NULL).
    assert [s["count"] for s in b] == [2, 0, 0, 0, 1]
    assert b[3]["extreme"] is None and b[4]["sum"] == 8.0
    # c: a failed row without a duration.
    assert [s["count"] for s in c] == [1, 1, 0, 0, 0]


def test_a_filter_unknown_on_a_row_leaves_the_row_out(kit: Any) -> None:
    # status = 'failed' is unknown where status is missing (and on the int): not TRUE.
    events = [
        {"timestamp": 0, "status": "failed"},
        {"timestamp": 1},
        {"timestamp": 2, "status": 3},
    ]
    not_failed = kit.not_(kit.cmp("status", "=", "failed"))
    plan = kit.plan(aggregates=[kit.agg("count", filter=not_failed)])
    assert kit.groups(kit.run(plan, events))[()][0]["count"] == 0


def test_groups_with_no_filtered_rows_anywhere_still_appear(kit: Any) -> None:
    never = kit.cmp("status", "=", "no such status")
    plan = kit.plan(
        group_by=["suite"],
        aggregates=[
            kit.agg("count", filter=never),
            kit.agg("avg", "duration", filter=never),
            kit.agg("min", "status", filter=never),
            kit.agg("count_distinct", "status", filter=never),
            kit.agg("percentile", "duration", 0.5, filter=never),
            kit.agg("stddev_samp", "duration", filter=never),
        ],
    )
    groups = kit.group_list(kit.run(plan, EVENTS))
    assert len(groups) == 3
    for group in groups:
        count, avg, low, distinct, percentile, spread = group.states
        assert count.count == avg.count == spread.count == 0
        assert low.extreme is None and distinct.sketch == b"" and percentile.sketch == b""


def test_filters_may_use_computed_columns(kit: Any) -> None:
    plan = kit.plan(
        computed=[kit.call("upper", "status")],
        group_by=["suite"],
        aggregates=[kit.agg("count", filter=kit.cmp("$0", "=", "FAILED"))],
    )
    groups = kit.groups(kit.run(plan, EVENTS))
    assert {key[0][1]: states[0]["count"] for key, states in groups.items()} == {
        "a": 2,
        "b": 0,
        "c": 1,
    }


def test_aggregates_sharing_a_filter_share_one_mask(kit: Any, monkeypatch: Any) -> None:
    """One mask per distinct filter and segment, and states shared only where the filters are
    the same: sum(d) and sum(d) FILTER (…) differ, avg and sum under one filter do not."""
    masks = []
    true = predicate.Filter.true

    def counted(self: predicate.Filter, seg: predicate.ScanSegment) -> Any:
        masks.append(self.expr.SerializeToString())
        return true(self, seg)

    monkeypatch.setattr(predicate.Filter, "true", counted)
    failed, passed = kit.cmp("status", "=", "failed"), kit.cmp("status", "=", "passed")
    plan = kit.plan(
        aggregates=[
            kit.agg("count", filter=failed),
            kit.agg("sum", "duration", filter=failed),
            kit.agg("avg", "duration", filter=failed),
            kit.agg("sum", "duration", filter=passed),
            kit.agg("sum", "duration"),
        ],
    )
    open_views, _ = kit.views(EVENTS[:3], EVENTS[3:])
    result = fragment.execute(plan, open_views)
    assert len(masks) == 2 * 2  # two filters, two segments
    (group,) = kit.group_list(result)
    sums = [(s.int_sum, s.sum) for s in group.states[1:]]
    assert sums == [(4, 2.0), (4, 2.0), (0, 9.0), (4, 11.0)]


@pytest.mark.parametrize("seed", range(2))
def test_conditional_aggregates_match_duckdb(kit: Any, seed: int) -> None:
    rng = random.Random(4000 + seed)
    statuses = ["passed", "failed", "skipped"]
    events = []
    for i in range(3000):
        e: dict[str, Any] = {"timestamp": i, "name": f"t{rng.randrange(40)}"}
        if rng.random() < 0.9:
            e["status"] = rng.choice(statuses)
        if rng.random() < 0.8:
            e["duration"] = rng.randrange(1000) / 8
        events.append(e)
    chunks = [events[:1000], events[1000:2200], events[2200:]]
    open_views, sealed = kit.views(*chunks)
    failed = kit.cmp("status", "=", "failed")
    slow = kit.and_(kit.cmp("duration", ">", 100), kit.not_(kit.is_null("status")))
    plans = [
        kit.plan(
            group_by=["name"],
            aggregates=[
                kit.agg("count", filter=failed),
                kit.agg("sum", "duration", filter=failed),
                kit.agg("avg", "duration", filter=slow),
                kit.agg("max", "duration", filter=kit.in_("status", ["passed", "skipped"])),
                kit.agg("count_field", "duration", filter=slow),
                kit.agg("count"),
            ],
        ),
        kit.plan(
            filter=kit.cmp("duration", "<", 110),
            group_by=["status"],
            aggregates=[kit.agg("count", filter=slow), kit.agg("min", "name", filter=failed)],
        ),
    ]
    con = duckdb_table(events, {"timestamp": "BIGINT", "name": "VARCHAR",
                                "status": "VARCHAR", "duration": "DOUBLE"})  # fmt: skip
    check_against_duckdb(con, [*sealed[:2], open_views[2]], plans, kit)


def test_the_state_key_keeps_the_filter() -> None:
    from flakehouse.storage.aggregate import _state_key

    plain = plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_SUM, field="d")
    filtered = plan_pb2.Aggregate()
    filtered.CopyFrom(plain)
    filtered.filter.is_null.field = "x"
    assert _state_key(plain) != _state_key(filtered)
    avg = plan_pb2.Aggregate()
    avg.CopyFrom(filtered)
    avg.function = plan_pb2.AGGREGATE_FUNCTION_AVG
    assert _state_key(avg) == _state_key(filtered)
