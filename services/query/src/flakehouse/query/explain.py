"""EXPLAIN: a planned query as readable lines, one per item of the plan (what storage nodes run)
and of what the query service does after the merge, then per partition the replicas it would
ask."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.core.limits import CUTOFF_REASONS
from flakehouse.events.values import from_value
from flakehouse.kernels.computed_names import computed_index, computed_name
from flakehouse.query import finalexpr
from flakehouse.query.cutoff import QueryCutoff
from flakehouse.query.finalexpr import Cell
from flakehouse.query.sql import PlannedQuery
from flakehouse.query.sql.scalars import is_time_column
from flakehouse.query.sql.scope import aggregate_name
from flakehouse.query.sql.syntax import TIMESTAMP
from flakehouse.query.v1 import query_pb2
from flakehouse.quota.v1 import quota_pb2
from flakehouse.replication.v1 import replication_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMPARE_OPS = {
    plan_pb2.COMPARE_OP_EQ: "=",
    plan_pb2.COMPARE_OP_NE: "!=",
    plan_pb2.COMPARE_OP_LT: "<",
    plan_pb2.COMPARE_OP_LE: "<=",
    plan_pb2.COMPARE_OP_GT: ">",
    plan_pb2.COMPARE_OP_GE: ">=",
}
_DURATION_UNITS = (
    ("d", 86_400_000_000),
    ("h", 3_600_000_000),
    ("m", 60_000_000),
    ("s", 1_000_000),
    ("ms", 1_000),
    ("us", 1),
)


def explain_response(
    planned: PlannedQuery,
    dataset: replication_pb2.DatasetPlacement,
    nodes: dict[str, replication_pb2.Node],
    live: dict[int, list[replication_pb2.Node]],
    minimums: dict[int, int],
    cutoff: QueryCutoff | None = None,
    behind: dict[int, str] | None = None,
) -> query_pb2.QueryResponse:
    """EXPLAIN's answer, one column 'plan': the plan's lines, then per partition the replicas
    the query would ask, in order (`live`, fanout.candidates: the first; the next after
    hedge_after_ms or a failure), how far behind the first one is (`behind`,
    freshness.first_replica_freshness), and the offset it would wait for (`minimums`)."""
    lines = explain_lines(planned, cutoff)
    lines.append(f"partitions: {len(dataset.partitions)} (topic {dataset.topic})")
    for partition in sorted(dataset.partitions, key=lambda p: p.partition):
        lines.append(
            f"partition {partition.partition}: "
            + _partition_text(partition, nodes, live, minimums, behind or {})
        )
    return query_pb2.QueryResponse(
        columns=[query_pb2.ResultColumn(name="plan", type=events_pb2.VALUE_TYPE_STRING)],
        rows=[events_pb2.Row(values=[events_pb2.Value(string_value=line)]) for line in lines],
        plan=planned.plan,
    )


def _partition_text(
    partition: replication_pb2.PartitionPlacement,
    nodes: dict[str, replication_pb2.Node],
    live: dict[int, list[replication_pb2.Node]],
    minimums: dict[int, int],
    behind: dict[int, str],
) -> str:
    asked = [node.node_id for node in live[partition.partition]]
    if asked and partition.partition in behind:
        asked[0] += f" ({behind[partition.partition]})"
    down = [
        f"{n} (down)" if n in nodes else f"{n} (unknown node)"
        for n in partition.replicas
        if n not in {node.node_id for node in live[partition.partition]}
    ]
    if asked:
        text = "ask " + ", then ".join(asked)
        if down:
            text += "; skip " + ", ".join(down)
    else:
        skipped = ", ".join(down) or "no replicas placed"
        text = f"no live replica ({skipped}): the answer would be partial"
    if partition.partition in minimums:
        text += f"; wait for offset {minimums[partition.partition]}"
    return text


def explain_lines(planned: PlannedQuery, cutoff: QueryCutoff | None = None) -> list[str]:
    """The plan as `label: value` lines: first what every storage node runs (dataset, time
    range, the dataset's cutoff when it has one, filter, group keys and aggregates, or fields,
    order and per-partition limit), then what the query service applies after the merge
    (HAVING, ORDER BY, LIMIT, output columns)."""
    plan = planned.plan
    lines = [
        f"dataset: {plan.dataset}",
        f"ir_version: {plan.ir_version}",
        f"time range: {time_range_text(plan.time_range)}",
    ]
    if cutoff is not None:
        lines.append(f"cutoff: {cutoff_text(cutoff)}")
    if plan.computed:
        computed = [
            f"{computed_name(i)} = {scalar_text(scalar, plan)}"
            for i, scalar in enumerate(plan.computed)
        ]
        lines.append(f"computed: {', '.join(computed)}")
    filtered = filter_text(plan.filter, plan) if plan.HasField("filter") else "none (every row)"
    lines.append(f"filter: {filtered}")
    if planned.is_aggregate:
        keys = [_group_key_text(key) for key in plan.group_by]
        lines.append(f"group by: {', '.join(keys) if keys else 'none (one group of all rows)'}")
        answered = {i for output in planned.outputs for i in _aggregates_in(output)}
        aggregates = [
            aggregate_text(aggregate, plan) + ("" if i in answered else " (not in the answer)")
            for i, aggregate in enumerate(plan.aggregates)
        ]
        lines.append(f"aggregates: {', '.join(aggregates)}")
        if planned.having is not None:
            lines.append(f"after merge, having: {_value_text(planned.having, planned)}")
        order = [_sort_text(sort, planned) for sort in planned.order]
        if plan.group_by:
            order.append("then the group keys ascending" if order else "the group keys ascending")
        if order:
            lines.append(f"after merge, order by: {', '.join(order)}")
    else:
        shown = {
            output.index for output in planned.outputs if isinstance(output, finalexpr.FieldRef)
        }
        fields = [
            _name(name) if i in shown else f"{_name(name)} (for ORDER BY only)"
            for i, name in enumerate(plan.select_fields)
        ]
        lines.append(f"select fields: {', '.join(fields)}")
        if plan.order_by:
            order_by = [_name(o.field) + (" DESC" if o.descending else "") for o in plan.order_by]
            lines.append(f"order by: {', '.join(order_by)}")
        lines.append(f"limit per partition: {plan.limit}")
        if planned.order:
            order = [_sort_text(sort, planned) for sort in planned.order]
            lines.append(f"after merge, order by: {', '.join(order)}")
    if planned.limit is not None or planned.offset:
        limit = "none" if planned.limit is None else str(planned.limit)
        offset = f" offset {planned.offset}" if planned.offset else ""
        lines.append(f"after merge, limit: {limit}{offset}")
    columns = [
        _column_text(name, output, planned)
        for name, output in zip(planned.columns, planned.outputs, strict=True)
    ]
    lines.append(f"columns: {', '.join(columns)}")
    return lines


def time_range_text(time_range: plan_pb2.TimeRange) -> str:
    """The half-open range as a condition on timestamp, times in RFC 3339 (UTC)."""
    bounds = []
    if time_range.HasField("start_us"):
        bounds.append(f"timestamp >= '{rfc3339(time_range.start_us)}'")
    if time_range.HasField("end_us"):
        bounds.append(f"timestamp < '{rfc3339(time_range.end_us)}'")
    return " AND ".join(bounds) if bounds else "all"


def cutoff_text(cutoff: QueryCutoff) -> str:
    """The cutoff as a condition on timestamp, with why it is there: `(retention 2h)`,
    `(stored-bytes limit)`."""
    why = CUTOFF_REASONS.get(cutoff.reason) or "limits"
    if cutoff.retention_s:
        why += f" {duration_text(cutoff.retention_s * 1_000_000)}"
    elif cutoff.reason == quota_pb2.CUTOFF_REASON_RETENTION:
        # The floor a retention left when it was lengthened or removed: rows it allowed
        # replicas to delete do not come back.
        why += " before it was lengthened or removed"
    return f"timestamp >= '{rfc3339(cutoff.start_us)}' ({why})"


def rfc3339(micros: int) -> str:
    """Microseconds since the epoch as RFC 3339 in UTC, with a fraction only when needed; as
    a number of microseconds when out of datetime's range (years 1 to 9999)."""
    try:
        moment = _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return f"{micros} us"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return f"{text}Z"


