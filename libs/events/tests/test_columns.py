"""ValueColumns from Python cells and back: every type, nulls, mixes, and bad columns."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events.columns import ColumnError, from_value_column, to_value_column


@pytest.mark.parametrize(
    "cells",
    [
        [],
        ["a", "", "é", "x" * 1000],
        [0, -1, 2**63 - 1, -(2**63)],
        [0.0, -0.0, 1.5, math.inf, -math.inf],
        [True, False, True],
        [None, None],
        ["1", 1, 1.0, True, None, "b", 2],
        [None, 3, None],
    ],
)
def test_cells_come_back_as_they_went(cells: list[Any]) -> None:
    column = plan_pb2.ValueColumn.FromString(to_value_column(cells).SerializeToString())
    back = from_value_column(column)
    assert back == cells
    assert [type(c) for c in back] == [type(c) for c in cells]  # 1, 1.0 and True stay apart


def test_nan_and_subclasses() -> None:
    class Name(str):
        pass

    back = from_value_column(to_value_column([math.nan, 1.0, Name("x")]))
    assert math.isnan(back[0]) and back[1:] == [1.0, "x"]  # type: ignore[arg-type]
    assert type(back[2]) is str


def test_a_column_of_one_type_stores_its_values_once() -> None:
    column = to_value_column(["a", "b"])
    assert list(column.types) == [events_pb2.VALUE_TYPE_STRING] * 2
    assert list(column.string_values) == ["a", "b"] and not column.int_values


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (plan_pb2.ValueColumn(types=[events_pb2.VALUE_TYPE_INT]), "0 int_values for 1"),
        (plan_pb2.ValueColumn(types=[], string_values=["a"]), "1 string_values for 0"),
        (plan_pb2.ValueColumn(types=[9], int_values=[1]), "unknown type 9"),  # type: ignore[list-item]
        (
            plan_pb2.ValueColumn(
                types=[events_pb2.VALUE_TYPE_BOOL, events_pb2.VALUE_TYPE_INT],
                bool_values=[True, False],
                int_values=[1],
            ),
            "2 bool_values for 1",
        ),
    ],
)
def test_values_that_do_not_match_the_types_are_refused(
    column: plan_pb2.ValueColumn, message: str
) -> None:
    with pytest.raises(ColumnError, match=message):
        from_value_column(column)
