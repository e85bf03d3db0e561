"""Generated plans and segments for the randomized executor tests (test_fragment_against_*.py):
random filters, groupings and orderings over the fields the tests' events carry."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from flakehouse.storage.segment import SegmentView

Event = dict[str, Any]
STATUSES = ["passed", "failed", "error", "skipped"]
SUITES = [f"suite{i:02d}" for i in range(12)]

PY_OPS: dict[int, Callable[[Any, Any], bool]] = {
    plan_pb2.COMPARE_OP_EQ: lambda a, b: a == b,
    plan_pb2.COMPARE_OP_NE: lambda a, b: a != b,
    plan_pb2.COMPARE_OP_LT: lambda a, b: a < b,
    plan_pb2.COMPARE_OP_LE: lambda a, b: a <= b,
    plan_pb2.COMPARE_OP_GT: lambda a, b: a > b,
    plan_pb2.COMPARE_OP_GE: lambda a, b: a >= b,
}


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


OPS = list(PY_OPS)


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


def random_plan(
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


def segments(kit: Any, rng: random.Random, events: list[Event]) -> list[SegmentView]:
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
