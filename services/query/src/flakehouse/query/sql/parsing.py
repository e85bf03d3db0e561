"""Parsing SQL with sqlglot, and checking that the query has a shape Flakehouse runs: one
SELECT over one dataset, without joins, subqueries or window functions; and telling EXPLAIN and
DESCRIBE statements apart from queries."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import Token, exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError

from flakehouse.query.sql import inlists
from flakehouse.query.sql.errors import QueryError, error_at, sql_text
from flakehouse.query.sql.syntax import is_aggregate_call

DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_MISSING = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")

# Calls the parser refuses without an argument, and what to write instead.
_USAGE = {"CountIf": "count_if() takes one condition: count_if(status = 'failed')"}

# DISTINCT is planned as a grouping (planner._check_distinct says when it cannot be).
_CLAUSES = {
    "expressions",
    "distinct",
    "from_",
    "where",
    "group",
    "having",
    "order",
    "limit",
    "offset",
}
_UNSUPPORTED_CLAUSES = {
    "with_": "WITH (common table expressions) is not supported",
    "joins": "joins are not supported: a query reads one dataset",
    "laterals": "LATERAL is not supported",
    "windows": "WINDOW is not supported",
    "qualify": "QUALIFY is not supported",
    "into": "SELECT INTO is not supported",
    "sample": "TABLESAMPLE is not supported",
}


class _Dialect(Dialect):
    # NULLs sort last in both directions (as in DuckDB). With this setting sqlglot marks
    # `nulls_first` only when the query says NULLS FIRST, which can then be refused.
    NULL_ORDERING = "nulls_are_last"


def parse_select(sql: str) -> exp.Select:
    """The one SELECT statement in `sql`; anything else is a QueryError. Long IN lists of
    literals in WHERE are read without sqlglot (`inlists`)."""
    text, lifted = inlists.lift(sql)
    if lifted:
        try:
            select = _parse_select(text)
            if inlists.claim(select, lifted):
                return select
        except QueryError:
            pass  # the error as the SQL is written, below
    return _parse_select(sql)


def _parse_select(sql: str) -> exp.Select:
    root = _parse_one(sql, "SELECT … FROM <dataset>")
    if isinstance(root, exp.SetOperation):
        raise error_at(root, "UNION, INTERSECT and EXCEPT are not supported")
    if isinstance(root, exp.Command):
        # sqlglot parses statements it does not know (EXPLAIN, SHOW TABLES, …) as a Command
        # named by its first keyword, without a position.
        first = _first_token(sql)
        raise QueryError(
            f"only SELECT queries are supported, not {str(root.this).upper()}",
            None if first is None else first.start,
        )
    if not isinstance(root, exp.Select):
        raise error_at(root, f"only SELECT queries are supported, not {root.key.upper()}")
    return root


MAX_NESTING = 32
"""Parentheses and CASE … END nested deeper than this are refused before parsing: the parser
recurses some twenty frames per level (Python's stack holds 1,000), and the plan nests as deep
as the expression (depth.MAX_DEPTH checks that once parsed)."""


# A parenthesis, CASE or END, or a string, quoted name or comment (to its end) stepped over.
_NESTING = re.compile(
    r"""[()]|(?<![\w.])(?:case|end)\b|'[^']*'?|"[^"]*"?|`[^`]*`?|--[^\n]*|/\*.*?(?:\*/|\Z)""",
    re.IGNORECASE | re.DOTALL,
)


def _check_nesting(sql: str) -> None:
    """A located error at the parenthesis or CASE that opens level MAX_NESTING + 1 (outside
    strings, quoted names and comments)."""
    depth = 0
    for found in _NESTING.finditer(sql):
        token = found.group().lower()
        if token in ("(", "case"):
            depth += 1
            if depth > MAX_NESTING:
                raise QueryError(
                    f"parentheses and CASEs nested more than {MAX_NESTING} deep; flatten the"
                    " expression (a long OR of equalities is an IN list, and one CASE takes"
                    " many WHEN branches)",
                    found.start(),
                )
        elif token in (")", "end"):
            depth -= 1


def _parse_one(sql: str, expected: str) -> exp.Expr:
    """The one statement in `sql`, parsed; `expected` is its shape, for messages."""
    if not sql.strip():
        raise QueryError(f"empty query; expected {expected}")
    _check_nesting(sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read=_Dialect) if s is not None]
    except ParseError as error:
        raise _syntax_error(sql, error) from None
    except TokenError as error:
        raise _token_error(sql, error) from None
    if not statements:
        raise QueryError(f"empty query; expected {expected}")
    if len(statements) > 1:
        raise error_at(statements[1], "one statement per query, please")
    return statements[0]


