"""Conversions between Python scalars and the protobuf `Value`, shared by every service."""

from __future__ import annotations

from flakehouse.common.v1 import events_pb2

Scalar = str | int | float | bool
"""A field's value in an event. An absent field is null; None is never stored."""

ValueType = events_pb2.ValueType

STRING = events_pb2.VALUE_TYPE_STRING
INT = events_pb2.VALUE_TYPE_INT
FLOAT = events_pb2.VALUE_TYPE_FLOAT
BOOL = events_pb2.VALUE_TYPE_BOOL
TIMESTAMP = events_pb2.VALUE_TYPE_TIMESTAMP
"""In answers only: a time as int microseconds since the epoch, UTC."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The range of an INT value (`Value.int_value` is int64)."""

TYPE_NAMES: dict[int, str] = {
    STRING: "string",
    INT: "int",
    FLOAT: "float",
    BOOL: "bool",
    TIMESTAMP: "timestamp",
}


def type_of(value: Scalar) -> int:
    """The column type of a scalar. bool is checked before int: bool is a subclass of int."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STRING
    raise TypeError(f"not a scalar: {type(value).__name__}")


def to_value(value: Scalar | None) -> events_pb2.Value:
    """A protobuf Value; None gives an empty Value, which means null."""
    if value is None:
        return events_pb2.Value()
    kind = type_of(value)
    if kind == BOOL:
        return events_pb2.Value(bool_value=bool(value))
    if kind == INT:
        return events_pb2.Value(int_value=int(value))
    if kind == FLOAT:
        return events_pb2.Value(float_value=float(value))
    return events_pb2.Value(string_value=str(value))


def from_value(value: events_pb2.Value) -> Scalar | None:
    """The Python scalar of a protobuf Value, or None for null."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    result: Scalar = getattr(value, kind)
    return result
