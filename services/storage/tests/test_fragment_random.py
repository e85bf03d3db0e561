"""Randomized checks of the executor: thousands of generated events and hundreds of generated
plans, against (1) a row-at-a-time pure-Python reference of the documented semantics, with
mixed-type fields, and (2) DuckDB, on single-typed fields where SQL semantics apply unchanged."""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Callable
from typing import Any

import duckdb
import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from flakehouse.storage.segment import SegmentView

Event = dict[str, Any]
STATUSES = ["passed", "failed", "error", "skipped"]
SUITES = [f"suite{i:02d}" for i in range(12)]


# -- the reference: one row at a time, straight from the documented rules ------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_PY_OPS: dict[int, Callable[[Any, Any], bool]] = {
    plan_pb2.COMPARE_OP_EQ: lambda a, b: a == b,
    plan_pb2.COMPARE_OP_NE: lambda a, b: a != b,
    plan_pb2.COMPARE_OP_LT: lambda a, b: a < b,
    plan_pb2.COMPARE_OP_LE: lambda a, b: a <= b,
    plan_pb2.COMPARE_OP_GT: lambda a, b: a > b,
    plan_pb2.COMPARE_OP_GE: lambda a, b: a >= b,
}


def _ref_compare(x: Any, op: int, literal: Any) -> bool | None:
    if literal is None or x is None:
        return None
    comparable = _is_number(x) if _is_number(literal) else type(x) is type(literal)
    return _PY_OPS[op](x, literal) if comparable else None


def _ref_eval(expr: plan_pb2.Expr, ev: Event) -> bool | None:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return _ref_compare(ev.get(c.field), c.op, v.from_value(c.value))
    if kind == "in_list":
        x = ev.get(expr.in_list.field)
        literals = [v.from_value(val) for val in expr.in_list.values]
        if any(_ref_compare(x, plan_pb2.COMPARE_OP_EQ, lit) for lit in literals):
            result: bool | None = True
        elif x is None or None in literals:
            result = None
        else:
            result = False
        return result if not expr.in_list.negated or result is None else not result
    if kind == "like":
        x = ev.get(expr.like.field)
        if not isinstance(x, str):
            return None
        regex = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in expr.like.pattern
        )
        matched = re.fullmatch(regex, x, re.DOTALL) is not None
        return matched != expr.like.negated
    if kind == "is_null":
        return (ev.get(expr.is_null.field) is None) != expr.is_null.negated
    if kind == "not":
        inner = _ref_eval(getattr(expr, "not").operand, ev)
        return None if inner is None else not inner
    j = expr.junction
    results = [_ref_eval(o, ev) for o in j.operands]
    if j.op == plan_pb2.JUNCTION_OP_AND:
        return False if False in results else None if None in results else True
    return True if True in results else None if None in results else False


def _ref_tag(x: Any) -> tuple[str, Any] | None:
    return None if x is None else (v.TYPE_NAMES[v.type_of(x)], x)


