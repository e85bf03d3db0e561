"""The event fields a QueryPlan names, wherever it names them: filter, group keys, aggregates and
their filters, select fields, order, and the computed columns (CASE conditions included)."""

from __future__ import annotations

from flakehouse.common.v1 import plan_pb2
from flakehouse.kernels.computed_names import is_computed
from flakehouse.query.sql.syntax import TIMESTAMP

_EXPR_LEAVES = ("compare", "in_list", "like", "is_null")


def plan_fields(plan: plan_pb2.QueryPlan) -> list[str]:
    """Every event field the plan reads, once each; not `timestamp` (every event has it) nor
    computed columns (`$k`)."""
    names: dict[str, None] = {}
    exprs: list[plan_pb2.Expr] = []
    scalars: list[plan_pb2.Scalar] = list(plan.computed)
    if plan.HasField("filter"):
        exprs.append(plan.filter)
    for key in plan.group_by:
        if key.WhichOneof("kind") == "field":
            names[key.field] = None
    for aggregate in plan.aggregates:
        if aggregate.field:
            names[aggregate.field] = None
        if aggregate.HasField("filter"):
            exprs.append(aggregate.filter)
    for name in plan.select_fields:
        names[name] = None
    for order in plan.order_by:
        names[order.field] = None
    # A worklist rather than recursion: however the plan nests, the stack stays flat.
    while exprs or scalars:
        if scalars:
            scalar = scalars.pop()
            value = scalar.WhichOneof("kind")
            if value == "field":
                names[scalar.field] = None
            elif value == "call":
                scalars.extend(reversed(scalar.call.args))
            elif value == "case_when":
                case = scalar.case_when
                if case.HasField("otherwise"):
                    scalars.append(case.otherwise)
                for branch in reversed(case.branches):
                    scalars.append(branch.value)
                    exprs.append(branch.condition)
            continue
        expr = exprs.pop()
        condition = expr.WhichOneof("kind")
        if condition in _EXPR_LEAVES:
            names[getattr(expr, condition).field] = None
        elif condition == "junction":
            exprs.extend(reversed(expr.junction.operands))
        elif condition == "not":
            exprs.append(getattr(expr, "not").operand)
    names.pop(TIMESTAMP, None)
    names.pop("", None)
    return [name for name in names if not is_computed(name)]
