"""Plans as DuckDB SQL for the randomized DuckDB comparisons (test_*_against_duckdb.py): filters,
computed columns (each `$k` spelled out as its expression), aggregates with their FILTER, and
our answers read back from the mergeable states the way SQL prints them."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import duckdb

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.storage import fragment

Names = dict[str, str]
"""The SQL of each computed column, by its name."""

SQL_OPS = {
    plan_pb2.COMPARE_OP_EQ: "=",
    plan_pb2.COMPARE_OP_NE: "<>",
    plan_pb2.COMPARE_OP_LT: "<",
    plan_pb2.COMPARE_OP_LE: "<=",
    plan_pb2.COMPARE_OP_GT: ">",
    plan_pb2.COMPARE_OP_GE: ">=",
}
_ARITHMETIC = {
    plan_pb2.SCALAR_FUNCTION_ADD: "+",
    plan_pb2.SCALAR_FUNCTION_SUBTRACT: "-",
    plan_pb2.SCALAR_FUNCTION_MULTIPLY: "*",
}
_NAMED = {
    plan_pb2.SCALAR_FUNCTION_LOWER: "lower",
    plan_pb2.SCALAR_FUNCTION_UPPER: "upper",
    plan_pb2.SCALAR_FUNCTION_LENGTH: "length",
    plan_pb2.SCALAR_FUNCTION_SUBSTR: "substring",
    plan_pb2.SCALAR_FUNCTION_SPLIT_PART: "split_part",
    plan_pb2.SCALAR_FUNCTION_REGEXP_MATCHES: "regexp_matches",
    plan_pb2.SCALAR_FUNCTION_COALESCE: "coalesce",
}
_F = plan_pb2.AggregateFunction


def sql_literal(x: Any) -> str:
    if x is None:
        return "NULL"
    if isinstance(x, bool):
        return "TRUE" if x else "FALSE"
    if isinstance(x, str):
        return "'" + x.replace("'", "''") + "'"
    return repr(x)


def column(name: str, names: Names | None = None) -> str:
    return (names or {}).get(name) or f'"{name}"'


def expr_sql(expr: plan_pb2.Expr, names: Names | None = None) -> str:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return f"({column(c.field, names)} {SQL_OPS[c.op]} {sql_literal(v.from_value(c.value))})"
    if kind == "in_list":
        items = ", ".join(sql_literal(v.from_value(x)) for x in expr.in_list.values)
        neg = "NOT " if expr.in_list.negated else ""
        return f"({column(expr.in_list.field, names)} {neg}IN ({items}))"
    if kind == "like":
        neg = "NOT " if expr.like.negated else ""
        return f"({column(expr.like.field, names)} {neg}LIKE {sql_literal(expr.like.pattern)})"
    if kind == "is_null":
        neg = "NOT " if expr.is_null.negated else ""
        return f"({column(expr.is_null.field, names)} IS {neg}NULL)"
    if kind == "not":
        return f"(NOT {expr_sql(getattr(expr, 'not').operand, names)})"
    j = expr.junction
    if not j.operands:
        return "TRUE" if j.op == plan_pb2.JUNCTION_OP_AND else "FALSE"
    glue = " AND " if j.op == plan_pb2.JUNCTION_OP_AND else " OR "
    return "(" + glue.join(expr_sql(o, names) for o in j.operands) + ")"


def scalar_sql(scalar: plan_pb2.Scalar, names: Names) -> str:
    """A computed column as DuckDB computes it under the IR's rules: literals typed BIGINT and
    DOUBLE (not DuckDB's INTEGER and DECIMAL), an int overflow NULL (TRY), and division or
    modulo by zero NULL where DuckDB gives an error, an infinity or NaN."""
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        return column(scalar.field, names)
    if kind == "literal":
        value = v.from_value(scalar.literal)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"({value})::BIGINT"
        if isinstance(value, float):
            return f"({value!r})::DOUBLE"
        return sql_literal(value)
    if kind == "case_when":
        case = scalar.case_when
        parts = [
            f"WHEN {expr_sql(b.condition, names)} THEN {scalar_sql(b.value, names)}"
            for b in case.branches
        ]
        if case.HasField("otherwise"):
            parts.append(f"ELSE {scalar_sql(case.otherwise, names)}")
        return f"(CASE {' '.join(parts)} END)"
    call = scalar.call
    args = [scalar_sql(arg, names) for arg in call.args]
    if call.function in _ARITHMETIC:
        return f"TRY({args[0]} {_ARITHMETIC[call.function]} {args[1]})"
    if call.function == plan_pb2.SCALAR_FUNCTION_DIVIDE:
        return f"(CASE WHEN {args[1]} = 0 THEN NULL ELSE {args[0]} / {args[1]} END)"
    if call.function == plan_pb2.SCALAR_FUNCTION_MODULO:
        return f"(CASE WHEN {args[1]} = 0 THEN NULL ELSE TRY({args[0]} % {args[1]}) END)"
    if call.function == plan_pb2.SCALAR_FUNCTION_NEGATE:
        return f"TRY(-{args[0]})"
    if call.function == plan_pb2.SCALAR_FUNCTION_DATE_TRUNC:
        # The zone's wall clock and back (exact for UTC, which the random plans use; the zones'
        # own rules are test_computed_dates').
        unit, ts, zone = args
        wall = f"timezone({zone}, make_timestamptz({ts}))"
        return f"epoch_us(timezone({zone}, date_trunc({unit}, {wall})))"
    if call.function == plan_pb2.SCALAR_FUNCTION_TIME_BUCKET:
        ts, width, months, zone = call.args
        interval = (
            f"to_months({months.literal.int_value})"
            if months.literal.int_value
            else f"to_microseconds({width.literal.int_value})"
        )
        return (
            f"epoch_us(time_bucket({interval}, make_timestamptz({args[0]}),"
            f" {sql_literal(zone.literal.string_value)}))"
        )
    return f"{_NAMED[call.function]}({', '.join(args)})"


def computed_names(plan: plan_pb2.QueryPlan) -> Names:
    names: Names = {}
    for k, scalar in enumerate(plan.computed):
        names[f"${k}"] = f"({scalar_sql(scalar, names)})"
    return names


def where_sql(plan: plan_pb2.QueryPlan, names: Names | None = None) -> str:
    parts = ["TRUE"]
    if plan.time_range.HasField("start_us"):
        parts.append(f'"timestamp" >= {plan.time_range.start_us}')
    if plan.time_range.HasField("end_us"):
        parts.append(f'"timestamp" < {plan.time_range.end_us}')
    if plan.HasField("filter"):
        parts.append(expr_sql(plan.filter, names))
    return " AND ".join(parts)


def duckdb_table(
    events: list[dict[str, Any]], columns: dict[str, str]
) -> duckdb.DuckDBPyConnection:
    """A table `t` of the events, one column per entry of `columns` (name: SQL type)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" {t}' for c, t in columns.items()) + ")")
    for lo in range(0, len(events), 500):
        values = ", ".join(
            "(" + ", ".join(sql_literal(e.get(c)) for c in columns) + ")"
            for e in events[lo : lo + 500]
        )
        con.execute(f"INSERT INTO t VALUES {values}")
    return con


