"""Plan + merge against an independent answer: DuckDB runs the same SQL over the same events.

A small reference executor stands in for the storage nodes: it applies the plan to each
partition's events as plan.proto describes and returns PartialResults, which the query service
then merges and finalizes. The answer must equal DuckDB's.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cmp_to_key
from typing import Any

import duckdb
import numpy as np
import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import Scalar, from_value, to_value, type_of
from flakehouse.query.answer import finalize
from flakehouse.query.merge import merge_partials
from flakehouse.query.sql import plan_query
from flakehouse.sketches import DistinctState, QuantileState

Event = dict[str, Scalar]
HOUR = 3_600_000_000
START = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * 1_000_000
NOW = START + 12 * HOUR
PARTITIONS = 3
COLUMNS = {
    "timestamp": "BIGINT",
    "suite": "VARCHAR",
    "name": "VARCHAR",
    "status": "VARCHAR",
    "duration": "DOUBLE",
    "retries": "BIGINT",
    "flaky": "BOOLEAN",
}


def make_events(count: int = 120, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    events = []
    for i in range(count):
        event: Event = {
            "timestamp": START + rng.randrange(10 * HOUR),
            "name": f"test_{rng.choice('abcdefgh')}{i % 7}",
            "status": rng.choice(["passed", "passed", "passed", "failed", "skipped"]),
        }
        # Absent fields are nulls: storage never stores them, DuckDB holds NULL.
        if rng.random() < 0.85:
            event["suite"] = rng.choice(["unit", "integration", "e2e"])
        if rng.random() < 0.9:
            event["duration"] = round(rng.uniform(0, 5), 3)
        if rng.random() < 0.7:
            event["retries"] = rng.randrange(4)
        if rng.random() < 0.8:
            event["flaky"] = rng.random() < 0.2
        events.append(event)
    return events


# -- the reference storage executor ---------------------------------------------------------


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def comparable(a: Scalar, b: Scalar) -> bool:
    return (is_number(a) and is_number(b)) or (type(a) is type(b) and isinstance(a, str | bool))


OPS: dict[int, Callable[[Any, Any], bool]] = {
    plan_pb2.COMPARE_OP_EQ: lambda a, b: a == b,
    plan_pb2.COMPARE_OP_NE: lambda a, b: a != b,
    plan_pb2.COMPARE_OP_LT: lambda a, b: a < b,
    plan_pb2.COMPARE_OP_LE: lambda a, b: a <= b,
    plan_pb2.COMPARE_OP_GT: lambda a, b: a > b,
    plan_pb2.COMPARE_OP_GE: lambda a, b: a >= b,
}


def matches(expr: plan_pb2.Expr, event: Event) -> bool:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        value, literal = event.get(expr.compare.field), from_value(expr.compare.value)
        assert literal is not None
        return (
            value is not None
            and comparable(value, literal)
            and OPS[expr.compare.op](value, literal)
        )
    if kind == "in_list":
        value = event.get(expr.in_list.field)
        if value is None:
            return False
        hit = any(comparable(value, v) and value == v for v in map(from_value, expr.in_list.values))  # type: ignore[arg-type]
        return hit != expr.in_list.negated
    if kind == "like":
        value = event.get(expr.like.field)
        if not isinstance(value, str):
            return False
        regex = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in expr.like.pattern
        )
        return (re.fullmatch(regex, value, re.DOTALL) is not None) != expr.like.negated
    if kind == "is_null":
        return (event.get(expr.is_null.field) is None) != expr.is_null.negated
    if kind == "junction":
        results = [matches(o, event) for o in expr.junction.operands]
        return all(results) if expr.junction.op == plan_pb2.JUNCTION_OP_AND else any(results)
    if kind == "not":
        return not matches(expr.not_.operand, event)  # type: ignore[attr-defined]
    raise AssertionError(kind)


def in_time_range(plan: plan_pb2.QueryPlan, event: Event) -> bool:
    r = plan.time_range
    ts = event["timestamp"]
    assert isinstance(ts, int)
    return (not r.HasField("start_us") or ts >= r.start_us) and (
        not r.HasField("end_us") or ts < r.end_us
    )


def group_key(plan: plan_pb2.QueryPlan, event: Event) -> tuple[Scalar | None, ...]:
    key: list[Scalar | None] = []
    for g in plan.group_by:
        if g.WhichOneof("kind") == "field":
            key.append(event.get(g.field))
        else:
            ts = event["timestamp"]
            assert isinstance(ts, int)
            key.append(ts - ts % g.time_bucket_us)
    return tuple(key)


def priority(v: Scalar) -> int:
    return 2 if is_number(v) else 1 if isinstance(v, str) else 0


State = dict[str, Any]
"""One group's state of one aggregate: the values of its StateColumn members (see plan.proto),
`extremes` as a Python scalar or None."""


def aggregate_state(aggregate: plan_pb2.Aggregate, events: list[Event]) -> State:
    if aggregate.HasField("filter"):
        events = [e for e in events if matches(aggregate.filter, e)]
    fn = aggregate.function
    values = [e.get(aggregate.field) for e in events]
    present = [v for v in values if v is not None]
    if fn == plan_pb2.AGGREGATE_FUNCTION_COUNT:
        return {"counts": len(events)}
    if fn == plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD:
        return {"counts": len(present)}
    if fn == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
        return {"sketches": DistinctState.from_values(present).to_bytes()}
    if fn == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE:
        numbers = [float(v) for v in present if is_number(v)]
        return {"sketches": QuantileState.from_values(numbers).to_bytes()}
    if fn in (plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP, plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP):
        numbers = [float(v) for v in present if is_number(v)]
        mean = math.fsum(numbers) / len(numbers) if numbers else 0.0
        return {
            "counts": len(numbers),
            "means": mean,
            "squares": math.fsum((x - mean) ** 2 for x in numbers),
        }
    if fn in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
        ints = [v for v in present if is_number(v) and isinstance(v, int)]
        floats = [v for v in present if isinstance(v, float)]
        return {
            "counts": len(ints) + len(floats),
            "int_sums": sum(ints),  # type: ignore[arg-type]
            "sums": math.fsum(floats),
            "float_seen": bool(floats),
        }
    best: Scalar | None = None
    for v in present:
        if best is None or priority(v) > priority(best):
            best = v
        elif priority(v) == priority(best):
            better = v > best if fn == plan_pb2.AGGREGATE_FUNCTION_MAX else v < best  # type: ignore[operator]
            best = v if better else best
    return {"extremes": best}


_MEMBERS = {
    events_pb2.VALUE_TYPE_STRING: "string_values",
    events_pb2.VALUE_TYPE_INT: "int_values",
    events_pb2.VALUE_TYPE_FLOAT: "float_values",
    events_pb2.VALUE_TYPE_BOOL: "bool_values",
}


def value_column(cells: Sequence[Scalar | None]) -> plan_pb2.ValueColumn:
    column = plan_pb2.ValueColumn()
    for cell in cells:
        kind = events_pb2.VALUE_TYPE_UNSPECIFIED if cell is None else type_of(cell)
        column.types.append(kind)  # type: ignore[arg-type]
        if cell is not None:
            getattr(column, _MEMBERS[kind]).append(cell)
    return column


def group_columns(
    keys: list[tuple[Scalar | None, ...]], states: list[list[State]]
) -> plan_pb2.GroupColumns:
    """Groups (a key and a state per aggregate each) as plan.proto's columns."""
    columns = plan_pb2.GroupColumns(size=len(keys))
    width = len(keys[0]) if keys else 0
    columns.keys.extend(value_column([key[k] for key in keys]) for k in range(width))
    for column_states in zip(*states, strict=True):
        column = columns.states.add()
        for member in column_states[0]:
            cells = [state[member] for state in column_states]
            if member == "extremes":
                column.extremes.CopyFrom(value_column(cells))
            else:
                getattr(column, member).extend(cells)
    return columns


