"""Partial results that do not fit the plan are refused with a PartialResultError, and leave the
merge as it was."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import INT, STRING, from_value
from flakehouse.query.answer import finalize
from flakehouse.query.merge import add_partial, merge_partials
from flakehouse.query.partial import PartialResultError
from services.query.tests.merge_helpers import (
    count,
    extreme,
    group,
    groups,
    plan,
    rows,
    value_column,
)


def columns(
    size: int,
    keys: Sequence[plan_pb2.ValueColumn] = (),
    states: Sequence[plan_pb2.StateColumn] = (),
) -> plan_pb2.PartialResult:
    """A partial result with hand-made group columns, fitting or not."""
    return plan_pb2.PartialResult(
        group_columns=plan_pb2.GroupColumns(size=size, keys=keys, states=states)
    )


KEYS = "SELECT k, count(*) FROM ci GROUP BY k"
A = value_column(["a"])
ONE = plan_pb2.StateColumn(counts=[1])


@pytest.mark.parametrize(
    ("sql", "partial", "message"),
    [
        (KEYS, groups(group([], count(1))), "have 0 key columns, expected 1"),
        (KEYS, groups(group(["a"])), "have 0 state columns, expected 1"),
        (KEYS, columns(2, [A], [plan_pb2.StateColumn(counts=[1, 2])]), "1 values for 2 groups"),
        (KEYS, columns(1, [A], [plan_pb2.StateColumn(counts=[1, 2])]), "2 counts, expected 1"),
        (KEYS, columns(1, [A], [plan_pb2.StateColumn()]), "0 counts, expected 1"),
        (
            KEYS,
            columns(1, [A], [plan_pb2.StateColumn(counts=[1], sums=[1.0])]),
            "1 sums, expected 0",
        ),
        (
            KEYS,
            columns(1, [A], [plan_pb2.StateColumn(counts=[1], extremes=A)]),
            "has extremes, expected none",
        ),
        (
            KEYS,
            columns(1, [plan_pb2.ValueColumn(types=[STRING], int_values=[1])], [ONE]),
            "0 string_values for 1 values",
        ),
        (
            KEYS,
            columns(1, [plan_pb2.ValueColumn(types=[7], int_values=[1])], [ONE]),
            "unknown type 7",
        ),
        (
            KEYS,
            columns(2, [value_column(["a", "a"])], [plan_pb2.StateColumn(counts=[1, 2])]),
            "a group appears twice",
        ),
        (
            "SELECT count(*) FROM ci",
            columns(2, [], [plan_pb2.StateColumn(counts=[1, 2])]),
            "a group appears twice",
        ),
        (
            "SELECT max(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(extremes=value_column([1, 2]))]),
            "2 values for 1 groups",
        ),
        (
            "SELECT max(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(extremes=plan_pb2.ValueColumn(types=[INT]))]),
            "0 int_values for 1 values",
        ),
        (
            "SELECT stddev(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(counts=[2], means=[1.0])]),
            "0 squares, expected 1",
        ),
        (
            "SELECT stddev_pop(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(counts=[2], means=[1.0], squares=[1, 2])]),
            "2 squares, expected 1",
        ),
        (
            "SELECT stddev(v) FROM ci",
            columns(
                1, [], [plan_pb2.StateColumn(counts=[2], sums=[2.0], means=[1.0], squares=[0])]
            ),
            "1 sums, expected 0",
        ),
        (
            "SELECT stddev(v) FROM ci",
            columns(1, [], [plan_pb2.StateColumn(counts=[-2], means=[1.0], squares=[0])]),
            "has a negative count",
        ),
        (
            "SELECT sum(v) FROM ci",
            columns(
                1,
                [],
                [
                    plan_pb2.StateColumn(
                        counts=[1], sums=[1], int_sums=[0], float_seen=[1], means=[1]
                    )
                ],
            ),
            "1 means, expected 0",
        ),
        ("SELECT count(*) FROM ci", rows([1]), "rows in the answer to an aggregate query"),
        ("SELECT a FROM ci", groups(group([], count(1))), "groups in the answer to a raw-rows"),
        ("SELECT a, b FROM ci", rows([1]), "a row has 1 values, expected 2"),
    ],
)
def test_partials_that_do_not_fit_the_plan(
    sql: str, partial: plan_pb2.PartialResult, message: str
) -> None:
    with pytest.raises(PartialResultError, match=message):
        merge_partials(plan(sql), [partial])


@pytest.mark.parametrize("keys", [["k"], ["k", "j"]])
def test_a_partial_that_does_not_fit_changes_nothing(keys: list[str]) -> None:
    planned = plan(f"SELECT {', '.join(keys)}, count(*), max(v) FROM ci GROUP BY {', '.join(keys)}")
    a, b, c = (tuple(name for _ in keys) for name in "abc")
    merged = merge_partials(planned, [groups(group(a, count(1), extreme(1)))])
    bad = groups(group(a, count(5), extreme(9)), group(b, count(1), extreme(2)))
    bad.group_columns.states[1].extremes.int_values.append(3)
    with pytest.raises(PartialResultError, match="3 int_values for 2 values"):
        add_partial(planned, merged, bad)
    # A group twice, after new ones: those are forgotten again.
    twice = groups(*[group(key, count(7), extreme(7)) for key in (b, c, (None,) * len(keys), c)])
    with pytest.raises(PartialResultError, match="a group appears twice"):
        add_partial(planned, merged, twice)
    add_partial(planned, merged, groups(group(c, count(2), extreme(2))))
    assert [[from_value(v) for v in row.values] for row in finalize(planned, merged)[1]] == [
        [*a, 1, 1],
        [*c, 2, 2],
    ]
