"""WHERE → the IR's filter Expr and time range.

NOT is pushed down to the leaves (De Morgan, flipped comparisons, the `negated` flags), so the
plan never holds a Not node. That keeps SQL's three-valued logic whatever way a storage node
evaluates Not: the IR promises that a row without the field never matches a comparison, and
`NOT (x = 1)` must not match such a row in SQL either; `x != 1` says exactly that.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TypeAlias

from sqlglot import exp

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import INT64_MAX, Scalar, to_value
from flakehouse.query.sql.errors import error_at, sql_text
from flakehouse.query.sql.inlists import lifted_values
from flakehouse.query.sql.sqltime import time_value_us
from flakehouse.query.sql.syntax import (
    TIMESTAMP,
    field_name,
    find_aggregate,
    function_name,
    is_field,
    is_literal,
    literal_value,
)

CompareOp: TypeAlias = plan_pb2.CompareOp.ValueType
JunctionOp: TypeAlias = plan_pb2.JunctionOp.ValueType

_OPS: dict[type[exp.Expr], CompareOp] = {
    exp.EQ: plan_pb2.COMPARE_OP_EQ,
    exp.NEQ: plan_pb2.COMPARE_OP_NE,
    exp.LT: plan_pb2.COMPARE_OP_LT,
    exp.LTE: plan_pb2.COMPARE_OP_LE,
    exp.GT: plan_pb2.COMPARE_OP_GT,
    exp.GTE: plan_pb2.COMPARE_OP_GE,
}
# literal < field is field > literal.
_MIRRORED: dict[CompareOp, CompareOp] = {
    plan_pb2.COMPARE_OP_EQ: plan_pb2.COMPARE_OP_EQ,
    plan_pb2.COMPARE_OP_NE: plan_pb2.COMPARE_OP_NE,
    plan_pb2.COMPARE_OP_LT: plan_pb2.COMPARE_OP_GT,
    plan_pb2.COMPARE_OP_LE: plan_pb2.COMPARE_OP_GE,
    plan_pb2.COMPARE_OP_GT: plan_pb2.COMPARE_OP_LT,
    plan_pb2.COMPARE_OP_GE: plan_pb2.COMPARE_OP_LE,
}
# NOT (field < x) is field >= x.
_COMPLEMENT: dict[CompareOp, CompareOp] = {
    plan_pb2.COMPARE_OP_EQ: plan_pb2.COMPARE_OP_NE,
    plan_pb2.COMPARE_OP_NE: plan_pb2.COMPARE_OP_EQ,
    plan_pb2.COMPARE_OP_LT: plan_pb2.COMPARE_OP_GE,
    plan_pb2.COMPARE_OP_LE: plan_pb2.COMPARE_OP_GT,
    plan_pb2.COMPARE_OP_GT: plan_pb2.COMPARE_OP_LE,
    plan_pb2.COMPARE_OP_GE: plan_pb2.COMPARE_OP_LT,
}


# Functions that do mean something in WHERE, as the value side of a comparison with timestamp.
_TIME_FUNCTIONS = (exp.CurrentTimestamp, exp.CurrentDate, exp.Cast)


@dataclass
class Filter:
    """A translated WHERE clause: bounds on timestamp, and the rest (None: no condition)."""

    time_range: plan_pb2.TimeRange
    expr: plan_pb2.Expr | None


def translate_where(where: exp.Expr | None, *, now_us: int, table_names: Collection[str]) -> Filter:
    if where is None:
        return Filter(plan_pb2.TimeRange(), None)
    if isinstance(where, exp.Where):
        where = where.this
    aggregate = find_aggregate(where)
    if aggregate is not None:
        raise error_at(
            aggregate,
            f"aggregate function {function_name(aggregate)}() is not allowed in WHERE; use HAVING",
        )
    expr = _Translator(now_us, table_names).translate(where, negate=False)
    return lift_time_range(expr)


def translate_filter(
    condition: exp.Expr, *, now_us: int, table_names: Collection[str]
) -> plan_pb2.Expr:
    """An aggregate's condition (`FILTER (WHERE …)`, `count_if(…)`), translated as WHERE is.

    Bounds on timestamp stay in the expression: only the plan's filter may narrow the plan's
    time range, which every aggregate of the plan shares.
    """
    if isinstance(condition, exp.Where):
        condition = condition.this
    aggregate = find_aggregate(condition)
    if aggregate is not None:
        raise error_at(
            aggregate,
            f"aggregate function {function_name(aggregate)}() is not allowed in an aggregate's"
            " condition, which picks the rows the aggregate takes; compare aggregates in HAVING",
        )
    return _Translator(now_us, table_names).translate(condition, negate=False)


def all_of(operands: list[plan_pb2.Expr]) -> plan_pb2.Expr:
    """The AND of the operands (nested ANDs flattened); one operand is itself."""
    return _junction(plan_pb2.JUNCTION_OP_AND, operands)


def lift_time_range(expr: plan_pb2.Expr) -> Filter:
    """Move the top-level AND-ed bounds on timestamp into a half-open TimeRange.

    Storage prunes whole segments by time range, so a bound there is far cheaper than the same
    bound inside the filter. Bounds under OR stay in the filter (NOT was pushed down already,
    so `NOT timestamp < x` is the bound `timestamp >= x`).
    """
    top_and = expr.WhichOneof("kind") == "junction" and expr.junction.op == plan_pb2.JUNCTION_OP_AND
    conjuncts = list(expr.junction.operands) if top_and else [expr]
    start: int | None = None
    end: int | None = None
    rest: list[plan_pb2.Expr] = []
    for conjunct in conjuncts:
        bounds = _time_bounds(conjunct)
        if bounds is None:
            rest.append(conjunct)
            continue
        low, high = bounds
        if low is not None:
            start = low if start is None else max(start, low)
        if high is not None:
            end = high if end is None else min(end, high)
    time_range = plan_pb2.TimeRange()
    if start is not None:
        time_range.start_us = start
    if end is not None:
        time_range.end_us = end
    return Filter(time_range, _junction(plan_pb2.JUNCTION_OP_AND, rest) if rest else None)


def _time_bounds(expr: plan_pb2.Expr) -> tuple[int | None, int | None] | None:
    """[start, end) bounds that a conjunct puts on timestamp, or None if it is not one."""
    if expr.WhichOneof("kind") != "compare" or expr.compare.field != TIMESTAMP:
        return None
    if expr.compare.value.WhichOneof("kind") != "int_value":
        return None
    value, op = expr.compare.value.int_value, expr.compare.op
    if value == INT64_MAX and op != plan_pb2.COMPARE_OP_GE:
        return None  # value + 1 would not fit the TimeRange; the filter still says it
    if op == plan_pb2.COMPARE_OP_GE:
        return value, None
    if op == plan_pb2.COMPARE_OP_GT:
        return value + 1, None
    if op == plan_pb2.COMPARE_OP_LT:
        return None, value
    if op == plan_pb2.COMPARE_OP_LE:
        return None, value + 1
    if op == plan_pb2.COMPARE_OP_EQ:
        return value, value + 1
    return None


def _junction(op: JunctionOp, operands: list[plan_pb2.Expr]) -> plan_pb2.Expr:
    """AND/OR of the operands, flattening nested ones of the same op; one operand is itself."""
    flat: list[plan_pb2.Expr] = []
    for operand in operands:
        if operand.WhichOneof("kind") == "junction" and operand.junction.op == op:
            flat.extend(operand.junction.operands)
        else:
            flat.append(operand)
    if len(flat) == 1:
        return flat[0]
    return plan_pb2.Expr(junction=plan_pb2.Junction(op=op, operands=flat))


def _chain(node: exp.Expr, kind: type[exp.Expr]) -> list[exp.Expr]:
    """The operands of a chain of ANDs (or ORs), in order, found without recursion: the parser
    builds `a OR b OR c …` as a tree one level deeper per term, and a script's 20,000 terms would
    exhaust Python's stack."""
    operands: list[exp.Expr] = []
    pending = [node]
    while pending:
        current = pending.pop()
        while isinstance(current, exp.Paren) and isinstance(current.this, kind):
            current = current.this
        if isinstance(current, kind):
            pending += [current.expression, current.this]
        else:
            operands.append(current)
    return operands


