"""How deeply a query's expressions nest, checked on the parsed SQL before any of it is translated:
a plan nests as deep as its deepest expression, and protobuf decodes no message nested more than
100 deep."""

from __future__ import annotations

from sqlglot import exp

from flakehouse.query.sql.errors import QueryError, error_at
from flakehouse.query.sql.syntax import is_field, is_literal

MAX_DEPTH = 30
"""Operators, function calls, CASEs and conditions nested inside one another, at most.

A level of a scalar expression nests the plan at most three messages deeper (a CASE's value:
Scalar → CaseWhen → WhenThen → Scalar), a level of a condition two (Expr → Junction → Expr), and
operands of a comparison start over as computed columns of their own. The deepest plan is a
condition used as a value at level MAX_DEPTH: its Scalar 2 + 3 * (MAX_DEPTH - 1) levels below the
request (ExecuteFragmentRequest → QueryPlan → Scalar …), then CaseWhen → WhenThen → Expr →
Junction → Expr → Compare → Value, 3 * MAX_DEPTH + 6 = 96 levels in all: protobuf decodes 100.
test_planner_depth sends the plan of every shape at MAX_DEPTH, that one included, to storage."""

# Nodes that nest no deeper in the plan than their parent: grouping, naming, clauses.
_TRANSPARENT = (
    exp.Paren,
    exp.Alias,
    exp.Ordered,
    exp.Query,
    exp.Where,
    exp.Having,
    exp.Group,
    exp.Order,
    exp.From,
    exp.Limit,
    exp.Offset,
)


def check_depth(select: exp.Select) -> None:
    """Raises a QueryError at the first expression nested more than MAX_DEPTH deep.

    Walks the tree without recursion, once: `a + b + c …` parses one level deeper per term, and a
    generated query of thousands of terms is refused in the time it takes to parse.
    """
    pending: list[tuple[exp.Expr, int]] = [(select, 0)]
    while pending:
        node, depth = pending.pop()
        children = list(node.iter_expressions())
        # A leaf (a field, a literal, `*` in count(*)) is at most a Scalar and its Value, which
        # MAX_DEPTH's sum counts as the innermost level's.
        if not children or is_field(node) or is_literal(node):
            continue
        if not _continues_parent(node):
            depth += 1
            if depth > MAX_DEPTH:
                raise _too_deep(node)
        # Reversed: the first operand is looked at first, so the error is at the leftmost.
        pending.extend((child, depth) for child in reversed(children))


def _continues_parent(node: exp.Expr) -> bool:
    """Whether `node` is part of its parent's level: a clause or parentheses; a term of an AND
    (OR) chain, which the plan holds as one junction (filters._chain); a CASE's WHEN branch."""
    if isinstance(node, _TRANSPARENT):
        return True
    parent = node.parent
    if isinstance(node, exp.If):
        return isinstance(parent, exp.Case)
    if isinstance(node, exp.And | exp.Or):
        while isinstance(parent, exp.Paren):
            parent = parent.parent
        return type(parent) is type(node)
    return False


def _too_deep(node: exp.Expr) -> QueryError:
    return error_at(
        node,
        f"expression nested deeper than {MAX_DEPTH} levels (operators, function calls, CASEs"
        " and conditions inside one another); a chain a + b + c + … is one level per operator,"
        " so group long ones in parentheses, (a + b + c) + (d + e + f), and nest fewer CASEs"
        " (one CASE takes many WHEN branches)",
    )
