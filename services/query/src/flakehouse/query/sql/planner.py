"""SQL → QueryPlan: parse the supported SQL subset with sqlglot, translate it to the IR that
storage nodes execute, and keep what the query service itself applies after the merge (output
columns, HAVING, ORDER BY, LIMIT) in a `PlannedQuery`."""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, EncodeError
from sqlglot import exp

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import from_value
from flakehouse.kernels.computed_names import computed_index
from flakehouse.query import finalexpr
from flakehouse.query.sql.depth import check_depth
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.filters import translate_condition, translate_where
from flakehouse.query.sql.parsing import (
    check_clauses,
    classify,
    dataset_of,
    parse_describe,
    parse_select,
)
from flakehouse.query.sql.scalars import Scalars
from flakehouse.query.sql.scope import Scope, aggregate_name
from flakehouse.query.sql.syntax import (
    QUANTILE_ALIASES,
    QUANTILE_SHORTHANDS,
    field_name,
    find_aggregate,
    function_name,
    is_field,
    is_literal,
)
from flakehouse.query.sql.timefuncs import UTC, query_zone, time_bucket

__all__ = [
    "DEFAULT_RAW_LIMIT",
    "IR_VERSION",
    "MAX_RAW_LIMIT",
    "Describe",
    "PlannedQuery",
    "parse_statement",
    "plan_query",
]

IR_VERSION = 2
"""The IR a plan that computes columns, filters an aggregate, asks for STDDEV or lays week buckets
needs; other plans say 1, so storage nodes of the release before keep answering them during a
rolling upgrade and refuse, rather than misread, the rest."""
DEFAULT_RAW_LIMIT = 1000
"""Rows a raw-rows query returns when it has no LIMIT."""
MAX_RAW_LIMIT = 100_000
"""Most rows (LIMIT + OFFSET) a raw-rows query may ask for: each partition sends that many."""


@dataclass
class PlannedQuery:
    """A planned query: the IR for storage and what `merge.finalize` does after the merge.

    Aggregate queries (`plan.aggregates` not empty): `outputs`, `having` and `order` are
    expressions over the merged groups (KeyRef: group key, AggRef: aggregate). Raw-rows
    queries: `outputs` and `order` are FieldRefs into `plan.select_fields`, which may end with
    hidden ORDER BY fields. `limit`/`offset` apply to the merged answer. `explain`: the
    statement was EXPLAIN <query>, to be answered with the plan (`explain.explain_lines`) rather
    than run.
    """

    plan: plan_pb2.QueryPlan
    columns: list[str]
    outputs: list[finalexpr.ValueExpr]
    having: finalexpr.ValueExpr | None = None
    order: list[finalexpr.SortKey] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    explain: bool = False
    default_limit: bool = False
    """The raw-rows query had no LIMIT: storage is asked one row more than the default, so the
    answer can say it was cut (`truncated`)."""

    @property
    def is_aggregate(self) -> bool:
        return len(self.plan.aggregates) > 0


@dataclass(frozen=True)
class Describe:
    """DESCRIBE <dataset> (also DESCRIBE TABLE, SHOW COLUMNS FROM): list the dataset's fields."""

    dataset: str


def parse_statement(sql: str, *, now_us: int, zone: str = UTC) -> PlannedQuery | Describe:
    """Plan any statement the service answers: a query (as `plan_query`), EXPLAIN <query> (its
    PlannedQuery with `explain` set), or DESCRIBE <dataset> (a Describe).

    Raises QueryError, positioned at the offending token when known.
    """
    statement = classify(sql)
    if statement.kind == "describe":
        return Describe(parse_describe(statement.sql, statement.keyword))
    try:
        planned = plan_query(statement.sql, now_us=now_us, zone=zone)
    except (RecursionError, DecodeError, EncodeError):
        # A backstop: parentheses are counted before parsing and expressions' depth after
        # (depth.check_depth), which keeps the plan within what Python's stack and protobuf's
        # nesting limit take; a construct that check missed is still the user's error.
        raise QueryError(
            "the query is nested too deeply to plan; flatten long chains of operators"
        ) from None
    planned.explain = statement.kind == "explain"
    return planned


@dataclass
class _Item:
    """One SELECT item."""

    node: exp.Expr
    alias: str | None
    origin: exp.Expr


