"""The bounded dedupe window."""

from __future__ import annotations

import random

from flakehouse.storage.dedupe import DedupeWindow


def test_remembers_at_least_the_last_capacity_ids_within_bounded_memory() -> None:
    window = DedupeWindow(capacity=1000, chunk=128)
    rng = random.Random(1)
    ids = [rng.getrandbits(64) for _ in range(10_000)]
    for start in range(0, len(ids), 37):  # batches of odd sizes
        window.add_many(ids[start : start + 37])
    assert window.seen(ids[-1000:]) == set(ids[-1000:])
    assert window.seen(ids[:1000]) == set()
    assert len(window) <= 1000 + 2 * 128
    assert window.nbytes <= (1000 + 128) * 8


def test_seen_checks_young_and_frozen_ids_and_ignores_new_ones() -> None:
    window = DedupeWindow(capacity=100, chunk=10)
    window.add_many(range(0, 25))  # 20 frozen in two chunks, 5 young
    assert window.seen([3, 17, 22, 99, 2**64 - 1]) == {3, 17, 22}
    assert 24 in window and 25 not in window


def test_zero_capacity_remembers_nothing() -> None:
    window = DedupeWindow(capacity=0)
    window.add_many([1, 2, 3])
    assert 1 not in window
    assert window.seen([1, 2]) == set()


def test_a_million_ids_take_megabytes_not_tens_of_megabytes() -> None:
    window = DedupeWindow(capacity=500_000)
    rng = random.Random(2)
    for _ in range(20):
        window.add_many(rng.getrandbits(64) for _ in range(50_000))
    assert len(window) >= 500_000
    assert window.nbytes < 6 * 1024 * 1024