def rank(v: Scalar) -> int:
    return 0 if is_number(v) else 1 if isinstance(v, str) else 2


def sort_cmp(a: Scalar | None, b: Scalar | None, descending: bool) -> int:
    if a is None or b is None:
        return (a is None) - (b is None)
    if rank(a) != rank(b):
        return -1 if rank(a) < rank(b) else 1  # types keep their order in both directions
    result = (a > b) - (a < b)  # type: ignore[operator]
    return -result if descending else result


def execute(plan: plan_pb2.QueryPlan, events: list[Event]) -> plan_pb2.PartialResult:
    """What a storage node answers for one partition."""
    selected = [
        e
        for e in events
        if in_time_range(plan, e) and (not plan.HasField("filter") or matches(plan.filter, e))
    ]
    if plan.aggregates:
        grouped: dict[tuple[Any, ...], list[Event]] = {}
        for e in selected:
            key = group_key(plan, e)
            grouped.setdefault(tuple((type(k), k) for k in key), []).append(e)
        keys = [tuple(k for _, k in key) for key in grouped]
        states = [
            [aggregate_state(a, members) for a in plan.aggregates] for members in grouped.values()
        ]
        if not keys:
            return plan_pb2.PartialResult()
        return plan_pb2.PartialResult(group_columns=group_columns(keys, states))

    def order(a: Event, b: Event) -> int:
        for o in plan.order_by:
            result = sort_cmp(a.get(o.field), b.get(o.field), o.descending)
            if result:
                return result
        return 0

    top = sorted(selected, key=cmp_to_key(order))[: plan.limit]
    return plan_pb2.PartialResult(
        rows=[events_pb2.Row(values=[to_value(e.get(f)) for f in plan.select_fields]) for e in top]
    )