def filter_text(expr: plan_pb2.Expr, plan: plan_pb2.QueryPlan | None = None) -> str:
    """An IR filter as SQL; `plan` tells which computed columns hold times."""
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        compare = expr.compare
        op = _COMPARE_OPS.get(compare.op, "?")
        return f"{_name(compare.field)} {op} {_field_value(compare.field, compare.value, plan)}"
    if kind == "in_list":
        in_list = expr.in_list
        values = ", ".join(_field_value(in_list.field, v, plan) for v in in_list.values)
        negated = " NOT" if in_list.negated else ""
        return f"{_name(in_list.field)}{negated} IN ({values})"
    if kind == "like":
        negated = " NOT" if expr.like.negated else ""
        return f"{_name(expr.like.field)}{negated} LIKE {_literal(expr.like.pattern)}"
    if kind == "is_null":
        negated = " NOT" if expr.is_null.negated else ""
        return f"{_name(expr.is_null.field)} IS{negated} NULL"
    if kind == "junction":
        op = " AND " if expr.junction.op == plan_pb2.JUNCTION_OP_AND else " OR "
        return op.join(_operand_text(operand, plan) for operand in expr.junction.operands)
    if kind == "not":
        # `not` is a Python keyword: the field is reached with getattr.
        return f"NOT {_operand_text(getattr(expr, 'not').operand, plan)}"
    return "?"


