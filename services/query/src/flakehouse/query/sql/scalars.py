"""Scalar expressions (lower(name), duration * 1000, CASE …, date_trunc(…)) → the plan's computed
columns `$0`, `$1`, …, each expression once, with what is known of its type before the query runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from sqlglot import exp

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import INT64_MAX, INT64_MIN, Scalar, from_value, to_value
from flakehouse.kernels import text
from flakehouse.kernels.computed_names import computed_index, computed_name
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.syntax import (
    AGGREGATE_FUNCTIONS,
    TIMESTAMP,
    field_name,
    function_name,
    is_aggregate_call,
    is_field,
    is_literal,
    literal_value,
    unknown_function,
)
from flakehouse.query.sql.timefuncs import date_trunc, time_bucket

ScalarFunction: TypeAlias = plan_pb2.ScalarFunction.ValueType
Kind = Literal["number", "string", "bool", "time"] | None
"""A value's type when known before the query runs; None: any (a field's values may be of any
type). "time" is int microseconds since the epoch, answered as a TIMESTAMP."""

Conditions = Callable[[exp.Expr, "Scalars", bool], plan_pb2.Expr]
"""Translates a condition (negated when told) to a plan Expr: filters.translate_condition."""

SCALAR_FUNCTIONS = (
    "lower, upper, length, substr, split_part, regexp_matches, coalesce, date_trunc,"
    " time_bucket, CASE WHEN … END and + - * / %"
)
_ARITHMETIC: dict[type[exp.Expr], ScalarFunction] = {
    exp.Add: plan_pb2.SCALAR_FUNCTION_ADD,
    exp.Sub: plan_pb2.SCALAR_FUNCTION_SUBTRACT,
    exp.Mul: plan_pb2.SCALAR_FUNCTION_MULTIPLY,
    exp.Div: plan_pb2.SCALAR_FUNCTION_DIVIDE,
    exp.Mod: plan_pb2.SCALAR_FUNCTION_MODULO,
}
_STRING_FUNCTIONS: dict[type[exp.Expr], tuple[ScalarFunction, Kind]] = {
    exp.Lower: (plan_pb2.SCALAR_FUNCTION_LOWER, "string"),
    exp.Upper: (plan_pb2.SCALAR_FUNCTION_UPPER, "string"),
    exp.Length: (plan_pb2.SCALAR_FUNCTION_LENGTH, "number"),
}
# Conditions, which are bool values where a value is wanted (`SELECT duration > 5`).
_PREDICATES = (
    exp.EQ,
    exp.NEQ,
    exp.LT,
    exp.LTE,
    exp.GT,
    exp.GTE,
    exp.In,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.Between,
    exp.Not,
    exp.And,
    exp.Or,
)
_TIME_FUNCTIONS = frozenset(
    {plan_pb2.SCALAR_FUNCTION_DATE_TRUNC, plan_pb2.SCALAR_FUNCTION_TIME_BUCKET}
)


def is_time_column(plan: plan_pb2.QueryPlan, name: str) -> bool:
    """Whether a plan's field or computed column holds times: `timestamp`, date_trunc(…),
    time_bucket(…)."""
    while True:
        if name == TIMESTAMP:
            return True
        index = computed_index(name)
        if index is None or index >= len(plan.computed):
            return False
        scalar = plan.computed[index]
        kind = scalar.WhichOneof("kind")
        if kind == "field":
            name = scalar.field
            continue
        return kind == "call" and scalar.call.function in _TIME_FUNCTIONS


@dataclass(frozen=True)
class Typed:
    """A translated expression and its type."""

    scalar: plan_pb2.Scalar
    kind: Kind


def kind_of_value(value: Scalar | None) -> Kind:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "number"


class Scalars:
    """Translates the scalar expressions of one query and collects its computed columns.

    `zone` is the query's time zone (date_trunc and time_bucket without one follow it) and
    `now_us` what now() means; `conditions` translates CASE's conditions.
    """

    def __init__(
        self, table_names: Collection[str], *, zone: str, now_us: int, conditions: Conditions
    ) -> None:
        self.table_names = table_names
        self.zone = zone
        self.now_us = now_us
        self.computed: list[plan_pb2.Scalar] = []
        self._kinds: list[Kind] = []
        self._ids: dict[bytes, int] = {}
        self._conditions = conditions

    # -- columns ----------------------------------------------------------------------------

    def column(self, node: exp.Expr) -> str:
        """The field `node` names, or the name of the computed column it is (added when new)."""
        if is_field(node):
            return field_name(node, self.table_names)
        return self.register(self.translate(node))

    def register(self, typed: Typed) -> str:
        """The name of the computed column `typed` is (a field: the field's)."""
        if typed.scalar.WhichOneof("kind") == "field":
            return typed.scalar.field
        key = typed.scalar.SerializeToString(deterministic=True)
        if key not in self._ids:
            self._ids[key] = len(self.computed)
            self.computed.append(typed.scalar)
            self._kinds.append(typed.kind)
        return computed_name(self._ids[key])

    def existing(self, node: exp.Expr) -> str | None:
        """The field or computed column `node` is if the plan has it already, else None.
        Raises QueryError when `node` is no scalar expression."""
        typed = self._translate_only(node)
        if typed.scalar.WhichOneof("kind") == "field":
            return typed.scalar.field
        index = self._ids.get(typed.scalar.SerializeToString(deterministic=True))
        return None if index is None else computed_name(index)

    def _translate_only(self, node: exp.Expr) -> Typed:
        """`translate`, leaving the plan as it was: the columns that conditions inside `node`
        added are taken back."""
        count = len(self.computed)
        try:
            return self.translate(node)
        finally:
            del self.computed[count:], self._kinds[count:]
            self._ids = {k: i for k, i in self._ids.items() if i < count}

    def kind(self, name: str) -> Kind:
        """The type of a field (None but for timestamp) or computed column."""
        if name == TIMESTAMP:
            return "time"
        index = computed_index(name)
        return None if index is None else self._kinds[index]

    def kind_of(self, node: exp.Expr) -> Kind:
        """The type of `node`, leaving the plan as it was (no column added for it)."""
        return self._translate_only(node).kind

    def constant(self, node: exp.Expr) -> tuple[bool, Scalar | None]:
        """(True, value) when `node` is a literal or folds to one (`5 * 1000`), else (False,
        None)."""
        scalar = self._translate_only(node).scalar
        if scalar.WhichOneof("kind") != "literal":
            return False, None
        return True, from_value(scalar.literal)

    # -- translation ------------------------------------------------------------------------

    def translate(self, node: exp.Expr) -> Typed:
        """The Scalar of an expression, nested calls inlined; literal-only arithmetic and string
        functions folded."""
        if isinstance(node, exp.Paren):
            return self.translate(node.this)
        if is_field(node):
            name = field_name(node, self.table_names)
            return Typed(plan_pb2.Scalar(field=name), "time" if name == TIMESTAMP else None)
        if is_literal(node):
            value = literal_value(node)
            return Typed(plan_pb2.Scalar(literal=to_value(value)), kind_of_value(value))
        if is_aggregate_call(node):
            raise error_at(
                node,
                f"aggregate function {function_name(node)}() cannot be used inside a scalar"
                " expression",
            )
        if isinstance(node, exp.Neg):
            operand = self._number(node.this, node)
            return self._call(plan_pb2.SCALAR_FUNCTION_NEGATE, [operand], "number")
        if type(node) in _ARITHMETIC:
            left = self._number(node.this, node)
            right = self._number(node.expression, node)
            return self._call(_ARITHMETIC[type(node)], [left, right], "number")
        if type(node) in _STRING_FUNCTIONS:
            function, kind = _STRING_FUNCTIONS[type(node)]
            if any(node.args.get(k) for k in node.args if k != "this"):
                raise error_at(node, f"{function_name(node)}() takes one string")
            return self._call(function, [self._string(node.this, node)], kind)
        if isinstance(node, exp.Substring):
            return self._substring(node)
        if isinstance(node, exp.SplitPart):
            return self._split_part(node)
        if isinstance(node, exp.Coalesce):
            return self._coalesce(node)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.If):
            return self._if(node)
        if isinstance(node, exp.DateTrunc):
            return self._date_trunc(node)
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name == "regexp_matches":
                return self._regexp_matches(node)
            if name == "time_bucket":
                return self._time_bucket(node)
        if isinstance(node, _PREDICATES):
            return self._predicate(node)
        raise unsupported_function(node)

    def _call(self, function: ScalarFunction, args: Sequence[Typed], kind: Kind) -> Typed:
        folded, value = _fold(function, [a.scalar for a in args])
        if folded:
            return Typed(plan_pb2.Scalar(literal=to_value(value)), kind_of_value(value))
        call = plan_pb2.ScalarCall(function=function, args=[a.scalar for a in args])
        return Typed(plan_pb2.Scalar(call=call), kind)

    def _typed_arg(self, node: exp.Expr, wanted: Kind, what: str) -> Typed:
        """An argument of `wanted` type (a time is a number); `what` names the call."""
        typed = self.translate(node)
        kind = "number" if typed.kind == "time" else typed.kind
        if kind is not None and kind != wanted and not _is_null(typed):
            raise error_at(
                node, f"type mismatch: {what} takes a {wanted}, {sql_text(node)} is a {kind}"
            )
        return typed

    def _number(self, node: exp.Expr, operation: exp.Expr) -> Typed:
        """An operand of arithmetic `operation`, which is written out only for an error: as SQL
        it is as long as the operands, and writing it at every level of a + b + c + … took
        time quadratic in the terms."""
        if isinstance(node, exp.Interval):
            raise error_at(
                node,
                "interval arithmetic is supported only in a time compared with timestamp"
                " (timestamp > now() - interval '1 day')",
            )
        typed = self.translate(node)
        kind = "number" if typed.kind == "time" else typed.kind
        if kind not in (None, "number"):
            raise error_at(
                node,
                f"type mismatch: arithmetic needs numbers, {sql_text(node)} is a {kind}"
                f" (in {sql_text(operation)})",
            )
        return typed

    def _string(self, node: exp.Expr | None, call: exp.Expr) -> Typed:
        if node is None:
            raise error_at(call, f"{function_name(call)}() needs a string argument")
        return self._typed_arg(node, "string", f"{function_name(call)}()")

    def _integer(self, node: exp.Expr, call: exp.Expr, what: str) -> Typed:
        typed = self._typed_arg(node, "number", f"{function_name(call)}()")
        literal = typed.scalar.literal if typed.scalar.WhichOneof("kind") == "literal" else None
        if literal is not None and literal.WhichOneof("kind") not in (None, "int_value"):
            raise error_at(
                node,
                f"the {what} of {function_name(call)}() is an integer, not {sql_text(node)}",
            )
        return typed

    def _substring(self, node: exp.Substring) -> Typed:
        usage = "substr(string, start[, length])"
        start = node.args.get("start")
        if start is None:
            raise error_at(node, f"substr() needs a start: {usage}")
        extra = [k for k in node.args if k not in ("this", "start", "length") and node.args[k]]
        if extra:
            raise error_at(node, f"substr() takes two or three arguments: {usage}")
        args = [self._string(node.this, node), self._integer(start, node, "start")]
        length = node.args.get("length")
        if length is not None:
            args.append(self._integer(length, node, "length"))
        return self._call(plan_pb2.SCALAR_FUNCTION_SUBSTR, args, "string")

    def _split_part(self, node: exp.SplitPart) -> Typed:
        delimiter, index = node.args.get("delimiter"), node.args.get("part_index")
        if delimiter is None or index is None:
            raise error_at(node, "split_part() takes three arguments: split_part(string, '.', 2)")
        args = [
            self._string(node.this, node),
            self._typed_arg(delimiter, "string", "split_part()"),
            self._integer(index, node, "index"),
        ]
        return self._call(plan_pb2.SCALAR_FUNCTION_SPLIT_PART, args, "string")

    def _regexp_matches(self, node: exp.Anonymous) -> Typed:
        args = node.expressions
        if len(args) == 3:
            raise error_at(
                args[2],
                "regexp_matches() takes no options here; write them in the pattern, e.g. '(?i)x'"
                " for case-insensitive",
            )
        if len(args) != 2:
            raise error_at(
                node, "regexp_matches() takes two arguments: regexp_matches(string, 'pattern')"
            )
        pattern = args[1]
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise error_at(
                pattern,
                f"the pattern of regexp_matches() is a string in quotes, got {sql_text(pattern)}",
            )
        try:
            text.regex(pattern.this)
        except ValueError as error:
            message = f"bad regular expression {sql_text(pattern)}: {error}"
            raise error_at(pattern, message) from None
        typed = [self._string(args[0], node), self.translate(pattern)]
        return self._call(plan_pb2.SCALAR_FUNCTION_REGEXP_MATCHES, typed, "bool")

    def _coalesce(self, node: exp.Coalesce) -> Typed:
        args = [self.translate(a) for a in [node.this, *node.expressions]]
        return self._call(plan_pb2.SCALAR_FUNCTION_COALESCE, args, _common_kind(args))

    def _case(self, node: exp.Case) -> Typed:
        subject = node.args.get("this")
        branches: list[plan_pb2.WhenThen] = []
        values: list[Typed] = []
        for branch in node.args.get("ifs") or []:
            condition = branch.this
            if subject is not None:
                # CASE x WHEN v THEN … is CASE WHEN x = v THEN ….
                condition = exp.EQ(this=subject.copy(), expression=condition.copy())
            value = self.translate(branch.args["true"])
            values.append(value)
            branches.append(
                plan_pb2.WhenThen(
                    condition=self._conditions(condition, self, False), value=value.scalar
                )
            )
        case = plan_pb2.CaseWhen(branches=branches)
        default = node.args.get("default")
        if default is not None:
            otherwise = self.translate(default)
            values.append(otherwise)
            case.otherwise.CopyFrom(otherwise.scalar)
        return Typed(plan_pb2.Scalar(case_when=case), _common_kind(values))

    def _if(self, node: exp.If) -> Typed:
        # if(c, a, b), as DuckDB spells CASE WHEN c THEN a ELSE b END.
        value = self.translate(node.args["true"])
        case = plan_pb2.CaseWhen(
            branches=[
                plan_pb2.WhenThen(
                    condition=self._conditions(node.this, self, False), value=value.scalar
                )
            ]
        )
        values = [value]
        otherwise = node.args.get("false")
        if otherwise is not None:
            values.append(self.translate(otherwise))
            case.otherwise.CopyFrom(values[-1].scalar)
        return Typed(plan_pb2.Scalar(case_when=case), _common_kind(values))

    def _predicate(self, node: exp.Expr) -> Typed:
        # TRUE where the condition holds, FALSE where its negation does, NULL where neither
        # (a field it reads is missing): SQL's unknown.
        case = plan_pb2.CaseWhen(
            branches=[
                plan_pb2.WhenThen(
                    condition=self._conditions(node, self, False),
                    value=plan_pb2.Scalar(literal=to_value(True)),
                ),
                plan_pb2.WhenThen(
                    condition=self._conditions(node, self, True),
                    value=plan_pb2.Scalar(literal=to_value(False)),
                ),
            ]
        )
        return Typed(plan_pb2.Scalar(case_when=case), "bool")

    def _date_trunc(self, node: exp.DateTrunc) -> Typed:
        trunc = date_trunc(node, self.zone, self.table_names)
        assert trunc is not None
        args = [
            plan_pb2.Scalar(literal=to_value(trunc.unit)),
            plan_pb2.Scalar(field=TIMESTAMP),
            plan_pb2.Scalar(literal=to_value(trunc.zone)),
        ]
        call = plan_pb2.ScalarCall(function=plan_pb2.SCALAR_FUNCTION_DATE_TRUNC, args=args)
        return Typed(plan_pb2.Scalar(call=call), "time")

    def _time_bucket(self, node: exp.Anonymous) -> Typed:
        bucket = time_bucket(node, self.zone, self.table_names)
        assert bucket is not None
        args = [
            plan_pb2.Scalar(field=TIMESTAMP),
            plan_pb2.Scalar(literal=to_value(bucket.width_us)),
            plan_pb2.Scalar(literal=to_value(bucket.months)),
            plan_pb2.Scalar(literal=to_value(bucket.zone)),
        ]
        call = plan_pb2.ScalarCall(function=plan_pb2.SCALAR_FUNCTION_TIME_BUCKET, args=args)
        return Typed(plan_pb2.Scalar(call=call), "time")