# Strings, quoted names and comments that are closed, or (group 1) the start of one that is not.
# Possessive (*+): `'it''s` is one unclosed string, not the string 'it' and then another.
_UNCLOSED = re.compile(
    r"""'[^']*+(?:''[^']*+)*+'|"[^"]*+(?:""[^"]*+)*+"|/\*.*?\*/|--[^\n]*|(['"]|/\*)""", re.DOTALL
)


def _token_error(sql: str, error: TokenError) -> QueryError:
    """sqlglot's tokenizer says only that it failed, near some text: point at the quote or the
    comment that is never closed when there is one."""
    for found in _UNCLOSED.finditer(sql):
        opening = found.group(1)
        if opening == "/*":
            return QueryError("cannot read the SQL: this comment is never closed", found.start())
        if opening:
            return QueryError(
                f"cannot read the SQL (an unclosed quote?): this {opening} is never closed",
                found.start(),
            )
    return QueryError(f"cannot read the SQL: {error}")


def _syntax_error(sql: str, error: ParseError) -> QueryError:
    details = error.errors[0] if error.errors else {}
    description = details.get("description") or str(error)
    # "Required keyword: 'this' missing for <class 'sqlglot…Where'>" means an unfinished clause.
    missing = _MISSING.match(description)
    if missing:
        description = _USAGE.get(
            missing.group(1), f"incomplete {missing.group(1).upper()} expression"
        )
    highlight = details.get("highlight") or ""
    line, column = details.get("line"), details.get("col")
    position = None
    if isinstance(line, int) and isinstance(column, int):
        # sqlglot's column is 1-based and points at the last character of the bad token.
        line_start = sum(len(text) + 1 for text in sql.split("\n")[: line - 1])
        position = max(0, min(len(sql), line_start + column - len(highlight)))
    near = f" near {highlight!r}" if highlight else ""
    return QueryError(f"syntax error{near}: {description}", position)


def check_clauses(select: exp.Select) -> None:
    """Refuse what a query over one dataset cannot have: subqueries, joins, windows, …"""
    for node in select.walk():
        if node is not select and isinstance(node, exp.Select | exp.Subquery):
            raise error_at(node, "subqueries are not supported")
        if isinstance(node, exp.Window):
            raise error_at(node, "window functions (OVER) are not supported")
        if isinstance(node, exp.Filter):
            _check_filter(node)
    for key, value in select.args.items():
        if key in _CLAUSES or not value:
            continue
        message = _UNSUPPORTED_CLAUSES.get(key, f"{key.rstrip('_').upper()} is not supported")
        first = value[0] if isinstance(value, list) else value
        raise error_at(first if isinstance(first, exp.Expr) else select, message)
    if isinstance(select.args.get("limit"), exp.Fetch):
        raise error_at(select.args["limit"], "FETCH is not supported; use LIMIT n")
    group = select.args.get("group")
    if group is not None:
        for key in ("grouping_sets", "cube", "rollup", "totals", "all"):
            if group.args.get(key):
                name = key.replace("_", " ").upper()
                raise error_at(group, f"GROUP BY {name} is not supported; list the keys")
        for node in group.expressions:
            if isinstance(node, exp.Rollup | exp.Cube | exp.GroupingSets):
                name = node.key.replace("groupingsets", "grouping sets").upper()
                raise error_at(node, f"GROUP BY {name} is not supported; list the keys")


def _check_filter(node: exp.Filter) -> None:
    """FILTER (WHERE …) follows an aggregate call, once."""
    call = node.this
    if isinstance(call, exp.Paren) and is_aggregate_call(call.this):
        raise error_at(
            node,
            f"write FILTER right after the aggregate, without parentheses:"
            f" {sql_text(call.this)} FILTER (WHERE …)",
        )
    if not is_aggregate_call(call) or isinstance(call, exp.Filter):
        raise error_at(
            node,
            f"FILTER (WHERE …) follows an aggregate, as in count(*) FILTER (WHERE status ="
            f" 'failed'), and {sql_text(call)} is not one; to keep only some rows, use WHERE",
        )


def dataset_of(select: exp.Select) -> tuple[str, set[str]]:
    """The dataset FROM names, and the names that may qualify its fields (it, its alias)."""
    from_ = select.args.get("from_")
    if from_ is None:
        raise QueryError("a query needs FROM <dataset>")
    table = from_.this
    name = _dataset_name(table, "FROM", allowed=("this", "alias"))
    names = {name}
    if table.alias:
        names.add(table.alias)
    return name, names


def _dataset_name(table: exp.Expr, clause: str, allowed: tuple[str, ...]) -> str:
    """The dataset a table reference names; `allowed` are the parts it may have."""
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise error_at(table, f"{clause} takes one dataset name, not {sql_text(table)}")
    for key, value in table.args.items():
        if key not in allowed and value:
            raise error_at(
                table, f"{clause} {sql_text(table)}: only a plain dataset name is supported"
            )
    name = table.name
    if not DATASET_NAME.fullmatch(name):
        raise error_at(
            table,
            f"invalid dataset name {name!r}: lower-case letters, digits, _ and -, starting with a"
            " letter or digit, at most 63 characters",
        )
    return name


