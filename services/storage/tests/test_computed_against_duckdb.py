"""Randomized checks of computed columns and aggregate filters against DuckDB 2.0: generated
plans whose `$k` columns (arithmetic, string functions on Unicode text, COALESCE, CASE, each
kept to one type so that SQL can hold it) appear in filters, group keys, aggregates with FILTER,
select lists and ORDER BY, over sealed and open segments with sparse fields."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from flakehouse.common.v1 import plan_pb2
from services.storage.tests.duck_sql import check_against_duckdb, duckdb_table
from services.storage.tests.random_plans import (
    STATUSES,
    SUITES,
    Event,
    ScalarMaker,
    random_plan,
    segments,
)

COLUMNS = {
    "timestamp": "BIGINT",
    "id": "BIGINT",
    "status": "VARCHAR",
    "suite": "VARCHAR",
    "name": "VARCHAR",
    "duration": "DOUBLE",
    "retries": "BIGINT",
    "flaky": "BOOLEAN",
    "line": "BIGINT",
}
# Case mapping beyond ASCII (ß, İ, final Σ, combining accents), separators and digits.
NAMES = [
    "TestLogin",
    "test_upload[Straße]",
    # Greek capitals, capital sigmas ending words.
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03a3\u0391\u03a3",
    "İzmir-Case-2",
    "e\u0301te-0",
    "a-b-c",
    "CaféTest",
    "x",
    "ﬁnal ﬂag",
]
FIELDS = {
    "int": ["retries", "line", "timestamp", "id"],
    "float": ["duration"],
    "str": ["status", "suite", "name"],
    "bool": ["flaky"],
}


def _events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        e: Event = {"timestamp": rng.randrange(0, 10_000_000), "id": i, "_id": 70_000 + i}
        if rng.random() < 0.9:
            e["status"] = rng.choice(STATUSES)
        if rng.random() < 0.8:
            e["suite"] = rng.choice(SUITES)
        if rng.random() < 0.7:
            e["name"] = rng.choice(NAMES)
        if rng.random() < 0.8:
            e["duration"] = rng.randrange(-40, 400) / 4
        if rng.random() < 0.6:
            e["retries"] = rng.randrange(4)
        if rng.random() < 0.4:
            e["flaky"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["line"] = rng.choice([rng.randrange(-(2**40), 2**40), 2**62, -(2**62)])
        events.append(e)
    return events


def _plans(kit: Any, rng: random.Random, count: int) -> Iterator[plan_pb2.QueryPlan]:
    for _ in range(count):
        maker = ScalarMaker(rng, FIELDS, typed=True, int_args=["retries"], pools={"name": NAMES})
        computed = maker.columns(rng.randrange(1, 4))
        names = maker.names()
        numeric = [n for n in names if n in maker.fields["int"] + maker.fields["float"]]
        yield random_plan(
            rng,
            kit,
            names,
            numeric,
            typed=True,
            pools=maker.pools(),
            keys=["status", "retries", "flaky", *maker.types],
            computed=computed,
            filtered=0.4,
        )


@pytest.mark.parametrize("seed", range(3))
def test_computed_columns_match_duckdb(kit: Any, seed: int) -> None:
    rng = random.Random(2000 + seed)
    events = _events(rng, 2000)
    views = segments(kit, rng, events)
    check_against_duckdb(duckdb_table(events, COLUMNS), views, _plans(kit, rng, 80), kit)