def unsupported_function(node: exp.Expr) -> QueryError:
    """The error for an expression no scalar translation exists for, listing what there is."""
    supported = f"scalar functions: {SCALAR_FUNCTIONS}; aggregates: {AGGREGATE_FUNCTIONS}"
    if isinstance(node, exp.Anonymous):
        return error_at(node, f"{unknown_function(node)}; {supported}")
    if isinstance(node, exp.Func):
        return error_at(node, f"function {function_name(node)}() is not supported; {supported}")
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return error_at(node, "subqueries are not supported")
    if isinstance(node, exp.Interval):
        return error_at(
            node,
            "an interval alone is not a value; write e.g. timestamp > now() - interval '1 day'",
        )
    return error_at(node, f"unsupported expression: {sql_text(node)}")


def _is_null(typed: Typed) -> bool:
    return typed.scalar.WhichOneof("kind") == "literal" and not typed.scalar.literal.ListFields()


def _common_kind(values: Sequence[Typed]) -> Kind:
    """The type of a value that is one of `values` (NULL literals aside), when they agree."""
    kinds = {value.kind for value in values if not _is_null(value)}
    return kinds.pop() if len(kinds) == 1 else None


# -- folding literal-only expressions --------------------------------------------------------


def _fold(function: ScalarFunction, args: Sequence[plan_pb2.Scalar]) -> tuple[bool, Scalar | None]:
    """(True, the value) of a call over literals, computed as storage would (plan.proto's
    rules), for the functions cheap to get right; else (False, None)."""
    if not all(arg.WhichOneof("kind") == "literal" for arg in args):
        return False, None
    values = [from_value(arg.literal) for arg in args]
    if function == plan_pb2.SCALAR_FUNCTION_COALESCE:
        return True, next((v for v in values if v is not None), None)
    if function not in _FOLDABLE:
        return False, None
    if any(v is None for v in values):
        return True, None
    if function in _STRING_FOLDS:
        [value] = values
        return (True, _STRING_FOLDS[function](value)) if isinstance(value, str) else (False, None)
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        return False, None
    if function == plan_pb2.SCALAR_FUNCTION_NEGATE:
        return True, _checked(-numbers[0])
    return True, _checked(_NUMBER_FOLDS[function](numbers[0], numbers[1]))


