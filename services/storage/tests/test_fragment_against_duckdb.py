"""Randomized checks of the executor against DuckDB: thousands of generated events and hundreds
of generated plans (random_plans.py), on single-typed fields where SQL semantics apply unchanged."""

from __future__ import annotations

import random
from typing import Any

import pytest

from services.storage.tests.duck_sql import check_against_duckdb, duckdb_table
from services.storage.tests.random_plans import STATUSES, SUITES, Event, random_plan, segments

# -- DuckDB on single-typed fields ---------------------------------------------------------------


COLUMNS = {
    "timestamp": "BIGINT",
    "id": "BIGINT",
    "status": "VARCHAR",
    "suite": "VARCHAR",
    "duration": "DOUBLE",
    "retries": "BIGINT",
    "flaky": "BOOLEAN",
    "line": "BIGINT",
}


def _typed_events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        e: Event = {"timestamp": rng.randrange(0, 10_000_000), "id": i, "_id": 50_000 + i}
        if rng.random() < 0.9:
            e["status"] = rng.choice(STATUSES)
        if rng.random() < 0.9:
            e["suite"] = rng.choice(SUITES)
        if rng.random() < 0.8:
            e["duration"] = rng.randrange(0, 400) / 4
        if rng.random() < 0.6:
            e["retries"] = rng.randrange(4)
        if rng.random() < 0.4:
            e["flaky"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["line"] = rng.randrange(-(2**40), 2**40)
        events.append(e)
    return events


@pytest.mark.parametrize("seed", range(3))
def test_execute_matches_duckdb_on_single_typed_fields(kit: Any, seed: int) -> None:
    rng = random.Random(1000 + seed)
    events = _typed_events(rng, 3000)
    views = segments(kit, rng, events)
    fields = ["status", "suite", "duration", "retries", "flaky", "line", "timestamp"]
    numeric = ["duration", "retries", "line", "timestamp"]
    plans = (random_plan(rng, kit, fields, numeric, typed=True) for _ in range(100))
    check_against_duckdb(duckdb_table(events, COLUMNS), views, plans, kit)
