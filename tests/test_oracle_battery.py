"""The oracle's battery and comparison on their own, without a cluster: the comparison catches
wrong answers, and the battery is large enough (tests/oracle_cases.py, tests/oracle_world.py)."""

from __future__ import annotations

from tests.oracle_cases import cases_with_marks
from tests.oracle_world import Case, mismatch


def test_the_comparison_catches_wrong_answers() -> None:
    plain = Case("plain", "", "")
    ordered = Case("ordered", "", "", ordered=True)
    sketches = Case("sketches", "", "", sketch={0: "distinct", 1: "quantile"})
    assert mismatch(plain, [["a", 1, 0.5], ["b", 2, None]], [("b", 2, None), ("a", 1, 0.5)]) is None
    assert mismatch(plain, [["a", 1]], [("a", 2)])
    assert mismatch(plain, [["a", 1]], [("a", 1), ("b", 1)])
    assert mismatch(plain, [[0.1 + 0.2]], [(0.3,)]) is None
    assert mismatch(plain, [[0.3001]], [(0.3,)])
    assert mismatch(plain, [["1"]], [(1,)])  # a string is not a number
    assert mismatch(plain, [[True]], [(1,)])  # nor is a bool
    assert mismatch(plain, [[None]], [(0,)])
    assert mismatch(ordered, [["b"], ["a"]], [("a",), ("b",)])
    assert mismatch(plain, [["b"], ["a"]], [("a",), ("b",)]) is None
    assert mismatch(sketches, [[4096, 1.0]], [(4096, 1.0)]) is None
    assert mismatch(sketches, [[4095, 1.0]], [(4096, 1.0)])  # exact up to 4096
    assert mismatch(sketches, [[10_190, 1.0]], [(10_000, 1.0)]) is None
    assert mismatch(sketches, [[10_210, 1.0]], [(10_000, 1.0)])
    assert mismatch(sketches, [[10, 2.019]], [(10, 2.0)]) is None
    assert mismatch(sketches, [[10, 2.021]], [(10, 2.0)])


def test_battery_is_large_enough() -> None:
    assert len(cases_with_marks()) >= 30
