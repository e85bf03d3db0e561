"""Generated plans and segments for the randomized executor tests (test_fragment_against_*.py,
test_computed_against_*.py): random filters, groupings, orderings, aggregate filters and
computed columns over the fields the tests' events carry."""

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


Pools = dict[str, list[Any]]
"""Literals to compare further columns (computed ones) with, by name."""


def _literal(rng: random.Random, field: str, typed: bool, pools: Pools | None = None) -> Any:
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
        **(pools or {}),
    }
    pool = by_field[field]
    if not typed:
        if rng.random() < 0.05:
            return None
        if rng.random() < 0.25:
            pool = [0, 1, 2.5, "passed", "slow", True, False, "suite03"]
    return rng.choice(pool)


OPS = list(PY_OPS)


def random_expr(
    rng: random.Random, fields: list[str], depth: int, typed: bool, pools: Pools | None = None
) -> plan_pb2.Expr:
    r = rng.random()
    if depth > 0 and r < 0.3:
        op = rng.choice([plan_pb2.JUNCTION_OP_AND, plan_pb2.JUNCTION_OP_OR])
        operands = [
            random_expr(rng, fields, depth - 1, typed, pools) for _ in range(rng.randrange(4))
        ]
        return plan_pb2.Expr(junction=plan_pb2.Junction(op=op, operands=operands))
    if depth > 0 and r < 0.4:
        expr = plan_pb2.Expr()
        getattr(expr, "not").operand.CopyFrom(random_expr(rng, fields, depth - 1, typed, pools))
        return expr
    field = rng.choice(fields)
    r = rng.random()
    if r < 0.55:
        literal = _literal(rng, field, typed, pools)
        if typed and literal is not None and isinstance(literal, bool):
            op = rng.choice([plan_pb2.COMPARE_OP_EQ, plan_pb2.COMPARE_OP_NE])
        else:
            op = rng.choice(OPS)
        return plan_pb2.Expr(
            compare=plan_pb2.Compare(op=op, field=field, value=v.to_value(literal))
        )
    if r < 0.75:
        literals = [_literal(rng, field, typed, pools) for _ in range(rng.randrange(1, 4))]
        if typed and rng.random() < 0.8:
            literals = [x for x in literals if x is not None] or [_literal(rng, field, True, pools)]
        return plan_pb2.Expr(
            in_list=plan_pb2.InList(
                field=field,
                values=[v.to_value(x) for x in literals],
                negated=rng.random() < 0.5,
            )
        )
    if r < 0.88 and (
        not typed or field in ("status", "suite") or (pools or {}).get(field) is STRINGS
    ):
        pattern = rng.choice(["%ed", "pass%", "_rror", "suite0_", "%1%", "%", "s%e%", "x%"])
        return plan_pb2.Expr(
            like=plan_pb2.Like(field=field, pattern=pattern, negated=rng.random() < 0.5)
        )
    return plan_pb2.Expr(is_null=plan_pb2.IsNull(field=field, negated=rng.random() < 0.5))


AGG_FUNCTIONS = ["count", "count_field", "sum", "avg", "min", "max"]


def random_plan(
    rng: random.Random,
    kit: Any,
    fields: list[str],
    numeric: list[str],
    typed: bool,
    *,
    pools: Pools | None = None,
    keys: list[str] | None = None,
    computed: list[plan_pb2.Scalar] | None = None,
    filtered: float = 0.0,
) -> plan_pb2.QueryPlan:
    """`keys`: candidate group-by fields; `computed`: the plan's computed columns (named among
    `fields` as `$k`, their literals in `pools`); `filtered`: how often an aggregate gets a
    filter of its own."""
    plan_filter = random_expr(rng, fields, 3, typed, pools) if rng.random() < 0.8 else None
    start = rng.choice([None, None, 0, 2_000_000]) if rng.random() < 0.5 else None
    end = rng.choice([None, 8_000_000, 3_000_000]) if rng.random() < 0.5 else None
    keys = keys if keys is not None else ["status", "suite", "retries", "flaky"]
    plan: plan_pb2.QueryPlan
    if rng.random() < 0.7:
        group_by: list[str | int] = list(rng.sample(keys, min(len(keys), rng.randrange(3))))
        if rng.random() < 0.3:
            group_by.append(rng.choice([1_000_000, 3_600_000_000, 7]))
        aggs = []
        for _ in range(rng.randrange(1, 5)):
            fn = rng.choice(AGG_FUNCTIONS)
            if fn == "count":
                agg = kit.agg(fn)
            else:
                pool = numeric if typed and fn in ("sum", "avg") else fields
                agg = kit.agg(fn, rng.choice(pool))
            if rng.random() < filtered:
                agg.filter.CopyFrom(random_expr(rng, fields, 2, typed, pools))
            aggs.append(agg)
        plan = kit.plan(
            filter=plan_filter, group_by=group_by, aggregates=aggs, start=start, end=end
        )
    else:
        order = [(f, rng.random() < 0.5) for f in rng.sample(fields, rng.randrange(0, 3))]
        select = ["id", *(f for f, _ in order), *rng.sample(fields, 2)]
        plan = kit.plan(
            filter=plan_filter,
            select=select,
            order_by=order,
            limit=rng.choice([0, 1, 10, 100]),
            start=start,
            end=end,
        )
    plan.computed.extend(computed or [])
    return plan


