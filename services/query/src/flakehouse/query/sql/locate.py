"""Where a field is first named in a statement's SQL, for errors found after planning (a field
no event has): the plan holds names, not positions."""

from __future__ import annotations

from sqlglot import exp

from flakehouse.query.sql.errors import QueryError, position_of
from flakehouse.query.sql.parsing import classify, dataset_of, parse_select
from flakehouse.query.sql.syntax import field_name, is_field


def field_positions(sql: str, names: set[str]) -> dict[str, int]:
    """The offset in `sql` (a query, or EXPLAIN of one) of the first reference to each of
    `names` that it holds as a field; names it does not find are left out."""
    try:
        select = parse_select(classify(sql).sql)
        _, table_names = dataset_of(select)
    except QueryError:
        return {}  # it planned, so it parses; a position is a nicety, never a new error
    found: dict[str, int] = {}
    for node in select.walk():
        # A Dot (`a.b.c` read as nested access) holds Columns: the outermost names the field.
        if not is_field(node) or isinstance(node.parent, exp.Dot):
            continue
        try:
            name = field_name(node, table_names)
        except QueryError:
            continue
        position = position_of(node)
        if name in names and position is not None:
            found[name] = min(position, found.get(name, position))
    return found
