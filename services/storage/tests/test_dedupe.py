"""The bounded dedupe window."""

from __future__ import annotations

from flakehouse.storage.dedupe import DedupeWindow


def test_remembers_at_least_the_last_capacity_ids_and_at_most_twice_that() -> None:
    window = DedupeWindow(capacity=100)
    window.add_many(range(1000))
    assert all(i in window for i in range(900, 1000))
    assert 0 not in window
    assert len(window) <= 200


def test_zero_capacity_remembers_nothing() -> None:
    window = DedupeWindow(capacity=0)
    window.add_many([1, 2, 3])
    assert 1 not in window
