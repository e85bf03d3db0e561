"""Numbering key values and their combinations: the same group on both sides of a partial."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from flakehouse.kernels import numbering
from flakehouse.kernels.numbering import GroupKeys, IntTable, ValueNumbers, int_keys

INT, FLOAT, STRING, BOOL, NULL = 2, 3, 1, 4, 0


def test_nan_is_one_value_and_negative_zero_is_zero() -> None:
    values = ValueNumbers()
    floats = np.array([float("nan"), -0.0, 0.0, float("-nan"), 1.5, np.float64("nan")])
    assert values.number(FLOAT, floats).tolist() == [0, 1, 1, 0, 2, 0]
    assert len(values) == 3
    assert np.isnan(values.cells[0]) and values.cells[1:] == [-0.0, 1.5]


def test_equal_python_values_of_different_types_are_different_values() -> None:
    values = ValueNumbers()
    got = [
        values.number(INT, np.array([1])).tolist(),
        values.number(FLOAT, np.array([1.0])).tolist(),
        values.number(BOOL, np.array([True])).tolist(),
        values.number(STRING, ["1"]).tolist(),
        values.number(NULL, [None]).tolist(),
        values.number(INT, np.array([1, 1])).tolist(),
    ]
    assert got == [[0], [1], [2], [3], [4], [0, 0]]
    assert values.kinds == [INT, FLOAT, BOOL, STRING, NULL]
    assert [type(c) for c in values.cells] == [int, float, bool, str, type(None)]


def test_numbers_follow_first_appearance() -> None:
    rng = random.Random(1)
    values = ValueNumbers()
    seen: dict[int, int] = {}
    for _ in range(20):
        batch = [rng.randrange(-50, 50) for _ in range(rng.randrange(0, 30))]
        expected = [seen.setdefault(x, len(seen)) for x in batch]
        assert values.number(INT, np.array(batch, dtype=np.int64)).tolist() == expected
    assert values.cells == list(seen)


def test_int_keys_are_equal_exactly_for_the_same_value() -> None:
    keys = int_keys(np.array([0.0, -0.0, float("nan"), -float("nan"), 2.0**60]))
    assert keys[0] == keys[1] and keys[2] == keys[3] and len(set(keys.tolist())) == 3
    ints = np.array([2**62, -(2**63)], dtype=np.int64)
    assert int_keys(ints) is ints


def test_int_table_numbers_duplicates_in_one_call() -> None:
    table = IntTable()
    ids, first = table.number(np.array([7, 3, 7, 9, 3], dtype=np.int64), 10)
    assert ids.tolist() == [10, 11, 10, 12, 11] and first.tolist() == [0, 1, 3]
    ids, first = table.number(np.array([9, 1, 7], dtype=np.int64), 13)
    assert ids.tolist() == [12, 13, 10] and first.tolist() == [1]


def test_int_table_gives_the_same_numbers_through_its_dict_and_its_arrays() -> None:
    # Small calls on a small table go through a dict, the rest through sorted arrays; a
    # checkpoint taken in one mode restores it even after the table moved to the other.
    rng = random.Random(5)
    table, reference = IntTable(), {}
    saved: tuple[Any, dict[int, int]] | None = None
    for call in range(60):
        size = rng.choice([1, 5, 60, 64, 65, 300, 2000])
        keys = np.array([rng.randrange(-3000, 3000) for _ in range(size)], dtype=np.int64)
        start = 10_000 * call
        ids, first = table.number(keys, start)
        expected, fresh = [], []
        for i, key in enumerate(keys.tolist()):
            if key not in reference:
                reference[key] = start + len(fresh)
                fresh.append(i)
            expected.append(reference[key])
        assert ids.tolist() == expected and first.tolist() == fresh
        if call == 5:
            saved = (table.state, dict(reference))
        if call == 40:
            assert saved is not None
            table.state, reference = saved[0], dict(saved[1])


def test_rollback_forgets_exactly_what_came_after_the_checkpoint() -> None:
    values = ValueNumbers()
    values.number(STRING, ["a", "b"])
    values.number(INT, np.array([5]))
    values.checkpoint()
    values.number(STRING, ["c", "a"])
    values.number(INT, np.array([6, 5]))
    values.number(FLOAT, np.array([0.5]))
    values.rollback()
    assert values.cells == ["a", "b", 5]
    assert values.number(FLOAT, np.array([0.5])).tolist() == [3]
    assert values.number(STRING, ["c"]).tolist() == [4]
    assert values.number(INT, np.array([6, 5])).tolist() == [5, 2]


def _rows(rng: random.Random, pool: list[tuple[int, Any]], n: int) -> list[tuple[Any, ...]]:
    return [(rng.choice(pool), rng.choice(pool)) for _ in range(n)]


def _ids(keys: GroupKeys, rows: list[tuple[Any, ...]]) -> list[np.ndarray[Any, Any]]:
    out = []
    for k, values in enumerate(keys.values):
        column = np.empty(len(rows), dtype=np.intp)
        for kind in {row[k][0] for row in rows}:
            at = [i for i, row in enumerate(rows) if row[k][0] == kind]
            data = [rows[i][k][1] for i in at]
            typed = data if kind in (STRING, NULL) else np.array(data)
            column[at] = values.number(kind, typed)
        out.append(column)
    return out


@pytest.mark.parametrize("bits", [63, 6])
def test_groups_of_two_keys_packed_or_as_tuples(bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # With 6 bits (3 per key) the 9th value of a key turns packed lookups into tuples.
    monkeypatch.setattr(numbering, "PACKED_BITS", bits)
    rng = random.Random(bits)
    pool = [(INT, i) for i in range(12)] + [(STRING, f"s{i}") for i in range(4)]
    pool += [(FLOAT, 1.0), (BOOL, True), (NULL, None)]
    keys = GroupKeys(2)
    expected: dict[tuple[Any, ...], int] = {}
    for round_ in range(8):
        rows = _rows(rng, pool[:6] if round_ < 2 else pool, rng.randrange(1, 40))
        keys.checkpoint()
        got = keys.groups(_ids(keys, rows), len(rows)).tolist()
        if round_ == 4:
            keys.rollback()  # as if the partial had been refused
            continue
        assert got == [expected.setdefault(row, len(expected)) for row in rows]
    assert keys.packed == (bits == 63)
    assert keys.size == len(expected)
    for k in range(2):
        assert keys.key_cells(k) == [row[k][1] for row in expected]


def test_one_key_and_no_key() -> None:
    one = GroupKeys(1)
    ids = one.values[0].number(STRING, ["x", "y", "x"])
    assert one.groups([ids], 3).tolist() == [0, 1, 0] and one.size == 2
    assert one.key_cells(0) == ["x", "y"] and one.packed is None
    none = GroupKeys(0)
    assert none.size == 0
    assert none.groups([], 0).tolist() == [] and none.size == 0
    assert none.groups([], 1).tolist() == [0] and none.size == 1
