"""Randomized checks of the executor against DuckDB: thousands of generated events and hundreds
of generated plans (random_plans.py), on single-typed fields where SQL semantics apply unchanged."""

from __future__ import annotations

import math
import random
from typing import Any

import duckdb
import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.storage import fragment
from services.storage.tests.random_plans import STATUSES, SUITES, Event, random_plan, segments

# -- DuckDB on single-typed fields ---------------------------------------------------------------


COLUMNS = {
    "timestamp": "BIGINT",
    "id": "BIGINT",
    "status": "VARCHAR",
    "suite": "VARCHAR",
    "duration": "DOUBLE",
    "retries": "BIGINT",
    "flaky": "BOOLEAN",
    "line": "BIGINT",
}


def _typed_events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        e: Event = {"timestamp": rng.randrange(0, 10_000_000), "id": i, "_id": 50_000 + i}
        if rng.random() < 0.9:
            e["status"] = rng.choice(STATUSES)
        if rng.random() < 0.9:
            e["suite"] = rng.choice(SUITES)
        if rng.random() < 0.8:
            e["duration"] = rng.randrange(0, 400) / 4
        if rng.random() < 0.6:
            e["retries"] = rng.randrange(4)
        if rng.random() < 0.4:
            e["flaky"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["line"] = rng.randrange(-(2**40), 2**40)
        events.append(e)
    return events


def _sql_literal(x: Any) -> str:
    if x is None:
        return "NULL"
    if isinstance(x, bool):
        return "TRUE" if x else "FALSE"
    if isinstance(x, str):
        return "'" + x.replace("'", "''") + "'"
    return repr(x)


SQL_OPS = {
    plan_pb2.COMPARE_OP_EQ: "=",
    plan_pb2.COMPARE_OP_NE: "<>",
    plan_pb2.COMPARE_OP_LT: "<",
    plan_pb2.COMPARE_OP_LE: "<=",
    plan_pb2.COMPARE_OP_GT: ">",
    plan_pb2.COMPARE_OP_GE: ">=",
}


def _sql(expr: plan_pb2.Expr) -> str:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return f'("{c.field}" {SQL_OPS[c.op]} {_sql_literal(v.from_value(c.value))})'
    if kind == "in_list":
        items = ", ".join(_sql_literal(v.from_value(x)) for x in expr.in_list.values)
        neg = "NOT " if expr.in_list.negated else ""
        return f'("{expr.in_list.field}" {neg}IN ({items}))'
    if kind == "like":
        neg = "NOT " if expr.like.negated else ""
        return f'("{expr.like.field}" {neg}LIKE {_sql_literal(expr.like.pattern)})'
    if kind == "is_null":
        neg = "NOT " if expr.is_null.negated else ""
        return f'("{expr.is_null.field}" IS {neg}NULL)'
    if kind == "not":
        return f"(NOT {_sql(getattr(expr, 'not').operand)})"
    j = expr.junction
    if not j.operands:
        return "TRUE" if j.op == plan_pb2.JUNCTION_OP_AND else "FALSE"
    glue = " AND " if j.op == plan_pb2.JUNCTION_OP_AND else " OR "
    return "(" + glue.join(_sql(o) for o in j.operands) + ")"


def _where(plan: plan_pb2.QueryPlan) -> str:
    parts = ["TRUE"]
    if plan.time_range.HasField("start_us"):
        parts.append(f'"timestamp" >= {plan.time_range.start_us}')
    if plan.time_range.HasField("end_us"):
        parts.append(f'"timestamp" < {plan.time_range.end_us}')
    if plan.HasField("filter"):
        parts.append(_sql(plan.filter))
    return " AND ".join(parts)


def _duckdb_table(events: list[Event]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" {t}' for c, t in COLUMNS.items()) + ")")
    for lo in range(0, len(events), 500):
        values = ", ".join(
            "(" + ", ".join(_sql_literal(e.get(c)) for c in COLUMNS) + ")"
            for e in events[lo : lo + 500]
        )
        con.execute(f"INSERT INTO t VALUES {values}")
    return con


def _duck_groups(
    con: duckdb.DuckDBPyConnection, plan: plan_pb2.QueryPlan
) -> dict[tuple[Any, ...], list[Any]]:
    keys = [
        f'"{k.field}"'
        if k.WhichOneof("kind") == "field"
        # DuckDB's own time_bucket, whose origin (2000-01-03) the plan's buckets share.
        else f"epoch_us(time_bucket(to_microseconds({k.time_bucket_us}::BIGINT),"
        ' make_timestamp("timestamp")))'
        for k in plan.group_by
    ]
    F = plan_pb2.AggregateFunction
    sql_aggs = []
    for a in plan.aggregates:
        f = f'"{a.field}"'
        sql_aggs.append(
            {
                F.AGGREGATE_FUNCTION_COUNT: "count(*)",
                F.AGGREGATE_FUNCTION_COUNT_FIELD: f"count({f})",
                F.AGGREGATE_FUNCTION_SUM: f"sum({f})",
                F.AGGREGATE_FUNCTION_AVG: f"avg({f})",
                F.AGGREGATE_FUNCTION_MIN: f"min({f})",
                F.AGGREGATE_FUNCTION_MAX: f"max({f})",
            }[a.function]
        )
    select = ", ".join([*keys, *sql_aggs])
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    rows = con.execute(f"SELECT {select} FROM t WHERE {_where(plan)}{group}").fetchall()
    return {tuple(r[: len(keys)]): list(r[len(keys) :]) for r in rows}


def _our_answer(agg: plan_pb2.Aggregate, s: Any) -> Any:
    """What SQL would print for one aggregate, from our mergeable state."""
    F = plan_pb2.AggregateFunction
    if agg.function in (F.AGGREGATE_FUNCTION_COUNT, F.AGGREGATE_FUNCTION_COUNT_FIELD):
        return s.count
    if agg.function == F.AGGREGATE_FUNCTION_SUM:
        if not s.count:
            return None
        return s.int_sum + s.sum if s.float_seen else s.int_sum
    if agg.function == F.AGGREGATE_FUNCTION_AVG:
        return (s.int_sum + s.sum) / s.count if s.count else None
    return None if s.extreme is None else v.from_value(s.extreme)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("seed", range(3))
def test_execute_matches_duckdb_on_single_typed_fields(kit: Any, seed: int) -> None:
    rng = random.Random(1000 + seed)
    events = _typed_events(rng, 3000)
    views = segments(kit, rng, events)
    con = _duckdb_table(events)
    fields = ["status", "suite", "duration", "retries", "flaky", "line", "timestamp"]
    numeric = ["duration", "retries", "line", "timestamp"]
    for _ in range(100):
        plan = random_plan(rng, kit, fields, numeric, typed=True)
        result = fragment.execute(plan, views)
        if plan.aggregates or plan.group_by:
            expected = _duck_groups(con, plan)
            got = {
                tuple(v.from_value(k) for k in g.key): [
                    _our_answer(a, s) for a, s in zip(plan.aggregates, g.states, strict=True)
                ]
                for g in kit.group_list(result)
            }
            assert got.keys() == expected.keys(), plan
            for key, answers in got.items():
                assert all(_same(a, b) for a, b in zip(answers, expected[key], strict=True)), (
                    plan,
                    key,
                    answers,
                    expected[key],
                )
            continue
        order = ", ".join(
            f'"{ob.field}" {"DESC" if ob.descending else "ASC"} NULLS LAST' for ob in plan.order_by
        )
        sql = (
            f"SELECT {', '.join(chr(34) + f + chr(34) for f in plan.select_fields)} FROM t "
            f"WHERE {_where(plan)}"
            + (f" ORDER BY {order}" if order else "")
            + (f" LIMIT {plan.limit}" if plan.limit else "")
        )
        expected_rows = con.execute(sql).fetchall()
        got_rows = kit.rows(result)
        assert len(got_rows) == len(expected_rows), plan
        n_keys = len(plan.order_by)
        # Columns 1..n are the order fields: their sequence is determined, ties are not.
        assert [r[1 : 1 + n_keys] for r in got_rows] == [
            r[1 : 1 + n_keys] for r in expected_rows
        ], plan
        if not plan.limit:
            assert sorted(r[0] for r in got_rows) == sorted(r[0] for r in expected_rows)
