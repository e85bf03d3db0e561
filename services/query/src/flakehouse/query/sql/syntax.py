"""Reading the pieces of a sqlglot tree that several clauses share: field names, literal values,
and which calls are aggregates."""

from __future__ import annotations

import re
from collections.abc import Collection

from sqlglot import exp

from flakehouse.events.values import INT64_MAX, INT64_MIN, Scalar
from flakehouse.query.sql.errors import error_at, sql_text

FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")
TIMESTAMP = "timestamp"

# Quantile shorthands; percentile(f, q) is the general form.
QUANTILE_SHORTHANDS = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
# Spellings other engines use for the same aggregates (DuckDB's, mostly): name -> how the
# column is named when the query gives no alias. median is percentile 0.5; quantile_cont,
# quantile and approx_quantile take the quantile as their second argument.
QUANTILE_ALIASES = {"median", "quantile_cont", "quantile", "approx_quantile"}
# For messages that list what there is.
AGGREGATE_FUNCTIONS = (
    "count, count_if, sum, avg, min, max, stddev (stddev_samp, stddev_pop), percentile or"
    " p50/p90/p95/p99 (also spelled median, quantile_cont, approx_quantile,"
    " approx_count_distinct), any of them with FILTER (WHERE …)"
)
_ANONYMOUS_AGGREGATES = {"percentile", "quantile_cont", *QUANTILE_SHORTHANDS}


def is_field(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column | exp.Dot) and not isinstance(node.this, exp.Star)


def field_name(node: exp.Expr, table_names: Collection[str]) -> str:
    """The event field a column reference names.

    Unquoted dotted names are common in this data (`prop.os`), so `a.b` is the field "a.b"
    unless `a` is the dataset (or its alias), which SQL allows as a qualifier.
    """
    parts = _name_parts(node)
    if len(parts) > 1 and parts[0] in table_names:
        parts = parts[1:]
    name = ".".join(parts)
    if not FIELD_NAME.fullmatch(name):
        raise error_at(
            node,
            f"invalid field name {name!r}: a field starts with a letter or _ and holds up to 128"
            " letters, digits and _ . : / -",
        )
    return name


def _name_parts(node: exp.Expr) -> list[str]:
    if isinstance(node, exp.Column):
        return [part.name for part in node.parts]
    if isinstance(node, exp.Dot):
        return [*_name_parts(node.this), *_name_parts(node.expression)]
    if isinstance(node, exp.Identifier):
        return [node.name]
    raise error_at(node, f"expected a field name, got {sql_text(node)}")


def is_literal(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return is_literal(node.this)
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string
    return isinstance(node, exp.Literal | exp.Boolean | exp.Null)


def literal_value(node: exp.Expr) -> Scalar | None:
    """The scalar of a literal: string, int, float, TRUE/FALSE, or None for NULL."""
    if isinstance(node, exp.Paren):
        return literal_value(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        value = literal_value(node.this)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        text = str(node.this)
        try:
            number = int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                raise error_at(node, f"not a number: {text}") from None
        if not INT64_MIN <= number <= INT64_MAX:
            raise error_at(node, f"integer {text} does not fit in 64 bits")
        return number
    raise error_at(node, f"expected a literal value, got {sql_text(node)}")


def function_name(node: exp.Expr) -> str:
    """Lower-case name of a function call, as the user would recognise it (of the aggregate
    for `agg(…) FILTER (WHERE …)`)."""
    if isinstance(node, exp.Filter):
        return function_name(node.this)
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.ApproxDistinct):
        return "approx_count_distinct"
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return type(node).__name__.lower()


# ClickHouse's conditional aggregates (sumIf(f, cond), …); countIf(cond) is count_if.
_IF_COMBINATOR = re.compile(r"(sum|avg|min|max|median|stddev\w*)if")


def unknown_function(node: exp.Expr) -> str:
    """The message for a call of a function that does not exist here, with what to write when
    another engine knows it."""
    name = function_name(node)
    conditional = _IF_COMBINATOR.fullmatch(name)
    if conditional:
        return (
            f"unknown function {name}(); a conditional aggregate is written"
            f" {conditional.group(1)}(f) FILTER (WHERE condition)"
        )
    return f"unknown function {name}()"


def is_aggregate_call(node: exp.Expr) -> bool:
    """An aggregate function call, `agg(…) FILTER (WHERE …)` included (parsing refuses FILTER
    after anything but an aggregate)."""
    if isinstance(node, exp.AggFunc | exp.Filter):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower() in _ANONYMOUS_AGGREGATES


def find_aggregate(node: exp.Expr) -> exp.Expr | None:
    """The first aggregate call inside `node` (itself included), if any."""
    for candidate in node.walk():
        if is_aggregate_call(candidate):
            return candidate
    return None
