"""WHERE → the IR's filter Expr and time range.

NOT is pushed down to the leaves (De Morgan, flipped comparisons, the `negated` flags), so the
plan never holds a Not node. That keeps SQL's three-valued logic whatever way a storage node
evaluates Not: the IR promises that a row without the field never matches a comparison, and
`NOT (x = 1)` must not match such a row in SQL either; `x != 1` says exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from sqlglot import exp

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import INT64_MAX, Scalar, to_value
from flakehouse.kernels.text import lower
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.inlists import lifted_values
from flakehouse.query.sql.scalars import Scalars, kind_of_value
from flakehouse.query.sql.sqltime import time_value_us
from flakehouse.query.sql.syntax import (
    TIMESTAMP,
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


@dataclass
class Filter:
    """A translated WHERE clause: bounds on timestamp, and the rest (None: no condition)."""

    time_range: plan_pb2.TimeRange
    expr: plan_pb2.Expr | None


def translate_where(where: exp.Expr | None, scalars: Scalars) -> Filter:
    """WHERE as a time range and a filter; expressions over fields (`lower(name) = 'x'`) become
    computed columns of `scalars`."""
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
    return lift_time_range(translate_condition(where, scalars, False))


def translate_condition(node: exp.Expr, scalars: Scalars, negate: bool) -> plan_pb2.Expr:
    """A condition (negated when told) as a plan Expr, for WHERE and for CASE WHEN."""
    return _Translator(scalars).translate(node, negate=negate)


def translate_filter(condition: exp.Expr, scalars: Scalars) -> plan_pb2.Expr:
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
    return _Translator(scalars).translate(condition, negate=False)


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


def _unparenthesized(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _reads_fields(node: exp.Expr) -> bool:
    return any(is_field(n) for n in node.walk())


class _Translator:
    def __init__(self, scalars: Scalars) -> None:
        self._scalars = scalars

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
        if isinstance(node, exp.Like | exp.ILike):
            return self._like(node, negate)
        if isinstance(node, exp.Is):
            return self._is(node, negate)
        if isinstance(node, exp.Between):
            return self._between(node, negate)
        if isinstance(node, exp.Escape):
            raise error_at(node, "LIKE … ESCAPE is not supported")
        if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
            raise error_at(node, "subqueries are not supported")
        if not _reads_fields(node):
            raise error_at(node, f"a condition needs a field: {sql_text(node)}")
        # A bool field (`WHERE flaky`) or expression (`WHERE regexp_matches(name, 'x')`).
        column = self._scalars.column(node)
        kind = self._scalars.kind(column)
        if kind not in (None, "bool"):
            raise error_at(
                node,
                f"{sql_text(node)} is a {kind}, not a condition; compare it with a value",
            )
        op = plan_pb2.COMPARE_OP_NE if negate else plan_pb2.COMPARE_OP_EQ
        return _compare_expr(op, column, True)

    def _column(self, node: exp.Expr, what: str) -> str:
        """The field or computed column a condition tests; `what` names the condition."""
        if not _reads_fields(node):
            raise error_at(node, f"{what} needs a field on its left, got {sql_text(node)}")
        return self._scalars.column(node)

    def _compare(self, node: exp.Expr, negate: bool) -> plan_pb2.Expr:
        op = _OPS[type(node)]
        left, right = node.this, node.expression
        if _reads_fields(left) and _reads_fields(right):
            if is_field(left) and is_field(right):
                raise error_at(
                    node,
                    f"comparing two fields is not supported: {sql_text(node)}; compare a field"
                    " with a value",
                )
            raise error_at(
                node,
                f"comparing two expressions over fields is not supported: {sql_text(node)};"
                " compare one with a value",
            )
        if not _reads_fields(left):
            if not _reads_fields(right):
                raise error_at(node, f"a condition needs a field: {sql_text(node)}")
            left, right, op = right, left, _MIRRORED[op]
        if negate:
            op = _COMPLEMENT[op]
        column = self._scalars.column(left)
        return _compare_expr(op, column, self._operand(column, left, right))

    def _operand(self, column: str, tested: exp.Expr, node: exp.Expr) -> Scalar:
        """The value a column is compared with; times become microseconds for a time column
        (timestamp, date_trunc(…), time_bucket(…))."""
        kind = self._scalars.kind(column)
        if kind == "time":
            if isinstance(node, exp.Boolean):
                raise error_at(node, f"type mismatch: {sql_text(tested)} is a time, not a bool")
            return time_value_us(node, self._scalars.now_us, self._scalars.zone)
        if is_literal(node):
            folded, value = True, literal_value(node)
        else:
            try:
                folded, value = self._scalars.constant(node)
            except QueryError:
                folded, value = False, None  # now() where no time is wanted, say
        if not folded:
            raise error_at(
                node,
                f"expected a literal value (string, number, TRUE or FALSE), got {sql_text(node)}",
            )
        if value is None:
            raise error_at(node, "a comparison with NULL is never true; use IS NULL or IS NOT NULL")
        value_kind = kind_of_value(value)
        if kind is not None and kind != value_kind:
            raise error_at(
                node,
                f"type mismatch: {sql_text(tested)} is a {kind}, {sql_text(node)} is a"
                f" {value_kind}",
            )
        return value

    def _in_list(self, node: exp.In, negate: bool) -> plan_pb2.Expr:
        if node.args.get("query") is not None:
            raise error_at(node.args["query"], "subqueries are not supported")
        column = self._column(node.this, "IN")
        if not node.expressions:
            raise error_at(node, "an IN list needs at least one value")
        expr = plan_pb2.Expr()
        in_list = expr.in_list  # filled in place: 100,000 values are not copied
        in_list.field, in_list.negated = column, negate
        # A long list, read without sqlglot (see inlists): only of a plain field, whose type is
        # not known, so its values need no check but timestamp's, which are times.
        lifted = lifted_values(node)
        if lifted is not None and self._scalars.kind(column) is None:
            lifted.add_values(in_list.values)
        else:
            nodes = node.expressions if lifted is None else lifted.nodes()
            in_list.values.extend(
                to_value(self._operand(column, node.this, value)) for value in nodes
            )
        return expr

    def _like(self, node: exp.Like | exp.ILike, negate: bool) -> plan_pb2.Expr:
        ilike = isinstance(node, exp.ILike)
        operator = "ILIKE" if ilike else "LIKE"
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise error_at(
                pattern,
                f"type mismatch: {operator} needs a string pattern, got {sql_text(pattern)}",
            )
        tested = node.this
        if not _reads_fields(tested):
            raise error_at(tested, f"{operator} needs a field on its left, got {sql_text(tested)}")
        # Typed, not added: under ILIKE the column tested is lower(tested), not tested itself.
        kind = self._scalars.kind_of(tested)
        if kind not in (None, "string"):
            article = "a time" if kind == "time" else f"a {kind}"
            raise error_at(
                node,
                f"type mismatch: {operator} works on strings, and {sql_text(tested)} is {article}",
            )
        text = pattern.this
        if ilike:
            # DuckDB's ILIKE is LIKE between the lower-cased string and the lower-cased pattern.
            # A string lower-cased already stays as it is: lower() maps each code point to one
            # that lower() keeps.
            if not isinstance(_unparenthesized(tested), exp.Lower):
                tested = exp.Lower(this=tested.copy())
            text = lower(text)
        column = self._scalars.column(tested)
        # sqlglot writes `x NOT LIKE p` as Like(negate=True) rather than Not(Like).
        negated = bool(node.args.get("negate")) != negate
        return plan_pb2.Expr(like=plan_pb2.Like(field=column, pattern=text, negated=negated))

    def _is(self, node: exp.Is, negate: bool) -> plan_pb2.Expr:
        if not isinstance(node.expression, exp.Null):
            raise error_at(
                node,
                f"only IS NULL and IS NOT NULL are supported, not {sql_text(node)};"
                " use = TRUE or = FALSE",
            )
        column = self._column(node.this, "IS NULL")
        return plan_pb2.Expr(is_null=plan_pb2.IsNull(field=column, negated=negate))

    def _between(self, node: exp.Between, negate: bool) -> plan_pb2.Expr:
        column = self._column(node.this, "BETWEEN")
        low = self._operand(column, node.this, node.args["low"])
        high = self._operand(column, node.this, node.args["high"])
        # x BETWEEN a AND b is x >= a AND x <= b; negated, x < a OR x > b.
        if negate:
            return _junction(
                plan_pb2.JUNCTION_OP_OR,
                [
                    _compare_expr(plan_pb2.COMPARE_OP_LT, column, low),
                    _compare_expr(plan_pb2.COMPARE_OP_GT, column, high),
                ],
            )
        return _junction(
            plan_pb2.JUNCTION_OP_AND,
            [
                _compare_expr(plan_pb2.COMPARE_OP_GE, column, low),
                _compare_expr(plan_pb2.COMPARE_OP_LE, column, high),
            ],
        )


def _compare_expr(op: CompareOp, field: str, value: Scalar) -> plan_pb2.Expr:
    return plan_pb2.Expr(compare=plan_pb2.Compare(op=op, field=field, value=to_value(value)))