# -- statements other than SELECT ------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    """What a statement asks for: a query ("select"), its plan ("explain"), or a dataset's
    fields ("describe").

    `sql` is the statement with the leading EXPLAIN blanked out (SHOW COLUMNS FROM rewritten to
    DESCRIBE), padded to the same length, so that error positions are those of the original.
    """

    kind: Literal["select", "explain", "describe"]
    sql: str
    keyword: str = "SELECT"
    """How the statement starts, for messages: SELECT, EXPLAIN, DESCRIBE, SHOW COLUMNS FROM."""


_SHOW_COLUMNS = re.compile(r"\s+COLUMNS\s+(?:FROM|IN)\b", re.IGNORECASE)
_NOT_EXPLAINABLE = {"EXPLAIN", "DESCRIBE", "DESC", "SHOW"}


def classify(sql: str) -> Statement:
    """Tell EXPLAIN <select>, DESCRIBE [TABLE] <dataset> and SHOW COLUMNS FROM <dataset> from a
    plain query, by their first keyword."""
    first = _first_token(sql)
    if first is None:
        return Statement("select", sql)
    word = first.text.upper()
    if word == "EXPLAIN":
        rest = sql[: first.start] + " " * (first.end + 1 - first.start) + sql[first.end + 1 :]
        following = _first_token(rest)
        if following is None:
            raise QueryError("EXPLAIN needs a query: EXPLAIN SELECT …", first.start)
        if following.text.upper() == "ANALYZE":
            raise QueryError(
                "EXPLAIN ANALYZE is not supported: EXPLAIN shows the plan without running it",
                following.start,
            )
        if following.text.upper() in _NOT_EXPLAINABLE:
            raise QueryError("EXPLAIN takes a SELECT query", following.start)
        return Statement("explain", rest, "EXPLAIN")
    if word in ("DESCRIBE", "DESC"):
        return Statement("describe", sql, "DESCRIBE")
    if word == "SHOW":
        columns = _SHOW_COLUMNS.match(sql, first.end + 1)
        if columns is None:
            raise QueryError(
                "SHOW supports only SHOW COLUMNS FROM <dataset> (or DESCRIBE <dataset>)",
                first.start,
            )
        width = columns.end() - first.start
        described = sql[: first.start] + "DESCRIBE".ljust(width) + sql[columns.end() :]
        return Statement("describe", described, "SHOW COLUMNS FROM")
    return Statement("select", sql)


_LOOKAHEAD = 64
"""Characters past a token that the tokenizer may read to end it (a multi-word keyword)."""


def _first_token(sql: str) -> Token | None:
    """The statement's first token, from as short a prefix as holds it: tokenizing a whole
    megabyte of SQL for its first word took a second."""
    size = 256
    while size < len(sql):
        tokenizer = _Dialect().tokenizer()
        # Cut in a string or a comment, the tokens before the cut stand.
        with contextlib.suppress(TokenError):
            tokenizer.tokenize(sql[:size])
        tokens = tokenizer.tokens
        # A token this far from the cut is whole: the scanner looks only a keyword ahead.
        if tokens and tokens[0].end < size - _LOOKAHEAD:
            return tokens[0]
        size *= 4
    try:
        tokens = _Dialect().tokenize(sql)
    except TokenError:
        return None  # parsing the statement reports it
    return tokens[0] if tokens else None


def parse_describe(sql: str, keyword: str = "DESCRIBE") -> str:
    """The dataset of `DESCRIBE [TABLE] <dataset>`; `keyword` is how the user wrote DESCRIBE."""
    try:
        root = _parse_one(sql, "DESCRIBE <dataset>")
    except QueryError as error:
        if "Expected table name" in error.message:
            message = f"{keyword} takes a dataset name: {keyword} <dataset>"
            raise QueryError(message, error.position) from None
        raise
    if not isinstance(root, exp.Describe):
        raise error_at(root, "expected DESCRIBE <dataset>")
    if isinstance(root.this, exp.Query):
        raise error_at(
            root.this,
            f"{keyword} takes a dataset name, not a query; EXPLAIN SELECT … shows a query's plan",
        )
    kind = root.args.get("kind")
    if kind is not None and str(kind).upper() != "TABLE":
        raise error_at(root.this, f"DESCRIBE {str(kind).upper()} is not supported")
    for key in ("style", "properties", "expressions", "partition", "format", "as_json"):
        if root.args.get(key):
            raise error_at(root.this, f"{keyword} takes only a dataset name: {keyword} <dataset>")
    return _dataset_name(root.this, keyword, allowed=("this",))