def plan_query(sql: str, *, now_us: int, zone: str = UTC) -> PlannedQuery:
    """Plan `sql`; `now_us` (microseconds since the epoch) is what now() means, and `zone` (an
    IANA name, QueryRequest.time_zone; empty is UTC) the calendar of date_trunc and time_bucket
    calls that name none.

    Raises QueryError, positioned at the offending token when known.
    """
    zone = query_zone(zone)
    select = parse_select(sql)
    check_clauses(select)
    check_depth(select)
    dataset, table_names = dataset_of(select)
    items = _select_items(select)
    scalars = Scalars(table_names, zone=zone, now_us=now_us, conditions=translate_condition)
    where = translate_where(select.args.get("where"), scalars)
    plan = plan_pb2.QueryPlan(dataset=dataset)
    if where.time_range.ListFields():
        plan.time_range.CopyFrom(where.time_range)
    if where.expr is not None:
        plan.filter.CopyFrom(where.expr)
    limit, offset = _limit_offset(select)
    distinct = select.args.get("distinct")
    if distinct is not None:
        _check_distinct(select, items, distinct)
        planned = _plan_aggregate(select, items, plan, scalars, limit, offset, distinct=True)
    elif _is_aggregate_query(select, items):
        planned = _plan_aggregate(select, items, plan, scalars, limit, offset)
    else:
        planned = _plan_raw(select, items, plan, scalars, limit, offset)
    # Last: every clause may have added computed columns.
    plan.computed.extend(scalars.computed)
    plan.ir_version = IR_VERSION if _needs_v2(plan) else 1
    return planned


_DAY_US = 86_400_000_000
_STDDEV = (plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP, plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP)


def _needs_v2(plan: plan_pb2.QueryPlan) -> bool:
    """Whether a storage node of IR 1 would misread `plan`: it knows no computed column, filter
    per aggregate or STDDEV, and laid time buckets from the epoch, which moves those whose width
    does not divide a day (weeks started on Thursday)."""
    return (
        len(plan.computed) > 0
        or any(a.HasField("filter") or a.function in _STDDEV for a in plan.aggregates)
        or any(_DAY_US % k.time_bucket_us for k in plan.group_by if k.time_bucket_us)
    )


def _select_items(select: exp.Select) -> list[_Item]:
    items = []
    for origin in select.expressions:
        node, alias = origin, None
        if isinstance(origin, exp.Alias):
            node, alias = origin.this, origin.alias
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and node.is_star):
            raise error_at(origin, "SELECT * is not supported; list the fields you want")
        items.append(_Item(node, alias, origin))
    if not items:
        raise error_at(select, "SELECT needs at least one column")
    return items


def _check_distinct(select: exp.Select, items: list[_Item], distinct: exp.Distinct) -> None:
    """SELECT DISTINCT f, g is GROUP BY f, g; with aggregates or GROUP BY it would need a
    second grouping after the first."""
    first = select.expressions[0]  # the DISTINCT keyword itself carries no position
    if distinct.args.get("on") is not None:
        raise error_at(first, "SELECT DISTINCT ON is not supported; use GROUP BY")
    group = select.args.get("group")
    if group is not None:
        raise error_at(
            group.expressions[0] if group.expressions else first,
            "SELECT DISTINCT with GROUP BY is not supported; list the keys in GROUP BY only",
        )
    if select.args.get("having") is not None:
        raise error_at(select.args["having"].this, "SELECT DISTINCT with HAVING is not supported")
    order = select.args.get("order")
    ordered = [o.this for o in order.expressions] if order is not None else []
    for node in [item.node for item in items] + ordered:
        aggregate = find_aggregate(node)
        if aggregate is not None:
            raise error_at(
                aggregate,
                "SELECT DISTINCT with aggregates is not supported: DISTINCT applies to the"
                " SELECT list; use GROUP BY (or count(DISTINCT …) inside the aggregate)",
            )


def _is_aggregate_query(select: exp.Select, items: list[_Item]) -> bool:
    if select.args.get("group") is not None or select.args.get("having") is not None:
        return True
    order = select.args.get("order")
    ordered = [o.this for o in order.expressions] if order is not None else []
    return any(find_aggregate(node) is not None for node in [i.node for i in items] + ordered)