# -- computed columns ----------------------------------------------------------------------------

NUMBERS = [0, 1, 2, -3, 7, 1000, 2**40, 2.5, 0.25, -1.5]
STRINGS = ["passed", "failed", "suite03", "PASSED", "", "e", "Suite"]
BOOLS = [True, False]
_POOLS = {"int": NUMBERS, "float": NUMBERS, "str": STRINGS, "bool": BOOLS}
_S = plan_pb2.ScalarFunction
_ARITHMETIC = [
    _S.SCALAR_FUNCTION_ADD,
    _S.SCALAR_FUNCTION_SUBTRACT,
    _S.SCALAR_FUNCTION_MULTIPLY,
    _S.SCALAR_FUNCTION_DIVIDE,
    _S.SCALAR_FUNCTION_MODULO,
]
_PATTERNS = ["e", "^s", "d$", "[0-9]", "(?i)PASS", "a|u", "ss+"]
_SEPARATORS = ["e", "0", "", "ss", "-"]
_UTC = plan_pb2.Scalar(literal=v.to_value("UTC"))


def _field(name: str) -> plan_pb2.Scalar:
    return plan_pb2.Scalar(field=name)


def _literal_scalar(value: Any) -> plan_pb2.Scalar:
    return plan_pb2.Scalar(literal=v.to_value(value))


def _call(function: int, *args: plan_pb2.Scalar) -> plan_pb2.Scalar:
    return plan_pb2.Scalar(call=plan_pb2.ScalarCall(function=function, args=args))  # type: ignore[arg-type]