def aggregate_text(aggregate: plan_pb2.Aggregate, plan: plan_pb2.QueryPlan | None = None) -> str:
    """An aggregate as SQL, with the rows it takes when it has a condition:
    `count(*) FILTER (WHERE status = 'failed')` (so is count_if(status = 'failed'))."""
    text = aggregate_name(aggregate)
    if aggregate.HasField("filter"):
        text += f" FILTER (WHERE {filter_text(aggregate.filter, plan)})"
    return text


def _operand_text(expr: plan_pb2.Expr, plan: plan_pb2.QueryPlan | None) -> str:
    text = filter_text(expr, plan)
    return f"({text})" if expr.WhichOneof("kind") == "junction" else text


def _field_value(field: str, value: events_pb2.Value, plan: plan_pb2.QueryPlan | None) -> str:
    literal = from_value(value)
    is_time = field == TIMESTAMP or (plan is not None and is_time_column(plan, field))
    if is_time and isinstance(literal, int) and not isinstance(literal, bool):
        return f"'{rfc3339(literal)}'"
    return _literal(literal)


_FUNCTION_NAMES = {
    plan_pb2.SCALAR_FUNCTION_LOWER: "lower",
    plan_pb2.SCALAR_FUNCTION_UPPER: "upper",
    plan_pb2.SCALAR_FUNCTION_LENGTH: "length",
    plan_pb2.SCALAR_FUNCTION_SUBSTR: "substr",
    plan_pb2.SCALAR_FUNCTION_SPLIT_PART: "split_part",
    plan_pb2.SCALAR_FUNCTION_REGEXP_MATCHES: "regexp_matches",
    plan_pb2.SCALAR_FUNCTION_COALESCE: "coalesce",
    plan_pb2.SCALAR_FUNCTION_DATE_TRUNC: "date_trunc",
}
_OPERATORS = {
    plan_pb2.SCALAR_FUNCTION_ADD: "+",
    plan_pb2.SCALAR_FUNCTION_SUBTRACT: "-",
    plan_pb2.SCALAR_FUNCTION_MULTIPLY: "*",
    plan_pb2.SCALAR_FUNCTION_DIVIDE: "/",
    plan_pb2.SCALAR_FUNCTION_MODULO: "%",
}


def scalar_text(scalar: plan_pb2.Scalar, plan: plan_pb2.QueryPlan | None = None) -> str:
    """A computed column's expression as SQL: `lower(hostname)`, `duration * 1000`."""
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        return _name(scalar.field)
    if kind == "literal":
        return _literal(from_value(scalar.literal))
    if kind == "case_when":
        branches = " ".join(
            f"WHEN {filter_text(b.condition, plan)} THEN {scalar_text(b.value, plan)}"
            for b in scalar.case_when.branches
        )
        otherwise = scalar.case_when.otherwise
        rest = f" ELSE {scalar_text(otherwise, plan)}" if otherwise.ListFields() else ""
        return f"CASE {branches}{rest} END"
    if kind != "call":
        return "?"
    function, args = scalar.call.function, scalar.call.args
    if function in _OPERATORS and len(args) == 2:
        left, right = (_scalar_operand(a, plan) for a in args)
        return f"{left} {_OPERATORS[function]} {right}"
    if function == plan_pb2.SCALAR_FUNCTION_NEGATE and len(args) == 1:
        return f"-{_scalar_operand(args[0], plan)}"
    if function == plan_pb2.SCALAR_FUNCTION_TIME_BUCKET and len(args) == 4:
        width_us, months = (from_value(a.literal) for a in args[1:3])
        width = _months_text(int(months or 0)) if months else duration_text(int(width_us or 0))
        rest = f"'{width}', {scalar_text(args[3], plan)}"
        return f"time_bucket({scalar_text(args[0], plan)}, {rest})"
    name = _FUNCTION_NAMES.get(function, "?")
    return f"{name}({', '.join(scalar_text(a, plan) for a in args)})"