def _limit_offset(select: exp.Select) -> tuple[int | None, int]:
    limit = select.args.get("limit")
    offset = select.args.get("offset")
    return (
        None if limit is None else _count(limit.expression, "LIMIT"),
        0 if offset is None else _count(offset.expression, "OFFSET"),
    )


def _count(node: exp.Expr, clause: str) -> int:
    if isinstance(node, exp.Literal) and node.is_int:
        return int(node.this)
    raise error_at(node, f"{clause} takes a non-negative integer, got {sql_text(node)}")


def _ordinal(node: exp.Expr, items: list[_Item], clause: str) -> _Item | None:
    """The SELECT item a position (`ORDER BY 2`) refers to, or None if `node` is no position."""
    if not (isinstance(node, exp.Literal) and not node.is_string):
        return None
    if not node.is_int or not 1 <= int(node.this) <= len(items):
        raise error_at(
            node, f"{clause} position {node.this} is not in the select list (1 to {len(items)})"
        )
    return items[int(node.this) - 1]


def _aliased(node: exp.Expr, items: list[_Item]) -> _Item | None:
    """The SELECT item a bare name refers to by its alias, if any.

    Aliases win over fields of the same name: fields are not known before the query runs.
    """
    if isinstance(node, exp.Column) and not node.table:
        return next((item for item in items if item.alias == node.name), None)
    return None


def _ordered(order: exp.Order | None) -> list[exp.Ordered]:
    if order is None:
        return []
    for ordered in order.expressions:
        if ordered.args.get("nulls_first"):
            raise error_at(ordered, "NULLS FIRST is not supported: NULLs always sort last")
    return list(order.expressions)


# -- raw rows --------------------------------------------------------------------------------


def _plan_raw(
    select: exp.Select,
    items: list[_Item],
    plan: plan_pb2.QueryPlan,
    scalars: Scalars,
    limit: int | None,
    offset: int,
) -> PlannedQuery:
    def slot(name: str) -> finalexpr.FieldRef:
        if name not in plan.select_fields:
            plan.select_fields.append(name)
        return finalexpr.FieldRef(list(plan.select_fields).index(name))

    columns: list[str] = []
    outputs: list[finalexpr.ValueExpr] = []
    for item in items:
        if is_field(item.node):
            name = field_name(item.node, scalars.table_names)
            outputs.append(slot(name))
            columns.append(item.alias or name)
            continue
        # An expression: a computed column, fetched as a field is; a constant is answered by
        # the query service itself.
        typed = scalars.translate(item.node)
        if typed.scalar.WhichOneof("kind") == "literal":
            outputs.append(finalexpr.Lit(from_value(typed.scalar.literal)))
        else:
            outputs.append(slot(scalars.register(typed)))
        columns.append(item.alias or sql_text(item.node))

    order: list[finalexpr.SortKey] = []
    for ordered in _ordered(select.args.get("order")):
        target = _ordinal(ordered.this, items, "ORDER BY") or _aliased(ordered.this, items)
        node = target.node if target is not None else ordered.this
        if is_literal(node) or not any(is_field(n) for n in node.walk()):
            raise error_at(
                ordered.this,
                f"ORDER BY {sql_text(node)}: order by a field, an expression over fields, an"
                " alias or a position",
            )
        name = scalars.column(node)
        descending = bool(ordered.args.get("desc"))
        plan.order_by.append(plan_pb2.OrderBy(field=name, descending=descending))
        order.append(finalexpr.SortKey(slot(name), descending))

    default_limit = limit is None
    if limit is None:
        limit = DEFAULT_RAW_LIMIT
    if limit + offset > MAX_RAW_LIMIT:
        raise error_at(
            select.args.get("limit") or select.args.get("offset"),
            f"LIMIT + OFFSET may be at most {MAX_RAW_LIMIT} rows in a query without aggregates",
        )
    # Each partition sends its first LIMIT + OFFSET rows (one more under the default LIMIT: more
    # rows merged than answered means the answer is cut); 0 would read as "no limit".
    plan.limit = max(1, limit + offset + default_limit)
    return PlannedQuery(
        plan, columns, outputs, None, order, limit, offset, default_limit=default_limit
    )


# -- aggregates ------------------------------------------------------------------------------


