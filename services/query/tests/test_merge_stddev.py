"""The merged states of stddev_samp and stddev_pop: numbers split at random into partials, as
partitions hold them, must answer what numpy answers over all of them, whatever the order in
which partials arrive."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from flakehouse.events.values import FLOAT, STRING
from services.query.tests.merge_helpers import (
    answer,
    group,
    groups,
    moments,
    plan,
)


def split(values: list[float], parts: int, rng: random.Random) -> list[list[float]]:
    """`values` dealt at random into `parts` lists, some of them empty."""
    dealt: list[list[float]] = [[] for _ in range(parts)]
    for value in values:
        dealt[rng.randrange(parts)].append(value)
    return dealt


@pytest.mark.parametrize("seed", range(6))
def test_random_splits_answer_what_numpy_does(seed: int) -> None:
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    sizes = {"none": 0, "one": 1, "two": 2, "many": rng.randrange(50, 400)}
    values = {
        key: (np_rng.lognormal(0, 1.5, n) * rng.choice([1, -1e3, 1e-6])).tolist()
        for key, n in sizes.items()
    }
    parts = rng.randrange(1, 9)
    dealt = {key: split(vs, parts, rng) for key, vs in values.items()}
    partials = []
    for p in range(parts):
        # A partition holds a group's key when it saw rows of it, even without numbers.
        rows = [
            group([key], moments(*dealt[key][p]), moments(*dealt[key][p]))
            for key in values
            if dealt[key][p] or key == "none" or rng.random() < 0.3
        ]
        partials.append(groups(*rows))
    planned = plan("SELECT k, stddev_samp(v), stddev_pop(v) FROM ci GROUP BY k")
    columns, result = answer(planned, partials)
    assert columns == [("k", STRING), ("stddev_samp(v)", FLOAT), ("stddev_pop(v)", FLOAT)]
    got = {row[0]: row[1:] for row in result}
    assert got["one"] == [None, 0.0]  # as DuckDB: no sample deviation of one value
    assert "none" not in got or got["none"] == [None, None]
    for key in ("two", "many"):
        samp, pop = got[key]
        assert samp == pytest.approx(np.std(values[key], ddof=1), rel=1e-12)
        assert pop == pytest.approx(np.std(values[key], ddof=0), rel=1e-12)


def test_the_answer_does_not_depend_on_arrival_order() -> None:
    rng = random.Random(4)
    values = [rng.uniform(-1, 1) * 10 ** rng.randrange(-3, 9) for _ in range(200)]
    partials = [
        groups(group(["a"], moments(*part)), group(["b"], moments(*part[:3])))
        for part in split(values, 5, rng)
    ]
    planned = plan("SELECT k, stddev(v) FROM ci GROUP BY k")
    answers = {repr(answer(planned, list(order))[1]) for order in itertools.permutations(partials)}
    assert len(answers) == 1  # bit for bit, not merely close


def test_partials_with_equal_means_merge_in_one_order_too() -> None:
    # Partitions often agree on a mean (retries is 0 in most) but not on counts and spreads.
    rng = random.Random(2)
    parts = [[0.1] * 3, [0.3, 0.1, -0.1], *([rng.choice([-1, 1]) * 0.1] * 2 for _ in range(3))]
    parts += [[0.1] * 5, [0.2, 0.0], [0.7] * 2, [0.1] * 2, [0.4, -0.2]]
    partials = [groups(group([], moments(*part))) for part in parts]
    planned = plan("SELECT stddev_pop(v) FROM ci")
    orders = [rng.sample(partials, len(partials)) for _ in range(200)]
    assert len({repr(answer(planned, order)[1]) for order in orders}) == 1


def test_a_small_spread_far_from_zero_keeps_its_digits() -> None:
    # Sums of squares would be 10^18 apart from each other and leave nothing of a spread of 1.
    rng = random.Random(8)
    values = [1e9 + rng.gauss(0, 1) for _ in range(1000)]
    partials = [groups(group([], moments(*part))) for part in split(values, 4, rng)]
    ((samp,),) = answer(plan("SELECT stddev(v) FROM ci"), partials)[1]
    assert samp == pytest.approx(np.std(values, ddof=1), rel=1e-6)


def test_over_no_rows_and_with_nan() -> None:
    planned = plan("SELECT stddev_samp(v), stddev_pop(v) FROM ci")
    assert answer(planned, [])[1] == [[None, None]]
    assert answer(planned, [groups(group([], moments(), moments()))])[1] == [[None, None]]
    nan = [
        groups(group([], moments(1.0, math.nan), moments(2.0))),
        groups(group([], moments(3.0), moments())),
    ]
    (row,) = answer(planned, nan)[1]
    assert math.isnan(row[0]) and row[1] == 0.0  # NaN among the values: NaN, as in DuckDB


@pytest.mark.parametrize(
    ("parts", "samp", "pop"),
    [
        ([[math.inf]], None, 0.0),  # one value deviates by 0, whatever it is (DuckDB)
        ([[math.nan]], None, 0.0),
        ([[math.inf], [1.0]], math.nan, math.nan),
        ([[math.inf, math.inf]], math.nan, math.nan),
        ([[1.0, -math.inf], [2.0]], math.nan, math.nan),
        ([[1.0], [math.nan]], math.nan, math.nan),
    ],
)
def test_infinities_and_nan_answer_as_duckdb(
    parts: list[list[float]], samp: float | None, pop: float
) -> None:
    planned = plan("SELECT stddev_samp(v), stddev_pop(v) FROM ci")
    partials = [groups(group([], moments(*part), moments(*part))) for part in parts]
    for order in (partials, partials[::-1]):
        (row,) = answer(planned, order)[1]
        assert repr(row) == repr([samp, pop])


def test_having_and_order_by_stddev() -> None:
    planned = plan(
        "SELECT k FROM ci GROUP BY k HAVING stddev_pop(v) > 0 ORDER BY stddev_samp(v) DESC"
    )
    _, result = answer(
        planned,
        [
            groups(
                group(["flat"], moments(5.0, 5.0), moments(5.0, 5.0)),
                group(["wide"], moments(0.0, 100.0), moments(0.0, 100.0)),
                group(["narrow"], moments(1.0), moments(1.0)),
            ),
            groups(group(["narrow"], moments(2.0), moments(2.0))),
        ],
    )
    assert result == [["wide"], ["narrow"]]
