"""STDDEV_SAMP and STDDEV_POP states (count, mean, sum of squared differences): per group over
the ints and floats of a field (other types ignored), merged across segments with Chan et al.'s
formula, checked against DuckDB and against numpy on values where summing squares would lose
every digit."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.storage import fragment
from flakehouse.storage.stddev import StdDev
from services.storage.tests.duck_sql import check_against_duckdb, duckdb_table


def _answers(state: Any) -> tuple[float | None, float | None]:
    """(stddev_samp, stddev_pop) from a state, as the query service finishes them."""
    n, squares = state.count, state.square
    samp = math.sqrt(squares / (n - 1)) if n > 1 else None
    pop = math.sqrt(squares / n) if n else None
    return samp, pop


def test_ints_and_floats_count_other_types_do_not(kit: Any) -> None:
    events = [{"timestamp": i, "g": "x", "v": value} for i, value in enumerate(
        [1, 2.0, 3, "4", True, None, 5.5]
    )]  # fmt: skip
    events.append({"timestamp": 9, "g": "y", "v": "only a string"})
    plan = kit.plan(
        group_by=["g"], aggregates=[kit.agg("stddev_samp", "v"), kit.agg("stddev_pop", "v")]
    )
    groups = {
        g.key[0].string_value: g for g in kit.group_list(kit.run(plan, events[:3], events[3:]))
    }
    numbers = np.array([1, 2.0, 3, 5.5])
    x = groups["x"].states[0]
    assert x.count == 4 and x.mean == pytest.approx(numbers.mean(), rel=1e-12)
    samp, pop = _answers(x)
    assert samp == pytest.approx(numbers.std(ddof=1), rel=1e-12)
    assert pop == pytest.approx(numbers.std(ddof=0), rel=1e-12)
    assert groups["x"].states[1] == x  # one state for both: the query service picks n or n - 1
    y = groups["y"].states[0]
    assert (y.count, y.mean, y.square) == (0, 0.0, 0.0)
    assert _answers(y) == (None, None)


def test_numerically_stable_on_large_close_values(kit: Any) -> None:
    """1e9 plus noise of about 1: the sum of squares minus the square of the sum cancels every
    digit in float64; two passes per segment and Chan's merge keep the answer."""
    rng = np.random.default_rng(7)
    values = 1e9 + rng.normal(0, 1, 20_000)
    events = [{"timestamp": i, "v": float(x)} for i, x in enumerate(values)]
    plan = kit.plan(aggregates=[kit.agg("stddev_samp", "v")])
    chunks = [events[i : i + 3_000] for i in range(0, len(events), 3_000)]
    (group,) = kit.group_list(kit.run(plan, *chunks))
    samp, pop = _answers(group.states[0])
    assert samp == pytest.approx(np.std(values, ddof=1), rel=1e-9)
    assert pop == pytest.approx(np.std(values, ddof=0), rel=1e-9)
    naive = math.sqrt(max(0.0, (np.sum(values**2) - np.sum(values) ** 2 / len(values)))
                      / (len(values) - 1))  # fmt: skip
    assert not math.isclose(naive, np.std(values, ddof=1), rel_tol=1e-3)  # what it avoids


def test_merging_segments_equals_one_pass() -> None:
    rng = np.random.default_rng(3)
    whole = StdDev(plan_pb2.Aggregate(function=plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP, field="v"))
    parts = [rng.normal(5e8, 10, n) for n in (1, 2, 50, 1000)]
    for i, x in enumerate(parts):
        whole.states(1, plan_pb2.StateColumn())  # room for group 0
        target = np.array([0])
        counts, means, squares = len(x), x.mean(), ((x - x.mean()) ** 2).sum()
        whole.merge(target, np.array([counts]), np.array([means]), np.array([squares]))
        everything = np.concatenate(parts[: i + 1])
        assert whole.counts[0] == len(everything)
        assert whole.means[0] == pytest.approx(everything.mean(), rel=1e-12)
        assert whole.squares[0] == pytest.approx(
            ((everything - everything.mean()) ** 2).sum(), rel=1e-9, abs=1e-9
        )


@pytest.mark.parametrize("seed", range(2))
def test_stddev_matches_duckdb(kit: Any, seed: int) -> None:
    rng = random.Random(6000 + seed)
    events = []
    for i in range(3000):
        e: dict[str, Any] = {"timestamp": i, "g": f"g{rng.randrange(30)}", "f": rng.random() < 0.5}
        if rng.random() < 0.8:
            e["d"] = rng.gauss(1e6, 50) if rng.random() < 0.5 else rng.uniform(-1, 1)
        if rng.random() < 0.7:
            e["n"] = rng.randrange(-(2**40), 2**40)
        events.append(e)
    open_views, sealed = kit.views(events[:700], events[700:701], events[701:2000], events[2000:])
    plans = [
        kit.plan(
            group_by=group_by,
            aggregates=[
                kit.agg("stddev_samp", "d"),
                kit.agg("stddev_pop", "d"),
                kit.agg("stddev_samp", "n", filter=kit.cmp("f", "=", True)),
                kit.agg("stddev_pop", "n"),
            ],
        )
        for group_by in ([], ["g"], ["g", "f"])
    ]
    con = duckdb_table(events, {"timestamp": "BIGINT", "g": "VARCHAR", "f": "BOOLEAN",
                                "d": "DOUBLE", "n": "BIGINT"})  # fmt: skip
    check_against_duckdb(con, [sealed[0], open_views[1], *sealed[2:]], plans, kit)


def test_stddev_over_a_computed_column(kit: Any) -> None:
    events = [{"timestamp": i, "ms": i * 10} for i in range(10)]
    plan = kit.plan(
        computed=[kit.call("divide", "ms", 1000)], aggregates=[kit.agg("stddev_pop", "$0")]
    )
    (group,) = kit.group_list(fragment.execute(plan, kit.views(events)[0]))
    assert _answers(group.states[0])[1] == pytest.approx(np.std(np.arange(10) / 100), rel=1e-12)