# -- the comparison -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return make_events()


@pytest.fixture(scope="module")
def duck(events: list[Event]) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE ci (" + ", ".join(f"{n} {t}" for n, t in COLUMNS.items()) + ")"
    )
    connection.executemany(
        f"INSERT INTO ci VALUES ({', '.join('?' for _ in COLUMNS)})",
        [[e.get(c) for c in COLUMNS] for e in events],
    )
    return connection


def flakehouse_answer(sql: str, events: list[Event]) -> list[tuple[Any, ...]]:
    planned = plan_query(sql, now_us=NOW)
    partitions = [events[p::PARTITIONS] for p in range(PARTITIONS)]
    partials = [execute(planned.plan, part) for part in partitions]
    _, rows = finalize(planned, merge_partials(planned, partials))
    return [tuple(from_value(v) for v in row.values) for row in rows]


def same(ours: Sequence[tuple[Any, ...]], theirs: Sequence[tuple[Any, ...]]) -> bool:
    if len(ours) != len(theirs):
        return False
    for a_row, b_row in zip(ours, theirs, strict=True):
        if len(a_row) != len(b_row):
            return False
        for a, b in zip(a_row, b_row, strict=True):
            if isinstance(b, float) or isinstance(a, float):
                if not (isinstance(a, float) and isinstance(b, float)):
                    return False  # an int where DuckDB has a float, or the reverse
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif type(a) is not type(b) or a != b:
                return False
    return True


NOV1_2H = START + 2 * HOUR

