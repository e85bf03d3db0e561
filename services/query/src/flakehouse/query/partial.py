"""Reading the value columns of a storage node's partial result (plan.proto's ValueColumn),
checked against the plan it was asked to run."""

from __future__ import annotations

from typing import Any

import numpy as np

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import VALUE_MEMBERS
from flakehouse.events.values import BOOL, FLOAT, INT, STRING
from flakehouse.kernels.arrays import Index

NULL = events_pb2.VALUE_TYPE_UNSPECIFIED


class PartialResultError(ValueError):
    """A storage node's partial result does not fit the plan it was asked to run."""


_DTYPES: dict[int, type] = {INT: np.int64, FLOAT: np.float64, BOOL: np.bool_}

TypedValues = list[tuple[int, Index | None, Any]]
"""A ValueColumn split by type: (type, the positions holding it or None for all, its values:
a list of str for STRING, None for null, else a numpy array)."""


def typed_values(column: plan_pb2.ValueColumn, size: int, what: str) -> TypedValues:
    """`column` split by type; raises PartialResultError unless it holds one value per group."""
    types = np.asarray(column.types)
    if len(types) != size:
        raise PartialResultError(f"{what} has {len(types)} values for {size} groups")
    parts: list[tuple[int, Index | None]] = []
    counts = [0] * (BOOL + 1)
    if size:
        low, high = int(types.min()), int(types.max())
        if low < NULL or high > BOOL:
            raise PartialResultError(
                f"{what} has a value of unknown type {low if low < 0 else high}"
            )
        if low == high:
            parts = [(low, None)]
            counts[low] = size
        else:
            counts = np.bincount(types, minlength=BOOL + 1).tolist()
            parts = [(kind, np.flatnonzero(types == kind)) for kind, n in enumerate(counts) if n]
    for kind, member in VALUE_MEMBERS.items():
        if len(getattr(column, member)) != counts[kind]:
            raise PartialResultError(
                f"{what} has {len(getattr(column, member))} {member} for {counts[kind]} values"
                " of that type"
            )
    out: TypedValues = []
    for kind, positions in parts:
        values: Any = None
        if kind == STRING:
            values = column.string_values[:]
        elif kind != NULL:
            values = np.asarray(getattr(column, VALUE_MEMBERS[kind]), dtype=_DTYPES[kind])
        out.append((kind, positions, values))
    return out