def aggregate_sql(a: plan_pb2.Aggregate, names: Names) -> str:
    f = column(a.field, names)
    sql = {
        _F.AGGREGATE_FUNCTION_COUNT: "count(*)",
        _F.AGGREGATE_FUNCTION_COUNT_FIELD: f"count({f})",
        _F.AGGREGATE_FUNCTION_SUM: f"sum({f})",
        _F.AGGREGATE_FUNCTION_AVG: f"avg({f})",
        _F.AGGREGATE_FUNCTION_MIN: f"min({f})",
        _F.AGGREGATE_FUNCTION_MAX: f"max({f})",
        _F.AGGREGATE_FUNCTION_STDDEV_SAMP: f"stddev_samp({f})",
        _F.AGGREGATE_FUNCTION_STDDEV_POP: f"stddev_pop({f})",
    }[a.function]
    if a.HasField("filter"):
        sql += f" FILTER (WHERE {expr_sql(a.filter, names)})"
    return sql


def duck_groups(
    con: duckdb.DuckDBPyConnection, plan: plan_pb2.QueryPlan
) -> dict[tuple[Any, ...], list[Any]]:
    """DuckDB's answer to an aggregate plan: {key tuple: [aggregate values]}."""
    names = computed_names(plan)
    keys = [
        column(k.field, names)
        if k.WhichOneof("kind") == "field"
        # DuckDB's own time_bucket, whose origin (2000-01-03) the plan's buckets share.
        else f"epoch_us(time_bucket(to_microseconds({k.time_bucket_us}::BIGINT),"
        ' make_timestamp("timestamp")))'
        for k in plan.group_by
    ]
    select = ", ".join([*keys, *(aggregate_sql(a, names) for a in plan.aggregates)])
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    rows = con.execute(f"SELECT {select} FROM t WHERE {where_sql(plan, names)}{group}").fetchall()
    return {tuple(r[: len(keys)]): list(r[len(keys) :]) for r in rows}