# (Flakehouse SQL, DuckDB SQL when it must be spelled differently)
QUERIES: list[tuple[str, str | None]] = [
    (
        "SELECT suite, count(*) AS runs, count(duration), sum(retries), sum(duration),"
        " avg(duration), min(duration), max(name), avg(retries) FROM ci"
        " WHERE status = 'failed' GROUP BY suite ORDER BY runs DESC, suite",
        None,
    ),
    (
        "SELECT count(*), avg(duration), min(timestamp), max(timestamp) FROM ci"
        " WHERE duration > 1.5 OR retries IN (1, 2)",
        None,
    ),
    (
        "SELECT status, suite, count(*) FROM ci GROUP BY status, suite"
        " HAVING count(*) >= 2 AND max(duration) > 1 ORDER BY 3 DESC, 1, 2 LIMIT 5",
        None,
    ),
    ("SELECT suite FROM ci GROUP BY suite", "SELECT suite FROM ci GROUP BY suite ORDER BY suite"),
    (
        "SELECT time_bucket(timestamp, '1h') AS hour, count(*) AS n, sum(retries), max(flaky)"
        " FROM ci WHERE timestamp >= '2026-11-01T02:00:00' AND timestamp < now()"
        " GROUP BY hour ORDER BY hour",
        "SELECT timestamp // 3600000000 * 3600000000 AS hour, count(*) AS n, sum(retries),"
        f" max(flaky) FROM ci WHERE timestamp >= {NOV1_2H} AND timestamp < {NOW}"
        " GROUP BY hour ORDER BY hour",
    ),
    (
        "SELECT name, duration FROM ci WHERE status != 'passed' AND name NOT LIKE 'test_a%'"
        " ORDER BY duration DESC, name LIMIT 7",
        None,
    ),
    (
        "SELECT name, suite FROM ci WHERE NOT (suite = 'unit' OR duration IS NULL)"
        " ORDER BY timestamp LIMIT 10 OFFSET 3",
        None,
    ),
    ("SELECT count(*), sum(duration), max(name) FROM ci WHERE suite = 'nope'", None),
    (
        "SELECT suite, sum(duration) / count(*) AS ratio FROM ci GROUP BY suite"
        " ORDER BY ratio DESC",
        None,
    ),
    (
        "SELECT suite FROM ci GROUP BY suite HAVING avg(duration) > 1 ORDER BY min(duration)",
        None,
    ),
    (
        "SELECT status, count(*) FROM ci WHERE suite NOT IN ('unit')"
        " AND retries BETWEEN 0 AND 1 GROUP BY status ORDER BY status",
        None,
    ),
    (
        "SELECT flaky, count(*) FROM ci WHERE NOT flaky OR flaky IS NULL GROUP BY flaky",
        "SELECT flaky, count(*) FROM ci WHERE NOT flaky OR flaky IS NULL GROUP BY flaky"
        " ORDER BY flaky",
    ),
    (
        "SELECT suite, status, max(retries) AS most FROM ci"
        " WHERE timestamp > now() - interval '6 hours' AND NOT (retries < 1 AND status = 'passed')"
        " GROUP BY suite, status ORDER BY most DESC, suite DESC, status LIMIT 4",
        "SELECT suite, status, max(retries) AS most FROM ci"
        f" WHERE timestamp > {NOW - 6 * HOUR} AND NOT (retries < 1 AND status = 'passed')"
        " GROUP BY suite, status ORDER BY most DESC, suite DESC, status LIMIT 4",
    ),
    (
        "SELECT timestamp, name FROM ci WHERE retries >= 2 AND flaky = FALSE"
        " ORDER BY timestamp DESC",
        "SELECT timestamp, name FROM ci WHERE retries >= 2 AND flaky = FALSE"
        " ORDER BY timestamp DESC LIMIT 1000",
    ),
    # count(DISTINCT …) is exact while a group has few distinct values, as here.
    (
        "SELECT suite, count(DISTINCT name) AS names, count(DISTINCT retries),"
        " count(DISTINCT flaky), count(DISTINCT duration) FROM ci GROUP BY suite"
        " ORDER BY names DESC, suite",
        None,
    ),
    (
        "SELECT count(DISTINCT status), count(DISTINCT timestamp), count(DISTINCT suite)"
        " FROM ci WHERE retries > 0",
        None,
    ),
    (
        "SELECT status FROM ci GROUP BY status HAVING count(DISTINCT suite) > 2"
        " ORDER BY count(DISTINCT name) DESC, status",
        None,
    ),
    ("SELECT count(DISTINCT name), count(*) FROM ci WHERE suite = 'nope'", None),
    # Conditional aggregates: one scan, a condition per aggregate.
    (
        "SELECT suite, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) AS failure_rate"
        " FROM ci GROUP BY suite ORDER BY failure_rate DESC",
        "SELECT suite, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) AS failure_rate"
        " FROM ci GROUP BY suite ORDER BY failure_rate DESC, suite NULLS LAST",
    ),
    (
        "SELECT status, count_if(flaky), countif(retries > 0), count_if(NOT flaky),"
        " count(retries) FILTER (WHERE duration > 2) FROM ci GROUP BY status ORDER BY status",
        None,
    ),
    (
        "SELECT sum(duration) FILTER (WHERE status = 'passed'), avg(retries) FILTER (WHERE flaky),"
        " min(duration) FILTER (WHERE suite IN ('unit', 'e2e')), max(name) FILTER (WHERE NOT"
        " (retries > 1 OR retries IS NULL)), count(DISTINCT name) FILTER (WHERE duration < 1),"
        " sum(retries) FILTER (WHERE suite = 'nope'), avg(duration) FROM ci",
        None,
    ),
    (
        "SELECT suite, count(*) FILTER (WHERE timestamp >= now() - interval '4 hours') AS recent,"
        " count(*) FROM ci WHERE timestamp < now() GROUP BY suite ORDER BY recent DESC, suite",
        f"SELECT suite, count(*) FILTER (WHERE timestamp >= {NOW - 4 * HOUR}) AS recent,"
        f" count(*) FROM ci WHERE timestamp < {NOW} GROUP BY suite"
        " ORDER BY recent DESC, suite NULLS LAST",
    ),
    (
        "SELECT suite FROM ci GROUP BY suite HAVING count_if(status = 'failed') >= 2"
        " ORDER BY max(duration) FILTER (WHERE status = 'failed') DESC",
        None,
    ),
    # Standard deviations.
    (
        "SELECT suite, stddev(duration), stddev_samp(retries), stddev_pop(duration),"
        " stddev_pop(retries) FILTER (WHERE status = 'passed') FROM ci GROUP BY suite"
        " ORDER BY suite",
        None,
    ),
    (
        "SELECT stddev_samp(duration), stddev_pop(duration), stddev(timestamp) FROM ci",
        None,
    ),
    (
        "SELECT name, stddev_samp(duration), stddev_pop(duration) FROM ci"
        " WHERE status = 'failed' GROUP BY name ORDER BY name",
        None,
    ),
]


@pytest.mark.parametrize(("sql", "duck_sql"), QUERIES)
def test_same_answer_as_duckdb(
    sql: str, duck_sql: str | None, events: list[Event], duck: duckdb.DuckDBPyConnection
) -> None:
    expected = duck.execute(duck_sql or sql).fetchall()
    assert expected, "a query with no rows proves little; pick another"
    ours = flakehouse_answer(sql, events)
    assert same(ours, expected), (ours, expected)


