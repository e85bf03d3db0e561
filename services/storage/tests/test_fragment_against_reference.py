"""Randomized checks of the executor: thousands of generated events with mixed-type fields and
hundreds of generated plans (random_plans.py), against a row-at-a-time pure-Python reference of
the documented semantics (reference.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from flakehouse.events import values as v
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from services.storage.tests.random_plans import Event, random_plan, segments
from services.storage.tests.reference import check_reference, mixed_events

FIELDS = ["status", "suite", "duration", "retries", "flaky", "line", "timestamp", "id"]


def _plans(kit: Any, rng: random.Random, count: int) -> Any:
    return (random_plan(rng, kit, FIELDS, FIELDS, typed=False) for _ in range(count))


@pytest.mark.parametrize("seed", range(3))
def test_execute_matches_reference_on_mixed_types(kit: Any, seed: int) -> None:
    rng = random.Random(seed)
    events = mixed_events(rng, 3000)
    check_reference(events, segments(kit, rng, events), _plans(kit, rng, 120), kit)


def _dense(events: list[Event]) -> list[Event]:
    """Every field present on every row, in one type: the columns the fast paths take."""
    fill = {"status": "passed", "suite": "suite00", "duration": 0.25, "retries": 0,
            "flaky": False, "line": 1}  # fmt: skip
    return [
        {**e, **{f: d for f, d in fill.items() if type(e.get(f)) is not type(d)}} for e in events
    ]


@pytest.mark.parametrize("seed", range(2))
def test_dense_columns_match_reference(kit: Any, seed: int) -> None:
    rng = random.Random(200 + seed)
    events = _dense(mixed_events(rng, 3000))
    check_reference(events, segments(kit, rng, events), _plans(kit, rng, 100), kit)


def _sort_rank(x: Any) -> tuple[Any, ...]:
    return (9,) if x is None else (v.type_of(x), x != x, 0 if x != x else x)


@pytest.mark.parametrize(("seed", "field"), [(0, "duration"), (1, "status"), (2, "line")])
def test_clustered_segments_prune_and_match_reference(kit: Any, seed: int, field: str) -> None:
    # Segments cut from events sorted by a field have narrow min/max stats: many are skipped.
    rng = random.Random(300 + seed)
    events = sorted(mixed_events(rng, 3000), key=lambda e: _sort_rank(e.get(field)))
    views = []
    for seq, lo in enumerate(range(0, len(events), 200)):
        builder = SegmentBuilder("ci", 0, seq)
        builder.add(kit.batch(events[lo : lo + 200]), offset=seq)
        views.append(decode_segment(builder.seal()) if seq % 3 else builder.view())
    skipped = check_reference(events, views, _plans(kit, rng, 150), kit)
    assert skipped > 0