def _checked(value: float | None) -> float | None:
    """An int result beyond int64 is NULL."""
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return None
    return value


def _divide(left: float, right: float) -> float | None:
    return None if right == 0 else left / right


def _modulo(left: float, right: float) -> float | None:
    # The remainder has the dividend's sign (C's %, DuckDB's), not Python's floor modulo.
    if right == 0:
        return None
    if isinstance(left, int) and isinstance(right, int):
        remainder = abs(left) % abs(right)
        return remainder if left >= 0 else -remainder
    return math.fmod(left, right)


_NUMBER_FOLDS: dict[ScalarFunction, Callable[[float, float], float | None]] = {
    plan_pb2.SCALAR_FUNCTION_ADD: lambda a, b: a + b,
    plan_pb2.SCALAR_FUNCTION_SUBTRACT: lambda a, b: a - b,
    plan_pb2.SCALAR_FUNCTION_MULTIPLY: lambda a, b: a * b,
    plan_pb2.SCALAR_FUNCTION_DIVIDE: _divide,
    plan_pb2.SCALAR_FUNCTION_MODULO: _modulo,
}
# As storage computes them (flakehouse.kernels.text: DuckDB's case mapping, not Python's).
_STRING_FOLDS: dict[ScalarFunction, Callable[[str], Scalar]] = {
    plan_pb2.SCALAR_FUNCTION_LOWER: text.lower,
    plan_pb2.SCALAR_FUNCTION_UPPER: text.upper,
    plan_pb2.SCALAR_FUNCTION_LENGTH: len,
}
_FOLDABLE = frozenset({*_NUMBER_FOLDS, *_STRING_FOLDS, plan_pb2.SCALAR_FUNCTION_NEGATE})
