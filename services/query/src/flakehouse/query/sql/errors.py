"""The query service's domain error, and how to point it at the offending part of the SQL."""

from __future__ import annotations

from sqlglot import exp


class QueryError(ValueError):
    """A query the service cannot run as written: a syntax error or an unsupported construct.

    `position` is the 0-based character offset in the SQL of the offending token, when known;
    `line_column` turns it into the 1-based line and column people see in editors.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at character {self.position})"

    def line_column(self, sql: str) -> tuple[int, int] | None:
        """1-based (line, column) of `position` in `sql`, or None when unknown."""
        if self.position is None:
            return None
        before = sql[: self.position]
        line = before.count("\n") + 1
        column = self.position - (before.rfind("\n") + 1) + 1
        return line, column

    def describe(self, sql: str) -> str:
        """The message with a line and column, for people reading a terminal."""
        where = self.line_column(sql)
        if where is None:
            return self.message
        return f"{self.message} (line {where[0]}, column {where[1]})"


# Positions are looked for no higher than these: the start of a whole clause would mislead.
_CLAUSES = (exp.Query, exp.Where, exp.Having, exp.Group, exp.Order, exp.From, exp.Limit)


def position_of(node: exp.Expr | None) -> int | None:
    """Offset of the first token of `node` in the SQL.

    sqlglot records positions on tokens-turned-nodes (identifiers, literals, function names)
    but not on composite nodes nor on keywords (TRUE, NULL, INTERVAL), so take the earliest
    position below `node`, else below its enclosing expression.
    """
    while node is not None:
        starts = [int(n.meta["start"]) for n in node.walk() if n.meta.get("start") is not None]
        if starts:
            return min(starts)
        node = node.parent
        if isinstance(node, _CLAUSES):
            return None
    return None


def sql_text(node: exp.Expr) -> str:
    """SQL of a node for messages and column names, with function names and date_trunc's unit
    as people write them (lower case; sqlglot reads the unit upper-cased)."""

    def lower_unit(n: exp.Expr) -> exp.Expr:
        unit = n.args.get("unit") if isinstance(n, exp.DateTrunc) else None
        if isinstance(unit, exp.Literal):
            n = n.copy()
            n.set("unit", exp.Literal.string(unit.name.lower()))
        return n

    if any(isinstance(n, exp.DateTrunc) for n in node.walk()):
        node = node.transform(lower_unit)
    return node.sql(normalize_functions="lower")


def error_at(node: exp.Expr | None, message: str) -> QueryError:
    """A QueryError positioned at `node`; raise it at the call site so tracebacks stay useful."""
    return QueryError(message, position_of(node))