class ScalarMaker:
    """Random computed columns. `typed`: each column keeps one type (int, float, str or bool)
    so that SQL can hold it (DuckDB); else the types of fields and branches mix freely."""

    def __init__(
        self,
        rng: random.Random,
        fields: dict[str, list[str]],
        typed: bool,
        int_args: list[str],
        pools: Pools | None = None,
    ) -> None:
        self.rng = rng
        self.base_pools = pools or {}
        self.fields = {kind: list(names) for kind, names in fields.items()}
        self.typed = typed
        self.int_args = int_args
        """Small int fields that may be substr's start or length."""
        self.types: dict[str, str] = {}

    def names(self) -> list[str]:
        return [name for names in self.fields.values() for name in names]

    def pools(self) -> Pools:
        return {**self.base_pools, **{name: _POOLS[kind] for name, kind in self.types.items()}}

    def columns(self, count: int) -> list[plan_pb2.Scalar]:
        """`count` computed columns, each may use the ones before it."""
        out = []
        for k in range(count):
            kind = self.rng.choice(["int", "float", "str", "str", "bool"])
            out.append(self.scalar(kind, 2))
            self.types[f"${k}"] = kind
            self.fields[kind].append(f"${k}")
        return out

    def scalar(self, kind: str, depth: int) -> plan_pb2.Scalar:
        rng = self.rng
        r = rng.random()
        if depth == 0 or r < 0.25:
            if rng.random() < 0.8 and self.fields[kind]:
                return _field(rng.choice(self.fields[kind]))
            value = rng.choice(_POOLS[kind])
            if self.typed and kind == "int" and isinstance(value, float):
                value = int(value)
            if self.typed and kind == "float":
                value = float(value)
            return _literal_scalar(value)
        if r < 0.35:
            return self._coalesce(kind, depth)
        if r < 0.45:
            return self._case(kind, depth)
        return getattr(self, f"_{kind}")(depth)

    def _sub(self, kind: str, depth: int) -> plan_pb2.Scalar:
        if not self.typed and self.rng.random() < 0.15:
            # A column of another type (a literal of one would be refused by the plan check).
            return _field(self.rng.choice(self.names()))
        return self.scalar(kind, depth - 1)

    def _coalesce(self, kind: str, depth: int) -> plan_pb2.Scalar:
        args = [self._sub(kind, depth) for _ in range(self.rng.randrange(1, 4))]
        return _call(_S.SCALAR_FUNCTION_COALESCE, *args)

    def _case(self, kind: str, depth: int) -> plan_pb2.Scalar:
        names = self.names()
        case = plan_pb2.CaseWhen()
        for _ in range(self.rng.randrange(1, 3)):
            case.branches.add(
                condition=random_expr(self.rng, names, 1, self.typed, self.pools()),
                value=self._sub(kind, depth),
            )
        if self.rng.random() < 0.6:
            case.otherwise.CopyFrom(self._sub(kind, depth))
        return plan_pb2.Scalar(case_when=case)

    def _int(self, depth: int) -> plan_pb2.Scalar:
        rng = self.rng
        r = rng.random()
        if r < 0.1:
            # On the timestamp: others may be beyond the calendar's range (and DuckDB's).
            unit = _literal_scalar(rng.choice(["hour", "day", "week", "month", "year"]))
            return _call(_S.SCALAR_FUNCTION_DATE_TRUNC, unit, _field("timestamp"), _UTC)
        if r < 0.15:
            width = _literal_scalar(rng.choice([7, 1_000_000, 3_600_000_000, 86_400_000_000]))
            return _call(
                _S.SCALAR_FUNCTION_TIME_BUCKET, _field("timestamp"), width, _literal_scalar(0), _UTC
            )
        if r < 0.3:
            return _call(_S.SCALAR_FUNCTION_LENGTH, self._sub("str", depth))
        if r < 0.3:
            return _call(_S.SCALAR_FUNCTION_NEGATE, self._sub("int", depth))
        function = rng.choice([f for f in _ARITHMETIC if f != _S.SCALAR_FUNCTION_DIVIDE])
        return _call(function, self._sub("int", depth), self._sub("int", depth))

    def _float(self, depth: int) -> plan_pb2.Scalar:
        rng = self.rng
        if rng.random() < 0.15:
            return _call(_S.SCALAR_FUNCTION_NEGATE, self._sub("float", depth))
        function = rng.choice(_ARITHMETIC)
        if function == _S.SCALAR_FUNCTION_DIVIDE:
            kinds = [rng.choice(["int", "float"]), rng.choice(["int", "float"])]
        else:
            kinds = rng.sample(["float", rng.choice(["int", "float"])], 2)
        return _call(function, *(self._sub(k, depth) for k in kinds))

    def _str(self, depth: int) -> plan_pb2.Scalar:
        rng = self.rng
        text = self._sub("str", depth)
        r = rng.random()
        if r < 0.3:
            return _call(rng.choice([_S.SCALAR_FUNCTION_LOWER, _S.SCALAR_FUNCTION_UPPER]), text)
        if r < 0.65:
            args = [self._small_int() for _ in range(rng.randrange(1, 3))]
            return _call(_S.SCALAR_FUNCTION_SUBSTR, text, *args)
        separator = _literal_scalar(rng.choice(_SEPARATORS))
        return _call(
            _S.SCALAR_FUNCTION_SPLIT_PART, text, separator, _literal_scalar(rng.randrange(-3, 4))
        )

    def _small_int(self) -> plan_pb2.Scalar:
        if self.int_args and self.rng.random() < 0.3:
            return _field(self.rng.choice(self.int_args))
        return _literal_scalar(self.rng.randrange(-4, 6))

    def _bool(self, depth: int) -> plan_pb2.Scalar:
        pattern = _literal_scalar(self.rng.choice(_PATTERNS))
        return _call(_S.SCALAR_FUNCTION_REGEXP_MATCHES, self._sub("str", depth), pattern)


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