class _Translator:
    def __init__(self, now_us: int, table_names: Collection[str]) -> None:
        self._now_us = now_us
        self._table_names = table_names

    def translate(self, node: exp.Expr, *, negate: bool) -> plan_pb2.Expr:
        if isinstance(node, exp.Paren):
            return self.translate(node.this, negate=negate)
        if isinstance(node, exp.Not):
            return self.translate(node.this, negate=not negate)
        if isinstance(node, exp.And | exp.Or):
            # De Morgan: NOT (a AND b) is NOT a OR NOT b.
            is_and = isinstance(node, exp.And) != negate
            junction = plan_pb2.JUNCTION_OP_AND if is_and else plan_pb2.JUNCTION_OP_OR
            operands = [self.translate(o, negate=negate) for o in _chain(node, type(node))]
            return _junction(junction, operands)
        if type(node) in _OPS:
            return self._compare(node, negate)
        if isinstance(node, exp.In):
            return self._in_list(node, negate)
        if isinstance(node, exp.Like):
            return self._like(node, negate)
        if isinstance(node, exp.Is):
            return self._is(node, negate)
        if isinstance(node, exp.Between):
            return self._between(node, negate)
        if is_field(node):
            # A bare boolean field, as in `WHERE flaky`.
            field = self._field(node)
            op = plan_pb2.COMPARE_OP_NE if negate else plan_pb2.COMPARE_OP_EQ
            return _compare_expr(op, field, True)
        raise self._unsupported(node)

    def _field(self, node: exp.Expr) -> str:
        return field_name(node, self._table_names)

    def _compare(self, node: exp.Expr, negate: bool) -> plan_pb2.Expr:
        op = _OPS[type(node)]
        left, right = node.this, node.expression
        if is_field(left) and is_field(right):
            raise error_at(
                node,
                f"comparing two fields is not supported: {sql_text(node)}; compare a field"
                " with a value",
            )
        if not is_field(left):
            if not is_field(right):
                call = next((side for side in (left, right) if isinstance(side, exp.Func)), None)
                if call is not None and not isinstance(call, _TIME_FUNCTIONS):
                    raise error_at(
                        call,
                        f"function {function_name(call)}() is not supported in WHERE;"
                        " compare a field with a value",
                    )
                raise error_at(node, f"a condition needs a field: {sql_text(node)}")
            left, right, op = right, left, _MIRRORED[op]
        if negate:
            op = _COMPLEMENT[op]
        field = self._field(left)
        return _compare_expr(op, field, self._operand(field, right))

    def _operand(self, field: str, node: exp.Expr) -> Scalar:
        """The value a field is compared with; times become microseconds for timestamp."""
        if field == TIMESTAMP:
            if isinstance(node, exp.Boolean):
                raise error_at(node, "type mismatch: timestamp is a time, not a bool")
            return time_value_us(node, self._now_us)
        if not is_literal(node):
            raise error_at(
                node,
                f"expected a literal value (string, number, TRUE or FALSE), got {sql_text(node)}",
            )
        value = literal_value(node)
        if value is None:
            raise error_at(node, "a comparison with NULL is never true; use IS NULL or IS NOT NULL")
        return value

    def _in_list(self, node: exp.In, negate: bool) -> plan_pb2.Expr:
        if node.args.get("query") is not None:
            raise error_at(node.args["query"], "subqueries are not supported")
        if not is_field(node.this):
            raise error_at(node, f"IN needs a field on its left, got {sql_text(node.this)}")
        if not node.expressions:
            raise error_at(node, "an IN list needs at least one value")
        field = self._field(node.this)
        expr = plan_pb2.Expr()
        in_list = expr.in_list  # filled in place: 100,000 values are not copied
        in_list.field, in_list.negated = field, negate
        lifted = lifted_values(node)  # a long list, read without sqlglot: see inlists
        if lifted is not None and field != TIMESTAMP:
            lifted.add_values(in_list.values)
        else:
            nodes = node.expressions if lifted is None else lifted.nodes()
            in_list.values.extend(to_value(self._operand(field, value)) for value in nodes)
        return expr

    def _like(self, node: exp.Like, negate: bool) -> plan_pb2.Expr:
        if not is_field(node.this):
            raise error_at(node, f"LIKE needs a field on its left, got {sql_text(node.this)}")
        field = self._field(node.this)
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise error_at(
                pattern, f"type mismatch: LIKE needs a string pattern, got {sql_text(pattern)}"
            )
        if field == TIMESTAMP:
            raise error_at(node, "type mismatch: LIKE works on strings, and timestamp is a time")
        # sqlglot writes `x NOT LIKE p` as Like(negate=True) rather than Not(Like).
        negated = bool(node.args.get("negate")) != negate
        return plan_pb2.Expr(like=plan_pb2.Like(field=field, pattern=pattern.this, negated=negated))

    def _is(self, node: exp.Is, negate: bool) -> plan_pb2.Expr:
        if not isinstance(node.expression, exp.Null):
            raise error_at(
                node,
                f"only IS NULL and IS NOT NULL are supported, not {sql_text(node)};"
                " use = TRUE or = FALSE",
            )
        if not is_field(node.this):
            raise error_at(node, f"IS NULL needs a field, got {sql_text(node.this)}")
        field = self._field(node.this)
        return plan_pb2.Expr(is_null=plan_pb2.IsNull(field=field, negated=negate))

    def _between(self, node: exp.Between, negate: bool) -> plan_pb2.Expr:
        if not is_field(node.this):
            raise error_at(node, f"BETWEEN needs a field on its left, got {sql_text(node.this)}")
        field = self._field(node.this)
        low = self._operand(field, node.args["low"])
        high = self._operand(field, node.args["high"])
        # x BETWEEN a AND b is x >= a AND x <= b; negated, x < a OR x > b.
        if negate:
            return _junction(
                plan_pb2.JUNCTION_OP_OR,
                [
                    _compare_expr(plan_pb2.COMPARE_OP_LT, field, low),
                    _compare_expr(plan_pb2.COMPARE_OP_GT, field, high),
                ],
            )
        return _junction(
            plan_pb2.JUNCTION_OP_AND,
            [
                _compare_expr(plan_pb2.COMPARE_OP_GE, field, low),
                _compare_expr(plan_pb2.COMPARE_OP_LE, field, high),
            ],
        )

    def _unsupported(self, node: exp.Expr) -> Exception:
        if isinstance(node, exp.ILike):
            return error_at(node, "ILIKE is not supported; LIKE is case-sensitive")
        if isinstance(node, exp.Escape):
            return error_at(node, "LIKE … ESCAPE is not supported")
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
            return error_at(node, "subqueries are not supported")
        if is_literal(node):
            return error_at(node, f"a condition needs a field: {sql_text(node)}")
        if isinstance(node, exp.Func):
            return error_at(node, f"function {function_name(node)}() is not supported in WHERE")
        return error_at(node, f"unsupported condition in WHERE: {sql_text(node)}")


def _compare_expr(op: CompareOp, field: str, value: Scalar) -> plan_pb2.Expr:
    return plan_pb2.Expr(compare=plan_pb2.Compare(op=op, field=field, value=to_value(value)))