def duck_rows(con: duckdb.DuckDBPyConnection, plan: plan_pb2.QueryPlan) -> list[tuple[Any, ...]]:
    """DuckDB's answer to a raw-rows plan."""
    names = computed_names(plan)
    order = ", ".join(
        f"{column(ob.field, names)} {'DESC' if ob.descending else 'ASC'} NULLS LAST"
        for ob in plan.order_by
    )
    sql = (
        f"SELECT {', '.join(column(f, names) for f in plan.select_fields)} FROM t "
        f"WHERE {where_sql(plan, names)}"
        + (f" ORDER BY {order}" if order else "")
        + (f" LIMIT {plan.limit}" if plan.limit else "")
    )
    return con.execute(sql).fetchall()


def our_answer(agg: plan_pb2.Aggregate, s: Any) -> Any:
    """What SQL would print for one aggregate, from our mergeable state (conftest's State)."""
    if agg.function in (_F.AGGREGATE_FUNCTION_COUNT, _F.AGGREGATE_FUNCTION_COUNT_FIELD):
        return s.count
    if agg.function == _F.AGGREGATE_FUNCTION_SUM:
        if not s.count:
            return None
        return s.int_sum + s.sum if s.float_seen else s.int_sum
    if agg.function == _F.AGGREGATE_FUNCTION_AVG:
        return (s.int_sum + s.sum) / s.count if s.count else None
    if agg.function == _F.AGGREGATE_FUNCTION_STDDEV_SAMP:
        return math.sqrt(s.square / (s.count - 1)) if s.count > 1 else None
    if agg.function == _F.AGGREGATE_FUNCTION_STDDEV_POP:
        return math.sqrt(s.square / s.count) if s.count else None
    return None if s.extreme is None else v.from_value(s.extreme)


def same(a: Any, b: Any, rel: float = 1e-9) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)
    return type(a) is type(b) and a == b


def check_against_duckdb(
    con: duckdb.DuckDBPyConnection,
    views: list[Any],
    plans: Iterable[plan_pb2.QueryPlan],
    kit: Any,
) -> None:
    """Each plan executed over `views` answers as DuckDB does over table `t` of the same
    events: the same groups with the same aggregates; the same rows in the same order (ties in
    any order)."""
    for plan in plans:
        result = fragment.execute(plan, views)
        if plan.aggregates or plan.group_by:
            expected = duck_groups(con, plan)
            got = {
                tuple(v.from_value(k) for k in g.key): [
                    our_answer(a, s) for a, s in zip(plan.aggregates, g.states, strict=True)
                ]
                for g in kit.group_list(result)
            }
            assert got.keys() == expected.keys(), plan
            for key, answers in got.items():
                assert all(same(a, b) for a, b in zip(answers, expected[key], strict=True)), (
                    plan,
                    key,
                    answers,
                    expected[key],
                )
            continue
        expected_rows = duck_rows(con, plan)
        got_rows = kit.rows(result)
        assert len(got_rows) == len(expected_rows), plan
        n_keys = len(plan.order_by)
        # Columns 1..n are the order fields: their sequence is determined, ties are not.
        assert [r[1 : 1 + n_keys] for r in got_rows] == [
            r[1 : 1 + n_keys] for r in expected_rows
        ], plan
        if not plan.limit:
            assert sorted(map(repr, got_rows)) == sorted(map(repr, expected_rows)), plan