def _plan_aggregate(
    select: exp.Select,
    items: list[_Item],
    plan: plan_pb2.QueryPlan,
    scalars: Scalars,
    limit: int | None,
    offset: int,
    *,
    distinct: bool = False,
) -> PlannedQuery:
    if distinct:
        scope = Scope(scalars, "the SELECT DISTINCT list")
        for selected in items:
            if not is_literal(selected.node):
                scope.add_group_key(selected.node, selected.origin)
    else:
        scope = Scope(scalars)
    group = select.args.get("group")
    for key in group.expressions if group is not None else []:
        item = _ordinal(key, items, "GROUP BY") or _aliased(key, items)
        scope.add_group_key(item.node if item is not None else key, key)

    columns: list[str] = []
    outputs: list[finalexpr.ValueExpr] = []
    for item in items:
        output = scope.value(item.node)
        outputs.append(output)
        columns.append(item.alias or _display_name(item.node, scope))
    aliases = {
        item.alias: output for item, output in zip(items, outputs, strict=True) if item.alias
    }

    having = None
    having_node = select.args.get("having")
    if having_node is not None:
        having = scope.value(having_node.this, aliases)
        if scope.static_type(having) not in (None, "bool"):
            raise error_at(having_node.this, "HAVING needs a condition, such as count(*) > 10")

    order: list[finalexpr.SortKey] = []
    for ordered in _ordered(select.args.get("order")):
        node = ordered.this
        item = _ordinal(node, items, "ORDER BY")
        if item is not None:
            expr = outputs[items.index(item)]
        elif isinstance(node, exp.Literal):
            raise error_at(node, f"ORDER BY {sql_text(node)}: order by a column, alias or position")
        else:
            expr = scope.value(node, aliases)
        order.append(finalexpr.SortKey(expr, bool(ordered.args.get("desc"))))

    if not scope.aggregates:
        # GROUP BY without aggregates: storage tells the modes apart by the aggregates, so
        # add a hidden count(*) rather than send what looks like a raw-rows plan.
        scope.aggregate(exp.Count(this=exp.Star()))
    plan.group_by.extend(scope.group_by)
    plan.aggregates.extend(scope.aggregates)
    return PlannedQuery(plan, columns, outputs, having, order, limit, offset)


_OPERATORS: dict[type[exp.Expr], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.And: "AND",
    exp.Or: "OR",
}


# Spellings of one-field aggregates that name their column as written.
_AS_WRITTEN = ("median", "approx_count_distinct", "stddev")


def _display_name(node: exp.Expr, scope: Scope) -> str:
    """A readable column name for a SELECT item without alias: `count(*)`, `sum(duration)`,
    `time_bucket(timestamp, '1h')`, a field's name, or the expression built from those."""
    if find_aggregate(node) is node:
        aggregate = scope.aggregates[scope.aggregate(node)]
        if isinstance(node, exp.Filter):
            condition = node.expression
            if isinstance(condition, exp.Where):
                condition = condition.this
            return f"{_call_name(node.this, aggregate)} FILTER (WHERE {sql_text(condition)})"
        return _call_name(node, aggregate)
    bucket = time_bucket(node, scope.scalars.zone, scope.table_names)
    if bucket is not None:
        return bucket.name
    if is_field(node):
        return field_name(node, scope.table_names)
    if isinstance(node, exp.Paren):
        return f"({_display_name(node.this, scope)})"
    if isinstance(node, exp.Neg):
        return f"-{_display_name(node.this, scope)}"
    operator = _OPERATORS.get(type(node))
    if operator is not None:
        left, right = _display_name(node.this, scope), _display_name(node.expression, scope)
        return f"{left} {operator} {right}"
    return sql_text(node)


def _call_name(call: exp.Expr, aggregate: plan_pb2.Aggregate) -> str:
    """An aggregate call's column name: shorthands and other engines' spellings as written
    (`p95(duration)`, not `percentile(duration, 0.95)`), the others by what they compute."""
    name = function_name(call)
    if isinstance(call, exp.CountIf):
        return f"{name}({sql_text(call.this)})"
    if computed_index(aggregate.field) is not None:
        return sql_text(call)  # as written: sum(duration * 1000)
    if name in QUANTILE_SHORTHANDS or name in _AS_WRITTEN:
        return f"{name}({aggregate.field})"
    if name in QUANTILE_ALIASES:
        return f"{name}({aggregate.field}, {aggregate.quantile:g})"
    return aggregate_name(aggregate)