def _ref_key(plan: plan_pb2.QueryPlan, ev: Event) -> tuple[Any, ...]:
    key = []
    for k in plan.group_by:
        if k.WhichOneof("kind") == "field":
            key.append(_ref_tag(ev.get(k.field)))
        else:
            key.append(("int", ev["timestamp"] // k.time_bucket_us * k.time_bucket_us))
    return tuple(key)


def _num_better(new: Any, old: Any, is_min: bool) -> bool:
    if new == old:
        return isinstance(new, int) and isinstance(old, float)
    return new < old if is_min else new > old


def _ref_state(agg: plan_pb2.Aggregate, rows: list[Event]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "count": 0,
        "sum": 0.0,
        "int_sum": 0,
        "float_seen": False,
        "extreme": None,
    }
    F = plan_pb2.AggregateFunction
    xs = [r.get(agg.field) for r in rows]
    if agg.function == F.AGGREGATE_FUNCTION_COUNT:
        state["count"] = len(rows)
    elif agg.function == F.AGGREGATE_FUNCTION_COUNT_FIELD:
        state["count"] = sum(x is not None for x in xs)
    elif agg.function in (F.AGGREGATE_FUNCTION_SUM, F.AGGREGATE_FUNCTION_AVG):
        ints = [x for x in xs if _is_number(x) and isinstance(x, int)]
        floats = [x for x in xs if isinstance(x, float)]
        state.update(
            count=len(ints) + len(floats),
            int_sum=sum(ints),
            sum=math.fsum(floats),
            float_seen=bool(floats),
        )
    else:
        is_min = agg.function == F.AGGREGATE_FUNCTION_MIN
        numbers = [x for x in xs if _is_number(x)]
        if numbers:
            best = numbers[0]
            for x in numbers[1:]:
                if _num_better(x, best, is_min):
                    best = x
            state["extreme"] = _ref_tag(best)
        else:
            for kind in (str, bool):
                typed = [x for x in xs if type(x) is kind]
                if typed:
                    state["extreme"] = _ref_tag(min(typed) if is_min else max(typed))
                    break
    return state


def _ref_matches(plan: plan_pb2.QueryPlan, events: list[Event]) -> list[Event]:
    tr = plan.time_range
    return [
        e
        for e in events
        if (not tr.HasField("start_us") or e["timestamp"] >= tr.start_us)
        and (not tr.HasField("end_us") or e["timestamp"] < tr.end_us)
        and (not plan.HasField("filter") or _ref_eval(plan.filter, e) is True)
    ]


def _ref_groups(plan: plan_pb2.QueryPlan, matched: list[Event]) -> dict[Any, list[Any]]:
    buckets: dict[Any, list[Event]] = {}
    for e in matched:
        buckets.setdefault(_ref_key(plan, e), []).append(e)
    if not plan.group_by and not buckets:
        buckets[()] = []
    return {k: [_ref_state(a, rows) for a in plan.aggregates] for k, rows in buckets.items()}


def _order_rank(x: Any) -> tuple[int, Any]:
    if x is None:
        return (3, None)
    if _is_number(x):
        return (0, x)
    return (1, x) if isinstance(x, str) else (2, x)


def _ref_compare_rows(plan: plan_pb2.QueryPlan, a: Event, b: Event) -> int:
    for ob in plan.order_by:
        (ra, xa), (rb, xb) = _order_rank(a.get(ob.field)), _order_rank(b.get(ob.field))
        if ra != rb:
            return -1 if ra < rb else 1
        if ra == 3 or xa == xb:
            continue
        less = xa < xb
        return (1 if less else -1) if ob.descending else (-1 if less else 1)
    return 0


# -- generated data and plans --------------------------------------------------------------------


def _mixed_events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        e: Event = {"timestamp": rng.randrange(-50_000, 10_000_000), "id": i, "_id": 10_000 + i}
        r = rng.random()
        if r < 0.85:
            e["status"] = rng.choice(STATUSES)
        elif r < 0.93:
            e["status"] = rng.randrange(3)
        if rng.random() < 0.9:
            e["suite"] = rng.choice(SUITES)
        r = rng.random()
        if r < 0.6:
            e["duration"] = rng.randrange(0, 400) / 4
        elif r < 0.8:
            e["duration"] = rng.randrange(0, 100)
        elif r < 0.85:
            e["duration"] = rng.choice(["slow", "fast"])
        r = rng.random()
        if r < 0.5:
            e["retries"] = rng.randrange(4)
        elif r < 0.6:
            e["retries"] = rng.random() < 0.5
        if rng.random() < 0.4:
            e["flaky"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["line"] = rng.randrange(-(2**40), 2**40)
        events.append(e)
    return events


def _literal(rng: random.Random, field: str, typed: bool) -> Any:
    """A literal for `field`; unless `typed`, of any type (mismatches are the point)."""
    by_field: dict[str, list[Any]] = {
        "status": [*STATUSES, "a", "zzz"],
        "suite": [*SUITES, "suite", "suite99"],
        "duration": [0, 1, 12.5, 50, 99.75, 100, -1.5],
        "retries": [0, 1, 2, 3, 2.5],
        "flaky": [True, False],
        "line": [0, -(2**39), 2**39, 12345],
        "timestamp": [0, 1_000_000, 5_000_000, -10],
        "id": [0, 100, 1500],
    }
    pool = by_field[field]
    if not typed:
        if rng.random() < 0.05:
            return None
        if rng.random() < 0.25:
            pool = [0, 1, 2.5, "passed", "slow", True, False, "suite03"]
    return rng.choice(pool)


OPS = list(_PY_OPS)


def _random_expr(rng: random.Random, fields: list[str], depth: int, typed: bool) -> plan_pb2.Expr:
    r = rng.random()
    if depth > 0 and r < 0.3:
        op = rng.choice([plan_pb2.JUNCTION_OP_AND, plan_pb2.JUNCTION_OP_OR])
        operands = [_random_expr(rng, fields, depth - 1, typed) for _ in range(rng.randrange(4))]
        return plan_pb2.Expr(junction=plan_pb2.Junction(op=op, operands=operands))
    if depth > 0 and r < 0.4:
        expr = plan_pb2.Expr()
        getattr(expr, "not").operand.CopyFrom(_random_expr(rng, fields, depth - 1, typed))
        return expr
    field = rng.choice(fields)
    r = rng.random()
    if r < 0.55:
        literal = _literal(rng, field, typed)
        if typed and literal is not None and isinstance(literal, bool):
            op = rng.choice([plan_pb2.COMPARE_OP_EQ, plan_pb2.COMPARE_OP_NE])
        else:
            op = rng.choice(OPS)
        return plan_pb2.Expr(
            compare=plan_pb2.Compare(op=op, field=field, value=v.to_value(literal))
        )
    if r < 0.75:
        literals = [_literal(rng, field, typed) for _ in range(rng.randrange(1, 4))]
        if typed and rng.random() < 0.8:
            literals = [x for x in literals if x is not None] or [_literal(rng, field, True)]
        return plan_pb2.Expr(
            in_list=plan_pb2.InList(
                field=field,
                values=[v.to_value(x) for x in literals],
                negated=rng.random() < 0.5,
            )
        )
    if r < 0.88 and (not typed or field in ("status", "suite")):
        pattern = rng.choice(["%ed", "pass%", "_rror", "suite0_", "%1%", "%", "s%e%", "x%"])
        return plan_pb2.Expr(
            like=plan_pb2.Like(field=field, pattern=pattern, negated=rng.random() < 0.5)
        )
    return plan_pb2.Expr(is_null=plan_pb2.IsNull(field=field, negated=rng.random() < 0.5))


AGG_FUNCTIONS = ["count", "count_field", "sum", "avg", "min", "max"]


def _random_plan(
    rng: random.Random, kit: Any, fields: list[str], numeric: list[str], typed: bool
) -> plan_pb2.QueryPlan:
    plan_filter = _random_expr(rng, fields, 3, typed) if rng.random() < 0.8 else None
    start = rng.choice([None, None, 0, 2_000_000]) if rng.random() < 0.5 else None
    end = rng.choice([None, 8_000_000, 3_000_000]) if rng.random() < 0.5 else None
    if rng.random() < 0.7:
        keys: list[str | int] = rng.sample(
            ["status", "suite", "retries", "flaky"], rng.randrange(3)
        )
        if rng.random() < 0.3:
            keys.append(rng.choice([1_000_000, 3_600_000_000, 7]))
        aggs = []
        for _ in range(rng.randrange(1, 5)):
            fn = rng.choice(AGG_FUNCTIONS)
            if fn == "count":
                aggs.append(kit.agg(fn))
            else:
                pool = numeric if typed and fn in ("sum", "avg") else fields
                aggs.append(kit.agg(fn, rng.choice(pool)))
        return kit.plan(filter=plan_filter, group_by=keys, aggregates=aggs, start=start, end=end)  # type: ignore[no-any-return]
    order = [(f, rng.random() < 0.5) for f in rng.sample(fields, rng.randrange(0, 3))]
    select = ["id", *(f for f, _ in order), *rng.sample(fields, 2)]
    return kit.plan(  # type: ignore[no-any-return]
        filter=plan_filter,
        select=select,
        order_by=order,
        limit=rng.choice([0, 1, 10, 100]),
        start=start,
        end=end,
    )


def _segments(kit: Any, rng: random.Random, events: list[Event]) -> list[SegmentView]:
    """The events cut into segments of random sizes, all sealed and decoded but the last."""
    views: list[SegmentView] = []
    cuts = sorted(rng.sample(range(1, len(events)), rng.randrange(0, 6)))
    for seq, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, len(events)], strict=True)):
        builder = SegmentBuilder("ci", 0, seq)
        at = lo
        while at < hi:
            step = rng.randrange(1, 400)
            builder.add(kit.batch(events[at : min(hi, at + step)]), offset=at)
            at += step
        views.append(builder.view() if hi == len(events) else decode_segment(builder.seal()))
    return views