def close(ours: Sequence[tuple[Any, ...]], theirs: Sequence[tuple[Any, ...]], rel: float) -> bool:
    """Like `same`, but floats (percentiles) within `rel` relative error (plus float rounding)
    and ints (distinct counts) within `rel` too."""
    if len(ours) != len(theirs):
        return False
    for a_row, b_row in zip(ours, theirs, strict=True):
        for a, b in zip(a_row, b_row, strict=True):
            if isinstance(b, int | float) and not isinstance(b, bool):
                if type(a) is not type(b) or abs(a - b) > rel * (1 + 1e-9) * abs(b):
                    return False
            elif type(a) is not type(b) or a != b:
                return False
    return True


# Percentiles are DDSketch estimates, within 1 % of DuckDB's quantile_cont (here every pair of
# neighbouring ranks has one sign: durations and retries are never negative).
PERCENTILE_QUERIES: list[tuple[str, str]] = [
    (
        "SELECT suite, p50(duration), percentile(duration, 0.9), p99(retries) FROM ci"
        " GROUP BY suite ORDER BY suite",
        "SELECT suite, quantile_cont(duration, 0.5), quantile_cont(duration, 0.9),"
        " quantile_cont(retries, 0.99) FROM ci GROUP BY suite ORDER BY suite",
    ),
    (
        "SELECT p95(duration), percentile(retries, 0.5), percentile(timestamp, 1) FROM ci"
        " WHERE status != 'passed'",
        "SELECT quantile_cont(duration, 0.95), quantile_cont(retries, 0.5),"
        " quantile_cont(timestamp, 1.0) FROM ci WHERE status != 'passed'",
    ),
    (
        "SELECT suite, p95(duration) FILTER (WHERE status = 'passed') FROM ci GROUP BY suite"
        " ORDER BY suite",
        "SELECT suite, quantile_cont(duration, 0.95) FILTER (WHERE status = 'passed') FROM ci"
        " GROUP BY suite ORDER BY suite",
    ),
    (
        "SELECT status, p90(duration) AS slow FROM ci GROUP BY status"
        " HAVING p50(duration) > 1 ORDER BY slow DESC",
        "SELECT status, quantile_cont(duration, 0.9) AS slow FROM ci GROUP BY status"
        " HAVING quantile_cont(duration, 0.5) > 1 ORDER BY slow DESC",
    ),
]


@pytest.mark.parametrize(("sql", "duck_sql"), PERCENTILE_QUERIES)
def test_percentiles_within_1_percent_of_duckdb(
    sql: str, duck_sql: str, events: list[Event], duck: duckdb.DuckDBPyConnection
) -> None:
    expected = duck.execute(duck_sql).fetchall()
    assert expected
    ours = flakehouse_answer(sql, events)
    assert close(ours, expected, 0.01), (ours, expected)
    assert not close(ours, [(*row[:-1], row[-1] * 1.02) for row in expected], 0.01)


def test_count_distinct_past_the_exact_limit_within_2_percent() -> None:
    rng = random.Random(3)
    events: list[Event] = [
        {
            "timestamp": START + i,
            "name": f"test_{rng.randrange(40_000)}",
            "suite": rng.choice(["unit", "e2e"]),
        }
        for i in range(60_000)
    ]
    connection = duckdb.connect()
    connection.register("ci", {c: np.array([e[c] for e in events]) for c in events[0]})
    sql = "SELECT suite, count(DISTINCT name) FROM ci GROUP BY suite ORDER BY suite"
    expected = connection.execute(sql).fetchall()
    assert all(n > 4 * 4096 for _, n in expected)  # well past the exact limit
    ours = flakehouse_answer(sql, events)
    assert close(ours, expected, 0.02), (ours, expected)
    assert not close(ours, [(k, round(n * 1.03)) for k, n in expected], 0.02)


def test_the_oracle_notices_a_wrong_answer(
    events: list[Event], duck: duckdb.DuckDBPyConnection
) -> None:
    # Guard against a comparison that always passes.
    sql = "SELECT suite, count(*) FROM ci GROUP BY suite ORDER BY suite"
    ours = flakehouse_answer(sql, events)
    expected = duck.execute(sql).fetchall()
    assert same(ours, expected)
    assert not same(ours[:-1], expected)
    assert not same([(ours[0][0], ours[0][1] + 1), *ours[1:]], expected)
    assert not same([(r[0], float(r[1])) for r in ours], expected)
