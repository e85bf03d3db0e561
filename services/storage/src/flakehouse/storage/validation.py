"""The checks a plan passes before a storage node runs it, so that execution can trust it: known
operators and functions, their arguments, and names of computed columns that exist (and, inside
a computed column, only earlier ones)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels import calendar
from flakehouse.kernels.computed_names import computed_index, is_computed
from flakehouse.kernels.text import regex
from flakehouse.storage.aggregate import AGGREGATORS
from flakehouse.storage.predicate import COMPARE_OPS, not_operand

IR_VERSION = 2
"""The newest IR this node runs; a plan of IR 1 (what a query service of the release before
sends, and plans without v2's features still say) is a v2 plan without them."""
IR_VERSIONS = (1, IR_VERSION)
_F = plan_pb2.AggregateFunction
_S = plan_pb2.ScalarFunction


class UnsupportedPlan(ValueError):
    """The plan uses something this storage node cannot execute (maps to INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class _Arg:
    """An argument: the types a literal may have (a NULL literal is always allowed, unless it
    must be a literal: then a value is wanted), and whether it must be a literal."""

    kinds: tuple[int, ...]
    literal: bool = False


@dataclass(frozen=True)
class _Signature:
    args: tuple[_Arg, ...]
    required: int
    """How many of `args` must be given; with `variadic`, the last one repeats."""
    variadic: bool = False


_NUMBER = _Arg((v.INT, v.FLOAT))
_STRING = _Arg((v.STRING,))
_INT = _Arg((v.INT,))
_ANY = _Arg((v.STRING, v.INT, v.FLOAT, v.BOOL))
_STRING_LITERAL = _Arg((v.STRING,), literal=True)
_INT_LITERAL = _Arg((v.INT,), literal=True)

_SIGNATURES: dict[int, _Signature] = {
    **{
        f: _Signature((_NUMBER, _NUMBER), 2)
        for f in (
            _S.SCALAR_FUNCTION_ADD,
            _S.SCALAR_FUNCTION_SUBTRACT,
            _S.SCALAR_FUNCTION_MULTIPLY,
            _S.SCALAR_FUNCTION_DIVIDE,
            _S.SCALAR_FUNCTION_MODULO,
        )
    },
    _S.SCALAR_FUNCTION_NEGATE: _Signature((_NUMBER,), 1),
    _S.SCALAR_FUNCTION_LOWER: _Signature((_STRING,), 1),
    _S.SCALAR_FUNCTION_UPPER: _Signature((_STRING,), 1),
    _S.SCALAR_FUNCTION_LENGTH: _Signature((_STRING,), 1),
    _S.SCALAR_FUNCTION_SUBSTR: _Signature((_STRING, _INT, _INT), 2),
    _S.SCALAR_FUNCTION_SPLIT_PART: _Signature((_STRING, _STRING, _INT), 3),
    _S.SCALAR_FUNCTION_REGEXP_MATCHES: _Signature((_STRING, _STRING_LITERAL), 2),
    _S.SCALAR_FUNCTION_COALESCE: _Signature((_ANY,), 1, variadic=True),
    _S.SCALAR_FUNCTION_DATE_TRUNC: _Signature((_STRING_LITERAL, _INT, _STRING_LITERAL), 3),
    _S.SCALAR_FUNCTION_TIME_BUCKET: _Signature(
        (_INT, _INT_LITERAL, _INT_LITERAL, _STRING_LITERAL), 4
    ),
}


def _function_name(function: int) -> str:
    if function in _S.values():
        return _S.Name(function).removeprefix("SCALAR_FUNCTION_")  # type: ignore[arg-type]
    return str(function)


class _Refs:
    """Which computed columns a name may refer to: those before `limit`."""

    def __init__(self, limit: int, inside: int | None = None) -> None:
        self.limit = limit
        self.inside = inside
        """The computed column being checked, if any."""

    def check(self, name: str) -> None:
        if not is_computed(name):
            return
        index = computed_index(name)
        if index is None:
            raise UnsupportedPlan(f"{name!r} names no computed column (they are $0, $1, …)")
        if self.inside is None:
            if index >= self.limit:
                raise UnsupportedPlan(
                    f"{name} names no computed column (the plan has {self.limit})"
                )
        elif index == self.inside:
            raise UnsupportedPlan(f"computed column {name} refers to itself")
        elif index >= self.limit:
            raise UnsupportedPlan(
                f"computed column ${self.inside} refers to {name}, which is not an earlier one"
            )


def _check_expr(expr: plan_pb2.Expr, refs: _Refs) -> None:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        if expr.compare.op not in COMPARE_OPS:
            raise UnsupportedPlan(f"unknown compare op {expr.compare.op}")
        refs.check(expr.compare.field)
    elif kind in ("in_list", "like", "is_null"):
        refs.check(getattr(expr, kind).field)
    elif kind == "junction":
        if expr.junction.op not in (plan_pb2.JUNCTION_OP_AND, plan_pb2.JUNCTION_OP_OR):
            raise UnsupportedPlan(f"unknown junction op {expr.junction.op}")
        for operand in expr.junction.operands:
            _check_expr(operand, refs)
    elif kind == "not":
        if not getattr(expr, "not").HasField("operand"):
            raise UnsupportedPlan("NOT without an operand")
        _check_expr(not_operand(expr), refs)
    elif kind is None:
        raise UnsupportedPlan("empty filter expression")


def _check_arg(name: str, position: int, arg: plan_pb2.Scalar, spec: _Arg, refs: _Refs) -> None:
    is_literal = arg.WhichOneof("kind") == "literal"
    if spec.literal and not is_literal:
        raise UnsupportedPlan(f"argument {position + 1} of {name} must be a literal")
    if is_literal:
        value = v.from_value(arg.literal)
        if value is None:
            if spec.literal:
                raise UnsupportedPlan(f"argument {position + 1} of {name} must not be NULL")
        elif v.type_of(value) not in spec.kinds:
            wanted = " or ".join(v.TYPE_NAMES[k] for k in spec.kinds)
            raise UnsupportedPlan(
                f"argument {position + 1} of {name} must be {wanted}, not "
                f"{v.TYPE_NAMES[v.type_of(value)]} {value!r}"
            )
    _check_scalar(arg, refs)


def _check_call(call: plan_pb2.ScalarCall, refs: _Refs) -> None:
    name = _function_name(call.function)
    signature = _SIGNATURES.get(call.function)
    if signature is None:
        raise UnsupportedPlan(f"scalar function {name} is not supported by this storage node")
    count = len(call.args)
    most = None if signature.variadic else len(signature.args)
    if count < signature.required or (most is not None and count > most):
        wanted = (
            f"at least {signature.required}"
            if most is None
            else str(most)
            if most == signature.required
            else f"{signature.required} or {most}"
        )
        raise UnsupportedPlan(f"{name} takes {wanted} arguments, not {count}")
    for position, arg in enumerate(call.args):
        spec = signature.args[min(position, len(signature.args) - 1)]
        _check_arg(name, position, arg, spec, refs)
    if call.function == _S.SCALAR_FUNCTION_REGEXP_MATCHES:
        pattern = call.args[1].literal.string_value
        try:
            regex(pattern)
        except ValueError as exc:
            raise UnsupportedPlan(f"REGEXP_MATCHES pattern {pattern!r}: {exc}") from None
    elif call.function == _S.SCALAR_FUNCTION_DATE_TRUNC:
        _check_calendar(name, calendar.check_unit, call.args[0].literal.string_value)
        _check_calendar(name, calendar.check_zone, call.args[2].literal.string_value)
    elif call.function == _S.SCALAR_FUNCTION_TIME_BUCKET:
        width, months = call.args[1].literal.int_value, call.args[2].literal.int_value
        if width < 0 or months < 0 or (width == 0) == (months == 0):
            raise UnsupportedPlan(
                "TIME_BUCKET takes one positive width, in microseconds or in months, and 0 for "
                f"the other: not {width} µs and {months} months"
            )
        if width > calendar.MAX_BUCKET_US or months > calendar.MAX_BUCKET_MONTHS:
            raise UnsupportedPlan(
                f"TIME_BUCKET width {width} µs or {months} months: at most 10,000 years"
            )
        _check_calendar(name, calendar.check_zone, call.args[3].literal.string_value)


def _check_calendar(name: str, check: Callable[[str], object], value: str) -> None:
    try:
        check(value)
    except ValueError as exc:
        raise UnsupportedPlan(f"{name}: {exc}") from None


def _check_scalar(scalar: plan_pb2.Scalar, refs: _Refs) -> None:
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        refs.check(scalar.field)
    elif kind == "call":
        _check_call(scalar.call, refs)
    elif kind == "case_when":
        case = scalar.case_when
        if not case.branches:
            raise UnsupportedPlan("CASE without a WHEN branch")
        for branch in case.branches:
            if not branch.HasField("condition"):
                raise UnsupportedPlan("CASE branch without a condition")
            _check_expr(branch.condition, refs)
            _check_scalar(branch.value, refs)
        if case.HasField("otherwise"):
            _check_scalar(case.otherwise, refs)
    elif kind is None:
        raise UnsupportedPlan("empty scalar (no field, literal, call or CASE)")


def check_plan(plan: plan_pb2.QueryPlan) -> None:
    """Raises UnsupportedPlan, saying why, for a plan this node cannot run."""
    if plan.ir_version not in IR_VERSIONS:
        raise UnsupportedPlan(
            f"query plan IR version {plan.ir_version} is not supported (this node runs "
            f"IR versions {', '.join(map(str, IR_VERSIONS))})"
        )
    for k, scalar in enumerate(plan.computed):
        _check_scalar(scalar, _Refs(k, inside=k))
    refs = _Refs(len(plan.computed))
    if plan.HasField("filter"):
        _check_expr(plan.filter, refs)
    for key in plan.group_by:
        kind = key.WhichOneof("kind")
        if kind is None:
            raise UnsupportedPlan("empty group-by key")
        if kind == "field":
            refs.check(key.field)
        if kind == "time_bucket_us" and key.time_bucket_us <= 0:
            raise UnsupportedPlan(f"time bucket width must be positive, not {key.time_bucket_us}")
    for agg in plan.aggregates:
        if agg.function not in AGGREGATORS:
            name = _F.Name(agg.function) if agg.function in _F.values() else str(agg.function)
            raise UnsupportedPlan(f"aggregate {name} is not supported by this storage node yet")
        if agg.function != _F.AGGREGATE_FUNCTION_COUNT and not agg.field:
            raise UnsupportedPlan(f"aggregate {_F.Name(agg.function)} needs a field")
        if agg.function == _F.AGGREGATE_FUNCTION_PERCENTILE and not 0 < agg.quantile <= 1:
            raise UnsupportedPlan(f"PERCENTILE quantile must be in (0, 1], not {agg.quantile}")
        refs.check(agg.field)
        if agg.HasField("filter"):
            _check_expr(agg.filter, refs)
    for name in plan.select_fields:
        refs.check(name)
    for order in plan.order_by:
        refs.check(order.field)
    if not plan.aggregates and not plan.group_by and not plan.select_fields:
        raise UnsupportedPlan("plan has no aggregates, group-by keys or select fields")