def _close(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    """Group maps equal, float sums within rounding (summation order differs)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        for sa, sb in zip(a[key], b[key], strict=True):
            if not math.isclose(sa["sum"], sb["sum"], rel_tol=1e-9, abs_tol=1e-9):
                return False
            if {**sa, "sum": 0} != {**sb, "sum": 0}:
                return False
    return True


def _row_dicts(plan: plan_pb2.QueryPlan, result: plan_pb2.PartialResult) -> list[Event]:
    out = []
    for row in result.rows:
        d = {f: v.from_value(x) for f, x in zip(plan.select_fields, row.values, strict=True)}
        out.append({k: x for k, x in d.items() if x is not None})
    return out


def _project(plan: plan_pb2.QueryPlan, rows: list[Event]) -> list[tuple[Any, ...]]:
    return [tuple(_ref_tag(r.get(f)) for f in plan.select_fields) for r in rows]


FIELDS = ["status", "suite", "duration", "retries", "flaky", "line", "timestamp", "id"]


@pytest.mark.parametrize("seed", range(3))
def test_execute_matches_reference_on_mixed_types(kit: Any, seed: int) -> None:
    rng = random.Random(seed)
    events = _mixed_events(rng, 3000)
    _check_reference(kit, rng, events, _segments(kit, rng, events), 120)


def _dense(events: list[Event]) -> list[Event]:
    """Every field present on every row, in one type: the columns the fast paths take."""
    fill = {"status": "passed", "suite": "suite00", "duration": 0.25, "retries": 0,
            "flaky": False, "line": 1}  # fmt: skip
    return [
        {**e, **{f: d for f, d in fill.items() if type(e.get(f)) is not type(d)}} for e in events
    ]


@pytest.mark.parametrize("seed", range(2))
def test_dense_columns_match_reference(kit: Any, seed: int) -> None:
    rng = random.Random(200 + seed)
    events = _dense(_mixed_events(rng, 3000))
    _check_reference(kit, rng, events, _segments(kit, rng, events), 100)


def _sort_rank(x: Any) -> tuple[Any, ...]:
    return (9,) if x is None else (v.type_of(x), x != x, 0 if x != x else x)


@pytest.mark.parametrize(("seed", "field"), [(0, "duration"), (1, "status"), (2, "line")])
def test_clustered_segments_prune_and_match_reference(kit: Any, seed: int, field: str) -> None:
    # Segments cut from events sorted by a field have narrow min/max stats: many are skipped.
    rng = random.Random(300 + seed)
    events = sorted(_mixed_events(rng, 3000), key=lambda e: _sort_rank(e.get(field)))
    views = []
    for seq, lo in enumerate(range(0, len(events), 200)):
        builder = SegmentBuilder("ci", 0, seq)
        builder.add(kit.batch(events[lo : lo + 200]), offset=seq)
        views.append(decode_segment(builder.seal()) if seq % 3 else builder.view())
    skipped = _check_reference(kit, rng, events, views, 150)
    assert skipped > 0


def _check_reference(
    kit: Any, rng: random.Random, events: list[Event], views: list[SegmentView], plans: int
) -> int:
    """Random plans over `views` (holding `events`) against the reference; returns how many
    segments were skipped in all."""
    skipped = 0
    for _ in range(plans):
        plan = _random_plan(rng, kit, FIELDS, FIELDS, typed=False)
        result = fragment.execute(plan, views)
        skipped += result.stats.segments_skipped
        matched = _ref_matches(plan, events)
        assert result.stats.rows_matched == len(matched) or (not plan.order_by and plan.limit), plan
        if plan.aggregates or plan.group_by:
            assert _close(kit.groups(result), _ref_groups(plan, matched)), plan
            continue
        got = _row_dicts(plan, result)
        ordered = sorted(
            matched, key=functools.cmp_to_key(functools.partial(_ref_compare_rows, plan))
        )
        if plan.limit:
            ordered = ordered[: plan.limit]
        assert len(got) == len(ordered), plan
        if plan.order_by:
            # Ties may come in any order: compare the order keys, and the rows as multisets
            # when nothing was cut off.
            fields_ordered = [ob.field for ob in plan.order_by]
            # Numbers compare by value: 1 and 1.0 are a tie.
            assert [[_order_rank(r.get(f)) for f in fields_ordered] for r in got] == [
                [_order_rank(r.get(f)) for f in fields_ordered] for r in ordered
            ], plan
        by_id = {e["id"]: e for e in matched}
        # Every row is a matching event, with its values, each at most once.
        assert len({r["id"] for r in got}) == len(got)
        assert _project(plan, got) == _project(plan, [by_id[r["id"]] for r in got]), plan
        if not plan.limit:
            assert {r["id"] for r in got} == set(by_id)
    return skipped


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
        else f'(floor("timestamp" / {k.time_bucket_us}) * {k.time_bucket_us})::BIGINT'
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
    views = _segments(kit, rng, events)
    con = _duckdb_table(events)
    fields = ["status", "suite", "duration", "retries", "flaky", "line", "timestamp"]
    numeric = ["duration", "retries", "line", "timestamp"]
    for _ in range(100):
        plan = _random_plan(rng, kit, fields, numeric, typed=True)
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
