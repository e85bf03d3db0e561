"""Columns of nullable scalars as a protobuf `ValueColumn` (plan.proto) and back: how the query
service sends an answer column by column and how the client reads it.

A column of one Python type (the usual case) is moved with one `extend` or `list` call in C;
only columns that mix types take a Python step per value."""

from __future__ import annotations

from collections.abc import Sequence

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.values import BOOL, FLOAT, INT, STRING, Scalar, type_of

NULL = events_pb2.VALUE_TYPE_UNSPECIFIED
VALUE_MEMBERS: dict[int, str] = {
    STRING: "string_values",
    INT: "int_values",
    FLOAT: "float_values",
    BOOL: "bool_values",
}
"""The member of plan.proto's ValueColumn holding the values of each type."""
_EXACT_TYPES: dict[type, int] = {str: STRING, int: INT, float: FLOAT, bool: BOOL, type(None): NULL}


class ColumnError(ValueError):
    """A ValueColumn whose types and values do not agree."""


def to_value_column(cells: Sequence[Scalar | None]) -> plan_pb2.ValueColumn:
    """The ValueColumn of `cells` (None: null)."""
    column = plan_pb2.ValueColumn()
    kinds = {type(cell) for cell in cells}
    only = _EXACT_TYPES.get(next(iter(kinds))) if len(kinds) == 1 else None
    # The stubs type ValueColumn.types as the ValueType enum (a NewType of int); the kinds here
    # are plain ints: hence the ignores.
    if only is not None:
        column.types.extend([only] * len(cells))  # type: ignore[list-item]
        if only != NULL:
            getattr(column, VALUE_MEMBERS[only]).extend(cells)
        return column
    types = [NULL if cell is None else type_of(cell) for cell in cells]
    column.types.extend(types)  # type: ignore[arg-type]
    for kind, member in VALUE_MEMBERS.items():
        if kind in types:
            getattr(column, member).extend(
                cell for cell, t in zip(cells, types, strict=True) if t == kind
            )
    return column


def from_value_column(column: plan_pb2.ValueColumn) -> list[Scalar | None]:
    """The cells of `column` (None: null); raises ColumnError when its values do not match its
    types."""
    types: list[int] = list(column.types)
    counts = {kind: types.count(kind) for kind in (NULL, *VALUE_MEMBERS)}
    if sum(counts.values()) != len(types):
        unknown = next(t for t in types if t not in counts)
        raise ColumnError(f"a value of unknown type {unknown}")
    for kind, member in VALUE_MEMBERS.items():
        held = len(getattr(column, member))
        if held != counts[kind]:
            raise ColumnError(f"{held} {member} for {counts[kind]} values of that type")
    if counts[NULL] == len(types):
        return [None] * len(types)
    for kind, member in VALUE_MEMBERS.items():
        if counts[kind] == len(types):
            return list(getattr(column, member))
    values = {kind: iter(getattr(column, member)) for kind, member in VALUE_MEMBERS.items()}
    return [None if t == NULL else next(values[t]) for t in types]
