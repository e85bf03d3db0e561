"""Merging hand-built partial results: groups found by key across partials (NULLs, NaN, types
kept apart), whatever the order in which partials arrive, checked against a per-group reference."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events.values import INT, STRING, from_value
from flakehouse.kernels import numbering
from flakehouse.query import merge
from flakehouse.query.answer import finalize
from flakehouse.query.merge import add_partial, merge_partials
from flakehouse.query.partial import PartialResultError
from flakehouse.query.sql import PlannedQuery
from services.query.tests.merge_helpers import (
    Cell,
    State,
    answer,
    count,
    distinct,
    extreme,
    group,
    groups,
    plan,
    total,
)


def test_overlapping_groups_are_merged_and_ordered_by_key() -> None:
    planned = plan("SELECT suite, count(*) AS runs, count(duration) FROM ci GROUP BY suite")
    columns, result = answer(
        planned,
        [
            groups(group(["b"], count(2), count(1)), group(["a"], count(1), count(1))),
            groups(group(["b"], count(3), count(3)), group([None], count(4), count(0))),
            groups(group(["c"], count(1), count(0))),
        ],
    )
    assert columns == [("suite", STRING), ("runs", INT), ("count(duration)", INT)]
    # No ORDER BY: by group key, NULL last, so that answers are deterministic.
    assert result == [["a", 1, 1], ["b", 5, 4], ["c", 1, 0], [None, 4, 0]]


def test_group_keys_keep_types_apart() -> None:
    # True == 1 == 1.0 in Python, but they are different values of different columns.
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    _, result = answer(
        planned,
        [
            groups(group([1], count(1)), group([True], count(2)), group([1.0], count(4))),
            groups(group([True], count(8)), group(["1"], count(16))),
        ],
    )
    assert [(type(k), k, n) for k, n in result] == [
        (int, 1, 1),
        (float, 1.0, 4),
        (str, "1", 16),
        (bool, True, 10),
    ]


def test_multi_key_groups_with_nulls() -> None:
    planned = plan("SELECT a, b, count(*) FROM ci GROUP BY a, b")
    _, result = answer(
        planned,
        [
            groups(group(["x", None], count(1)), group([None, 2], count(1))),
            groups(group(["x", None], count(1)), group(["x", 1], count(5))),
        ],
    )
    assert result == [["x", 1, 5], ["x", None, 2], [None, 2, 1]]


def test_nan_keys_are_one_group_and_int_float_ties_do_not_depend_on_arrival() -> None:
    planned = plan("SELECT k, count(*) FROM ci GROUP BY k")
    nan = float("nan")
    partials = [
        groups(group([nan], count(1)), group([1.0], count(2)), group([2], count(8))),
        groups(group([nan], count(4)), group([1], count(16)), group([2.0], count(32))),
    ]
    for ordering in (partials, partials[::-1]):
        _, result = answer(planned, ordering)
        assert [(type(k), n) for k, n in result] == [
            (int, 16),  # 1 and 1.0 tie in the order: the int first
            (float, 2),
            (int, 8),
            (float, 32),
            (float, 5),  # NaN: one group, the greatest number
        ]
        assert math.isnan(result[-1][0])  # type: ignore[arg-type]


def test_partials_added_after_finalizing_count() -> None:
    planned = plan("SELECT k, count(DISTINCT v), max(v), avg(v) FROM ci GROUP BY k")
    merged = merge_partials(
        planned, [groups(group(["a"], distinct(1), extreme(1), total(1, int_sum=1)))]
    )
    first = finalize(planned, merged)[1]
    assert [from_value(v) for v in first[0].values] == ["a", 1, 1, 1.0]
    add_partial(planned, merged, groups(group(["a"], distinct(2), extreme(2), total(1, int_sum=2))))
    add_partial(planned, merged, groups(group(["a"], distinct(3), extreme(0), total(1, int_sum=6))))
    second = finalize(planned, merged)[1]
    assert [from_value(v) for v in second[0].values] == ["a", 3, 2, 3.0]


def test_scan_stats_are_summed() -> None:
    planned = plan("SELECT count(*) FROM ci")
    stats = plan_pb2.ScanStats(
        rows_scanned=10, rows_matched=4, segments_scanned=2, segments_skipped=1
    )
    merged = merge_partials(
        planned, [plan_pb2.PartialResult(stats=stats), plan_pb2.PartialResult(stats=stats)]
    )
    assert merged.stats == plan_pb2.ScanStats(
        rows_scanned=20, rows_matched=8, segments_scanned=4, segments_skipped=2
    )


def _random_partials(
    planned: PlannedQuery, rng: random.Random, how_many: int
) -> list[plan_pb2.PartialResult]:
    pool: list[Cell] = [None, 0, 1, 2.0, 2.5, float("nan"), "a", "b", "", True, False]
    values: list[Cell] = [None, 3, -1, 2.5, "x", "y", True]
    partials = []
    for _ in range(how_many):
        # One group per key in a partial: keys by type and repr, so that NaN is one key.
        keys = {
            repr([(type(k), k) for k in key]): key
            for key in (
                [rng.choice(pool) for _ in planned.plan.group_by] for _ in range(rng.randrange(6))
            )
        }
        partials.append(
            groups(
                *[
                    group(
                        key,
                        count(rng.randrange(5)),
                        total(
                            rng.randrange(1, 4),
                            int_sum=rng.randrange(-9, 9),
                            float_sum=rng.uniform(-1, 1),
                            float_seen=rng.random() < 0.5,
                        ),
                        extreme(rng.choice(values)),
                        distinct(*rng.sample(range(20), rng.randrange(4))),
                    )
                    for key in keys.values()
                ]
            )
        )
    return partials


@pytest.mark.parametrize("seed", range(20))
def test_answers_do_not_depend_on_the_order_partials_arrive(seed: int) -> None:
    rng = random.Random(seed)
    planned = plan(
        "SELECT k, count(*) AS n, avg(v), max(v), count(DISTINCT v) AS d FROM ci GROUP BY k"
        " HAVING count(*) >= 1 ORDER BY d DESC, n LIMIT 6"
    )
    partials = _random_partials(planned, rng, 4)
    expected = repr(answer(planned, partials))
    for _ in range(5):
        rng.shuffle(partials)
        assert repr(answer(planned, partials)) == expected


# -- against a per-group reference -----------------------------------------------------------

NAN = float("nan")
KEY_POOL: list[Cell] = [None, 0, 1, 1.0, -0.0, NAN, 2**62, "1", "", "a", True, False]
EXTREME_POOL: list[Cell] = [
    None, 3, -1, 2**53 + 1, -(2**53) - 1, 2.5, 1.0, 1, float(2**53), 2**54, float(2**54), NAN,
    -math.inf,
    "x", "", True, False,
]  # fmt: skip


def _identity(cell: Cell) -> tuple[str, Cell]:
    """A key value as plan.proto sees it: its type and value, NaNs one value."""
    if isinstance(cell, float) and cell != cell:
        return ("float", "NaN")
    return (type(cell).__name__, cell)


def _priority(value: Cell) -> int:
    return 0 if isinstance(value, bool) else 1 if isinstance(value, str) else 2


def _better(new: Cell, old: Cell, maximum: bool) -> bool:
    """The documented MIN/MAX rules, one pair at a time."""
    if new is None:
        return False
    if old is None or _priority(new) != _priority(old):
        return old is None or _priority(new) > _priority(old)
    if new != new or old != old:
        return old != old and new == new
    if new == old:
        return type(new) is int and type(old) is float
    return new > old if maximum else new < old  # type: ignore[operator]


def _reference(
    partials: list[list[tuple[tuple[Cell, ...], list[State]]]],
) -> dict[tuple[tuple[str, Cell], ...], list[Cell]]:
    """{key identity: [key cells..., count, sum, avg, min, max]}, merged a group at a time."""
    merged: dict[tuple[tuple[str, Cell], ...], list[Any]] = {}
    for partial in partials:
        for key, (n, numbers, _, low, high) in partial:
            entry = merged.setdefault(
                tuple(map(_identity, key)), [key, 0, 0, 0, False, [], None, None]
            )
            entry[1] += n.count
            entry[2] += numbers.count
            entry[3] += numbers.int_sum
            entry[4] |= numbers.float_seen
            entry[5].append(numbers.sum)
            if _better(low.extreme, entry[6], maximum=False):
                entry[6] = low.extreme
            if _better(high.extreme, entry[7], maximum=True):
                entry[7] = high.extreme
    out: dict[tuple[tuple[str, Cell], ...], list[Cell]] = {}
    for identity, (key, n, count_, int_sum, seen, sums, low, high) in merged.items():
        total_: Cell = None
        mean: Cell = None
        if count_ and not seen:
            total_, mean = int_sum, int_sum / count_
        elif count_:
            total_ = float(int_sum) + math.fsum(sums)
            mean = total_ / count_
        out[identity] = [*key, _int64(n), _int64(total_), mean, low, high]
    return out


def _int64(value: Cell) -> Cell:
    """Beyond int64, an int is answered as the nearest float."""
    if type(value) is int and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _random_groups(
    rng: random.Random, width: int, big: bool
) -> list[tuple[tuple[Cell, ...], list[State]]]:
    keys = {}
    for _ in range(rng.randrange(40)):
        key = tuple(rng.choice(KEY_POOL) for _ in range(width))
        keys[tuple(map(_identity, key))] = key
    magnitude = 2**62 if big else 1000
    out = []
    for key in keys.values():
        seen = rng.random() < 0.5
        numbers = total(
            rng.randrange(0, magnitude) if big and rng.random() < 0.3 else rng.randrange(4),
            int_sum=rng.randrange(-magnitude, magnitude),
            float_sum=rng.choice([0.0, 1e16, -1e16, 1.0, rng.uniform(-1, 1)]) if seen else 0.0,
            float_seen=seen,
        )
        states = [
            count(rng.randrange(0, magnitude)),
            numbers,
            numbers,
            extreme(rng.choice(EXTREME_POOL)),
            extreme(rng.choice(EXTREME_POOL)),
        ]
        out.append((key, states))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_merge_matches_a_per_group_reference(seed: int) -> None:
    rng = random.Random(seed)
    width = 1 + seed % 3
    names = ["a", "b", "c"][:width]
    planned = plan(
        f"SELECT {', '.join(names)}, count(*), sum(v), avg(v), min(v), max(v) FROM ci"
        f" GROUP BY {', '.join(names)}"
    )
    # Big values overflow int64 in the merge: Python ints from then on.
    partials = [_random_groups(rng, width, big=seed % 2 == 1) for _ in range(rng.randrange(1, 9))]
    expected = _reference(partials)
    built = [groups(*[group(key, *states) for key, states in p]) for p in partials]
    for _ in range(3):
        _, result = answer(planned, built)
        got = {tuple(map(_identity, row[:width])): row for row in result}
        assert len(got) == len(result)
        # repr: NaN keys and values compare equal.
        assert sorted(map(repr, got.items())) == sorted(map(repr, expected.items()))
        rng.shuffle(built)


@pytest.mark.parametrize("bits", [63, 6])
def test_multi_key_groups_when_value_numbers_no_longer_pack(
    bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With 6 bits, 3 per key: from the 9th value of a key on, groups are found by tuples.
    monkeypatch.setattr(numbering, "PACKED_BITS", bits)
    rng = random.Random(3)
    planned = plan("SELECT a, b, count(*), max(v) FROM ci GROUP BY a, b")
    pool: list[Cell] = [None, True, 1, 1.0, "1", *range(2, 12), *[f"s{i}" for i in range(6)]]
    partials = []
    for i in range(6):
        # The first two partials hold 6 values of each key: packed; then more.
        values = pool[:6] if i < 2 else pool
        keys = {
            (_identity(a), _identity(b)): (a, b)
            for a, b in ((rng.choice(values), rng.choice(values)) for _ in range(30))
        }
        partials.append(
            [
                (key, [count(rng.randrange(1, 9)), extreme(rng.randrange(100))])
                for key in keys.values()
            ]
        )
    expected: dict[Any, list[Cell]] = {}
    for partial in partials:
        for key, (n, high) in partial:
            row = expected.setdefault(tuple(map(_identity, key)), [*key, 0, None])
            row[2] += n.count
            row[3] = high.extreme if row[3] is None else max(row[3], high.extreme)  # type: ignore[call-overload]
    merged = merge.Merged()
    for i, partial in enumerate(partials):
        add_partial(planned, merged, groups(*[group(key, *states) for key, states in partial]))
        if i == 2:
            # A group twice: refused, and the groups it brought are forgotten.
            key, states = partial[0]
            twice = groups(group(("new", "new"), *states), group(key, *states), group(key, *states))
            with pytest.raises(PartialResultError, match="twice"):
                add_partial(planned, merged, twice)
    assert merged.index is not None
    assert merged.index.keys.packed == (bits == 63)  # the way groups were found
    _, result = finalize(planned, merged)
    got = {tuple(map(_identity, [from_value(v) for v in row.values][:2])): row for row in result}
    assert len(got) == len(result) == len(expected)
    assert sorted(map(repr, [[from_value(v) for v in row.values] for row in result])) == sorted(
        map(repr, expected.values())
    )
