"""Randomized checks of computed columns and aggregate filters on mixed-type fields: generated
plans use `$k` columns (arithmetic, string functions, COALESCE, CASE, built on each other) in
filters, group keys, aggregates, aggregate filters, select lists and ORDER BY, over sealed and
open segments, against the row-at-a-time reference (reference.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from flakehouse.common.v1 import plan_pb2
from services.storage.tests.random_plans import ScalarMaker, random_plan, segments
from services.storage.tests.reference import check_reference, mixed_events

FIELDS = {
    "int": ["retries", "line", "timestamp", "id"],
    "float": ["duration"],
    "str": ["status", "suite"],
    "bool": ["flaky"],
}


def _plans(kit: Any, rng: random.Random, count: int) -> Iterator[plan_pb2.QueryPlan]:
    for _ in range(count):
        maker = ScalarMaker(rng, FIELDS, typed=False, int_args=["retries"])
        computed = maker.columns(rng.randrange(1, 4))
        names = maker.names()
        yield random_plan(
            rng,
            kit,
            names,
            names,
            typed=False,
            pools=maker.pools(),
            keys=["status", "retries", *maker.types],
            computed=computed,
            filtered=0.4,
        )


@pytest.mark.parametrize("seed", range(2))
def test_computed_columns_match_reference_on_mixed_types(kit: Any, seed: int) -> None:
    rng = random.Random(500 + seed)
    events = mixed_events(rng, 1500)
    check_reference(events, segments(kit, rng, events), _plans(kit, rng, 100), kit)
