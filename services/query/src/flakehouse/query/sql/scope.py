"""Expressions of aggregate queries: group keys, aggregate calls, and the post-merge expressions
(SELECT items, HAVING, ORDER BY) built on them.

A `Scope` collects the plan's group keys and its deduplicated aggregates while translating, so
an aggregate that only HAVING or ORDER BY uses still reaches the plan (and stays hidden).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from sqlglot import exp

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import Scalar
from flakehouse.query import finalexpr
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.filters import all_of, translate_filter
from flakehouse.query.sql.scalars import Scalars, unsupported_function
from flakehouse.query.sql.syntax import (
    AGGREGATE_FUNCTIONS,
    QUANTILE_SHORTHANDS,
    field_name,
    find_aggregate,
    function_name,
    is_aggregate_call,
    is_field,
    is_literal,
    literal_value,
)
from flakehouse.query.sql.timefuncs import fixed_bucket_us, time_bucket

AggregateFunction: TypeAlias = plan_pb2.AggregateFunction.ValueType

# What this version can merge; a function planned as far as the IR but missing here is refused
# with "not supported yet". COUNT_DISTINCT and PERCENTILE merge flakehouse.sketches states.
SUPPORTED_AGGREGATES: frozenset[AggregateFunction] = frozenset(
    {
        plan_pb2.AGGREGATE_FUNCTION_COUNT,
        plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD,
        plan_pb2.AGGREGATE_FUNCTION_SUM,
        plan_pb2.AGGREGATE_FUNCTION_AVG,
        plan_pb2.AGGREGATE_FUNCTION_MIN,
        plan_pb2.AGGREGATE_FUNCTION_MAX,
        plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT,
        plan_pb2.AGGREGATE_FUNCTION_PERCENTILE,
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP,
    }
)
_SIMPLE_AGGREGATES: dict[type[exp.Expr], AggregateFunction] = {
    exp.Sum: plan_pb2.AGGREGATE_FUNCTION_SUM,
    exp.Avg: plan_pb2.AGGREGATE_FUNCTION_AVG,
    exp.Min: plan_pb2.AGGREGATE_FUNCTION_MIN,
    exp.Max: plan_pb2.AGGREGATE_FUNCTION_MAX,
    # stddev is the sample's, as in DuckDB and PostgreSQL.
    exp.Stddev: plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
    exp.StddevSamp: plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
    exp.StddevPop: plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP,
}
# Aggregates whose result is always a number (or NULL), for type checks before the query runs.
_NUMERIC_AGGREGATES: frozenset[AggregateFunction] = frozenset(
    {
        plan_pb2.AGGREGATE_FUNCTION_COUNT,
        plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD,
        plan_pb2.AGGREGATE_FUNCTION_SUM,
        plan_pb2.AGGREGATE_FUNCTION_AVG,
        plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT,
        plan_pb2.AGGREGATE_FUNCTION_PERCENTILE,
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP,
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP,
    }
)

_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
}
_ARITHMETIC: dict[type[exp.Expr], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
}


def aggregate_name(aggregate: plan_pb2.Aggregate) -> str:
    """The readable output name of an aggregate, e.g. `count(*)` or `sum(duration)`."""
    fn, field = aggregate.function, aggregate.field
    if fn == plan_pb2.AGGREGATE_FUNCTION_COUNT:
        return "count(*)"
    if fn == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
        return f"count(DISTINCT {field})"
    if fn == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE:
        return f"percentile({field}, {aggregate.quantile:g})"
    short = {
        plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD: "count",
        plan_pb2.AGGREGATE_FUNCTION_SUM: "sum",
        plan_pb2.AGGREGATE_FUNCTION_AVG: "avg",
        plan_pb2.AGGREGATE_FUNCTION_MIN: "min",
        plan_pb2.AGGREGATE_FUNCTION_MAX: "max",
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP: "stddev_samp",
        plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP: "stddev_pop",
    }[fn]
    return f"{short}({field})"


class Scope:
    """Translates expressions of an aggregate query against its group keys and aggregates."""

    def __init__(self, scalars: Scalars, grouping: str = "GROUP BY") -> None:
        self.scalars = scalars
        self.table_names = scalars.table_names
        self.grouping = grouping
        """Where group keys come from, for messages: GROUP BY, or the SELECT DISTINCT list."""
        self.group_by: list[plan_pb2.GroupKey] = []
        self.aggregates: list[plan_pb2.Aggregate] = []
        self._keys: dict[tuple[str, str | int], int] = {}
        # (function, field, quantile, filter serialized): the same aggregate under another
        # condition is another aggregate.
        self._aggregate_ids: dict[tuple[AggregateFunction, str, float, bytes], int] = {}

    # -- group keys -------------------------------------------------------------------------

    def add_group_key(self, node: exp.Expr, origin: exp.Expr) -> None:
        """Add a GROUP BY key; `origin` is what the user wrote (an alias or position maybe)."""
        aggregate = next((n for n in node.walk() if is_aggregate_call(n)), None)
        if aggregate is not None:
            raise error_at(
                origin,
                f"aggregate function {function_name(aggregate)}() is not allowed in GROUP BY",
            )
        width_us = self._fixed_bucket_us(node)
        if width_us is not None:
            # Storage's fast UTC bucket, also for date_trunc('day', timestamp) in UTC.
            key: tuple[str, str | int] = ("bucket", width_us)
            proto = plan_pb2.GroupKey(time_bucket_us=width_us)
        else:
            # A field, or an expression over fields: a computed column.
            name = self.scalars.column(node)
            key, proto = ("field", name), plan_pb2.GroupKey(field=name)
        if key not in self._keys:
            self._keys[key] = len(self.group_by)
            self.group_by.append(proto)

    # -- aggregates -------------------------------------------------------------------------

    def aggregate(self, node: exp.Expr) -> int:
        """Index in the plan of the aggregate `node` calls, adding it when new."""
        if isinstance(node, exp.Filter):
            # agg(…) FILTER (WHERE cond); count_if(c) FILTER (WHERE cond) takes both conditions.
            aggregate = self._aggregate_proto(node.this)
            condition = self._condition(node.expression)
            if aggregate.HasField("filter"):
                condition = all_of([aggregate.filter, condition])
            aggregate.filter.CopyFrom(condition)
        else:
            aggregate = self._aggregate_proto(node)
        if aggregate.function not in SUPPORTED_AGGREGATES:
            name = function_name(node)
            written = f"{name}({aggregate.field})" if name in QUANTILE_SHORTHANDS else None
            raise error_at(node, f"{written or aggregate_name(aggregate)} is not supported yet")
        rows = aggregate.filter.SerializeToString(deterministic=True)
        key = (aggregate.function, aggregate.field, aggregate.quantile, rows)
        if key not in self._aggregate_ids:
            self._aggregate_ids[key] = len(self.aggregates)
            self.aggregates.append(aggregate)
        return self._aggregate_ids[key]

    def _condition(self, node: exp.Expr) -> plan_pb2.Expr:
        return translate_filter(node, self.scalars)

    def _aggregate_proto(self, node: exp.Expr) -> plan_pb2.Aggregate:
        name = function_name(node)
        if isinstance(node, exp.Count):
            return self._count(node)
        if isinstance(node, exp.CountIf):
            return self._count_if(node)
        if type(node) in _SIMPLE_AGGREGATES:
            if node.expressions:
                raise error_at(node, f"{name}() takes one field, got {1 + len(node.expressions)}")
            field = self._aggregate_field(name, node.this, node)
            return plan_pb2.Aggregate(function=_SIMPLE_AGGREGATES[type(node)], field=field)
        if isinstance(node, exp.Anonymous) and name in ("percentile", "quantile_cont"):
            args = node.expressions
            if len(args) != 2:
                raise error_at(node, f"{name}() takes a field and a quantile: {name}(f, 0.95)")
            return self._percentile(name, args[0], args[1], node)
        if isinstance(node, exp.Quantile | exp.ApproxQuantile):
            extra = [k for k in node.args if k not in ("this", "quantile") and node.args[k]]
            if extra:
                raise error_at(node, f"{name}() takes a field and a quantile: {name}(f, 0.95)")
            return self._percentile(name, node.this, node.args["quantile"], node)
        if isinstance(node, exp.Median):
            field = self._aggregate_field(name, node.this, node)
            return plan_pb2.Aggregate(
                function=plan_pb2.AGGREGATE_FUNCTION_PERCENTILE, field=field, quantile=0.5
            )
        if isinstance(node, exp.ApproxDistinct):
            if node.args.get("accuracy") is not None:
                raise error_at(node, f"{name}() takes one field")
            field = self._aggregate_field(name, node.this, node)
            return plan_pb2.Aggregate(
                function=plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT, field=field
            )
        if isinstance(node, exp.Anonymous) and name in QUANTILE_SHORTHANDS:
            if len(node.expressions) != 1:
                raise error_at(node, f"{name}() takes one field, got {len(node.expressions)}")
            field = self._aggregate_field(name, node.expressions[0], node)
            return plan_pb2.Aggregate(
                function=plan_pb2.AGGREGATE_FUNCTION_PERCENTILE,
                field=field,
                quantile=QUANTILE_SHORTHANDS[name],
            )
        if isinstance(node, exp.Variance | exp.VariancePop):
            kind = "pop" if isinstance(node, exp.VariancePop) else "samp"
            raise error_at(
                node,
                # The parser names var_pop() variance_pop(): say what it is, not its name.
                f"the variance is not supported; it is the square of the standard deviation:"
                f" stddev_{kind}(f) * stddev_{kind}(f)",
            )
        raise error_at(
            node, f"aggregate function {name}() is not supported; use {AGGREGATE_FUNCTIONS}"
        )

    def _percentile(
        self, name: str, field_arg: exp.Expr | None, quantile_arg: exp.Expr, call: exp.Expr
    ) -> plan_pb2.Aggregate:
        field = self._aggregate_field(name, field_arg, call)
        quantile = literal_value(quantile_arg) if is_literal(quantile_arg) else None
        if not (finalexpr.is_number(quantile) and 0 < quantile <= 1):
            raise error_at(
                quantile_arg,
                f"the quantile must be a number in (0, 1], got {sql_text(quantile_arg)}",
            )
        return plan_pb2.Aggregate(
            function=plan_pb2.AGGREGATE_FUNCTION_PERCENTILE, field=field, quantile=float(quantile)
        )

    def _count(self, node: exp.Count) -> plan_pb2.Aggregate:
        arg = node.this
        if node.expressions:
            raise error_at(node, "count() takes one argument: count(*) or count(field)")
        if arg is None:
            raise error_at(node, "count() needs an argument: count(*) or count(field)")
        if isinstance(arg, exp.Star):
            return plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)
        if isinstance(arg, exp.Distinct):
            if len(arg.expressions) != 1:
                raise error_at(node, "count(DISTINCT …) takes one field")
            if isinstance(arg.expressions[0], exp.Star):
                raise error_at(arg.expressions[0], "count(DISTINCT *) is not valid; name a field")
            field = self._aggregate_field("count", arg.expressions[0], node)
            return plan_pb2.Aggregate(
                function=plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT, field=field
            )
        if is_literal(arg) and literal_value(arg) is not None:
            # count(1) counts rows, like count(*).
            return plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT)
        field = self._aggregate_field("count", arg, node)
        return plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD, field=field)

    def _count_if(self, node: exp.CountIf) -> plan_pb2.Aggregate:
        """count_if(cond) (countif, countIf) is count(*) FILTER (WHERE cond)."""
        usage = "count_if() takes one condition: count_if(status = 'failed')"
        condition = node.this
        extra = [value for key, value in node.args.items() if key != "this" and value]
        if extra:
            raise error_at(extra[0], usage)
        if isinstance(condition, exp.Star | exp.Distinct):
            raise error_at(condition, usage)
        return plan_pb2.Aggregate(
            function=plan_pb2.AGGREGATE_FUNCTION_COUNT, filter=self._condition(condition)
        )

    def _aggregate_field(self, name: str, arg: exp.Expr | None, call: exp.Expr) -> str:
        if arg is None:
            raise error_at(call, f"{name}() needs a field")
        if isinstance(arg, exp.Distinct):
            raise error_at(arg, f"DISTINCT is only supported in count(), not in {name}()")
        if isinstance(arg, exp.Star):
            raise error_at(arg, f"{name}(*) is not valid; name a field")
        nested = find_aggregate(arg)
        if nested is not None:
            raise error_at(
                nested,
                f"aggregate functions cannot be nested: {function_name(nested)}() inside {name}()",
            )
        if is_literal(arg):
            raise error_at(
                arg,
                f"the argument of {name}() must be a field or an expression over fields,"
                f" got {sql_text(arg)}",
            )
        # A field, or a computed column for an expression: sum(CASE WHEN … THEN 1 ELSE 0 END).
        return self.scalars.column(arg)

    # -- post-merge expressions -------------------------------------------------------------

    def value(
        self, node: exp.Expr, aliases: Mapping[str, finalexpr.ValueExpr] | None = None
    ) -> finalexpr.ValueExpr:
        """A post-merge expression; bare names in `aliases` stand for those SELECT items."""
        if isinstance(node, exp.Paren):
            return self.value(node.this, aliases)
        if aliases and isinstance(node, exp.Column) and not node.table and node.name in aliases:
            return aliases[node.name]
        if is_aggregate_call(node):
            return finalexpr.AggRef(self.aggregate(node))
        if is_field(node):
            name = field_name(node, self.table_names)
            index = self._keys.get(("field", name))
            if index is None:
                raise error_at(
                    node,
                    f"field {name} must appear in {self.grouping} or be used in an aggregate"
                    " function",
                )
            return finalexpr.KeyRef(index)
        if is_literal(node):
            return finalexpr.Lit(literal_value(node))
        key = self._group_key(node)
        if key is not None:
            return finalexpr.KeyRef(key)
        if isinstance(node, exp.Neg):
            return finalexpr.Negate(self._number(node.this, aliases))
        if type(node) in _ARITHMETIC:
            return finalexpr.Arith(
                _ARITHMETIC[type(node)],
                self._number(node.this, aliases),
                self._number(node.expression, aliases),
            )
        return self._predicate(node, aliases)

    def _fixed_bucket_us(self, node: exp.Expr) -> int | None:
        return fixed_bucket_us(node, self.scalars.zone, self.table_names)

    def _group_key(self, node: exp.Expr) -> int | None:
        """The group key an expression over fields is (`lower(hostname)` after GROUP BY
        lower(hostname), a time bucket), if it is one."""
        if not self._keys or find_aggregate(node) is not None:
            return None
        width_us = self._fixed_bucket_us(node)
        if width_us is not None:
            return self._keys.get(("bucket", width_us))
        try:
            name = self.scalars.existing(node)
        except QueryError:
            return None  # not a scalar expression: a comparison of keys, say
        return None if name is None else self._keys.get(("field", name))

    def _not_grouped(self, node: exp.Expr) -> Exception:
        """The error for a scalar expression over fields that is no group key."""
        if find_aggregate(node) is not None:
            return error_at(
                node,
                f"{function_name(node)}() of aggregates is not supported; scalar functions apply"
                " to fields (inside an aggregate, or as a group key)",
            )
        self.scalars.existing(node)  # raises the error of an unsupported function
        bucket = time_bucket(node, self.scalars.zone, self.table_names)
        shown = bucket.name if bucket is not None else sql_text(node)
        return error_at(
            node, f"{shown} must appear in {self.grouping} or be used in an aggregate function"
        )

    def _number(
        self, node: exp.Expr, aliases: Mapping[str, finalexpr.ValueExpr] | None
    ) -> finalexpr.ValueExpr:
        value = self.value(node, aliases)
        kind = self.static_type(value)
        if kind not in (None, "number"):
            raise error_at(
                node, f"type mismatch: arithmetic needs numbers, {sql_text(node)} is a {kind}"
            )
        return value

    def _predicate(
        self, node: exp.Expr, aliases: Mapping[str, finalexpr.ValueExpr] | None
    ) -> finalexpr.ValueExpr:
        if isinstance(node, exp.Not):
            return finalexpr.NotOp(self.value(node.this, aliases))
        if isinstance(node, exp.And | exp.Or):
            op = "and" if isinstance(node, exp.And) else "or"
            return finalexpr.BoolOp(
                op, (self.value(node.this, aliases), self.value(node.expression, aliases))
            )
        if type(node) in _COMPARISONS:
            left, right = self.value(node.this, aliases), self.value(node.expression, aliases)
            self._check_comparable(node, left, right)
            return finalexpr.Cmp(_COMPARISONS[type(node)], left, right)
        if isinstance(node, exp.Between):
            operand = self.value(node.this, aliases)
            low, high = (
                self.value(node.args["low"], aliases),
                self.value(node.args["high"], aliases),
            )
            self._check_comparable(node, operand, low)
            self._check_comparable(node, operand, high)
            return finalexpr.BoolOp(
                "and", (finalexpr.Cmp(">=", operand, low), finalexpr.Cmp("<=", operand, high))
            )
        if isinstance(node, exp.Is):
            if not isinstance(node.expression, exp.Null):
                raise error_at(
                    node, f"only IS NULL and IS NOT NULL are supported, not {sql_text(node)}"
                )
            return finalexpr.IsNullOp(self.value(node.this, aliases))
        if isinstance(node, exp.In):
            return self._in(node, aliases)
        if isinstance(node, exp.Like):
            return self._like(node, aliases)
        if isinstance(node, exp.Func | exp.Mod):
            raise self._not_grouped(node)
        raise _unsupported(node)

    def _in(
        self, node: exp.In, aliases: Mapping[str, finalexpr.ValueExpr] | None
    ) -> finalexpr.ValueExpr:
        if node.args.get("query") is not None:
            raise error_at(node, "subqueries are not supported")
        if not node.expressions:
            raise error_at(node, "an IN list needs at least one value")
        operand = self.value(node.this, aliases)
        values: list[Scalar] = []
        for item in node.expressions:
            if not is_literal(item) or literal_value(item) is None:
                raise error_at(item, f"IN lists hold literal values, got {sql_text(item)}")
            self._check_comparable(item, operand, finalexpr.Lit(literal_value(item)))
            # Not None: checked above (mypy does not narrow a call's result across calls).
            values.append(literal_value(item))  # type: ignore[arg-type]
        return finalexpr.InOp(operand, tuple(values))

    def _like(
        self, node: exp.Like, aliases: Mapping[str, finalexpr.ValueExpr] | None
    ) -> finalexpr.ValueExpr:
        operand = self.value(node.this, aliases)
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise error_at(
                pattern, f"type mismatch: LIKE needs a string pattern, got {sql_text(pattern)}"
            )
        kind = self.static_type(operand)
        if kind not in (None, "string"):
            raise error_at(
                node, f"type mismatch: LIKE works on strings, {sql_text(node.this)} is a {kind}"
            )
        return finalexpr.LikeOp(operand, pattern.this, bool(node.args.get("negate")))

    def _check_comparable(
        self, node: exp.Expr, left: finalexpr.ValueExpr, right: finalexpr.ValueExpr
    ) -> None:
        if (isinstance(left, finalexpr.Lit) and left.value is None) or (
            isinstance(right, finalexpr.Lit) and right.value is None
        ):
            raise error_at(node, "a comparison with NULL is never true; use IS NULL or IS NOT NULL")
        left_type, right_type = self.static_type(left), self.static_type(right)
        if left_type and right_type and left_type != right_type:
            raise error_at(
                node,
                f"type mismatch in {sql_text(node)}:"
                f" cannot compare a {left_type} with a {right_type}",
            )

    def static_type(self, expr: finalexpr.ValueExpr) -> str | None:
        """'number', 'string' or 'bool' when known before running the query, else None."""
        match expr:
            case finalexpr.Lit(value):
                if value is None:
                    return None
                if isinstance(value, bool):
                    return "bool"
                return "string" if isinstance(value, str) else "number"
            case finalexpr.AggRef(index):
                aggregate = self.aggregates[index]
                if aggregate.function in _NUMERIC_AGGREGATES:
                    return "number"
                # min and max: of the argument's type.
                kind = self.scalars.kind(aggregate.field)
                return "number" if kind == "time" else kind
            case finalexpr.KeyRef(index):
                key = self.group_by[index]
                if key.WhichOneof("kind") == "time_bucket_us":
                    return "number"
                kind = self.scalars.kind(key.field)
                return "number" if kind == "time" else kind
            case finalexpr.Arith() | finalexpr.Negate():
                return "number"
            case (
                finalexpr.Cmp()
                | finalexpr.BoolOp()
                | finalexpr.NotOp()
                | finalexpr.IsNullOp()
                | finalexpr.InOp()
                | finalexpr.LikeOp()
            ):
                return "bool"
        return None


def _unsupported(node: exp.Expr) -> Exception:
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return error_at(node, "subqueries are not supported")
    if isinstance(node, exp.ILike):
        return error_at(
            node,
            "ILIKE on group keys and aggregates is not supported (it is in WHERE); LIKE is"
            " case-sensitive",
        )
    if isinstance(node, exp.Func):
        return unsupported_function(node)
    return error_at(node, f"unsupported expression: {sql_text(node)}")