def _months_text(months: int) -> str:
    count, unit = (months // 12, "year") if months % 12 == 0 else (months, "month")
    return f"{count} {unit}{'s' if count != 1 else ''}"


def _scalar_operand(scalar: plan_pb2.Scalar, plan: plan_pb2.QueryPlan | None) -> str:
    text = scalar_text(scalar, plan)
    return text if scalar.WhichOneof("kind") in ("field", "literal") else f"({text})"


def _group_key_text(key: plan_pb2.GroupKey) -> str:
    if key.WhichOneof("kind") == "time_bucket_us":
        return f"time_bucket({TIMESTAMP}, '{duration_text(key.time_bucket_us)}')"
    return _name(key.field)


def duration_text(micros: int) -> str:
    """A duration in its largest whole unit: '1h', '90m', '7d'."""
    for unit, size in _DURATION_UNITS:
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"  # unreachable: every int is a whole number of microseconds


def _name(field: str) -> str:
    if computed_index(field) is not None:
        return field  # `$0`: a computed column, defined on the `computed:` line
    return field if _PLAIN_NAME.fullmatch(field) else '"' + field.replace('"', '""') + '"'


def _literal(value: Cell) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


# -- post-merge expressions ------------------------------------------------------------------


def _aggregates_in(expr: finalexpr.ValueExpr) -> set[int]:
    """Indexes of the aggregates an expression reads."""
    match expr:
        case finalexpr.AggRef(index):
            return {index}
        case finalexpr.Arith(_, left, right) | finalexpr.Cmp(_, left, right):
            return _aggregates_in(left) | _aggregates_in(right)
        case finalexpr.BoolOp(_, operands):
            return set().union(*(_aggregates_in(o) for o in operands))
        case (
            finalexpr.Negate(operand)
            | finalexpr.NotOp(operand)
            | finalexpr.IsNullOp(operand)
            | finalexpr.InOp(operand)
        ):
            return _aggregates_in(operand)
        case finalexpr.LikeOp():
            return _aggregates_in(expr.operand)
    return set()


def _column_text(name: str, output: finalexpr.ValueExpr, planned: PlannedQuery) -> str:
    text = _value_text(output, planned)
    return text if text in (name, _name(name)) else f"{text} AS {_name(name)}"


def _sort_text(sort: finalexpr.SortKey, planned: PlannedQuery) -> str:
    return _value_text(sort.expr, planned) + (" DESC" if sort.descending else "")


def _value_text(expr: finalexpr.ValueExpr, planned: PlannedQuery) -> str:
    """A post-merge expression as SQL over the plan's group keys, aggregates and fields."""
    plan = planned.plan

    def text(e: finalexpr.ValueExpr) -> str:
        match e:
            case finalexpr.KeyRef(index):
                return _group_key_text(plan.group_by[index])
            case finalexpr.AggRef(index):
                return aggregate_text(plan.aggregates[index], plan)
            case finalexpr.FieldRef(index):
                return _name(plan.select_fields[index])
            case finalexpr.Lit(value):
                return _literal(value)
            case finalexpr.Arith(op, left, right) | finalexpr.Cmp(op, left, right):
                return f"{operand(left)} {op} {operand(right)}"
            case finalexpr.Negate(operand_expr):
                return f"-{operand(operand_expr)}"
            case finalexpr.BoolOp(op, operands):
                return f" {op.upper()} ".join(operand(o) for o in operands)
            case finalexpr.NotOp(operand_expr):
                return f"NOT {operand(operand_expr)}"
            case finalexpr.IsNullOp(operand_expr, negated):
                return f"{operand(operand_expr)} IS{' NOT' if negated else ''} NULL"
            case finalexpr.InOp(operand_expr, values, negated):
                listed = ", ".join(_literal(v) for v in values)
                return f"{operand(operand_expr)}{' NOT' if negated else ''} IN ({listed})"
            case finalexpr.LikeOp():
                not_ = " NOT" if e.negated else ""
                return f"{operand(e.operand)}{not_} LIKE {_literal(e.pattern)}"
        return "?"

    def operand(e: finalexpr.ValueExpr) -> str:
        simple = isinstance(
            e, finalexpr.KeyRef | finalexpr.AggRef | finalexpr.FieldRef | finalexpr.Lit
        )
        return text(e) if simple else f"({text(e)})"

    return text(expr)
