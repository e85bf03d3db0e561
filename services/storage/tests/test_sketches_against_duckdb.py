"""COUNT_DISTINCT and PERCENTILE partial states from several partitions, merged as the query
service does, against DuckDB's exact count(DISTINCT) and quantile_cont on generated data: within
2 % (count distinct) and 1 % relative (percentiles, whose neighbouring ranks here never straddle
zero), and exact where the distinct values are few."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.sketches import EXACT_LIMIT, DistinctState, QuantileState
from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from flakehouse.storage.segment import SegmentView

ROWS = 240_000
PARTITIONS = 3
SEGMENTS_PER_PARTITION = 4
SUITES = np.array([f"suite{i:02d}" for i in range(10)], dtype=object)
STATUSES = np.array(["passed", "failed", "skipped"], dtype=object)
_event_ids = itertools.count(1)


class Data:
    """Generated columns; a False in `present` is a NULL (the event lacks the field)."""

    def __init__(self, seed: int = 17) -> None:
        rng = np.random.default_rng(seed)
        n = ROWS
        self.timestamp = np.sort(rng.integers(0, 10**12, n))
        # From most of the rows to a few hundred: groups in exact and in HLL mode.
        shares = [0.4, 0.2, 0.15, 0.1, 0.06, 0.04, 0.025, 0.015, 0.007, 0.003]
        self.suite = SUITES[rng.choice(len(SUITES), n, p=shares)]
        self.status = STATUSES[rng.choice(3, n, p=[0.8, 0.15, 0.05])]
        # Test names: a long tail, 60k possible names of which most appear.
        self.name = np.array([f"test_{k}" for k in range(60_000)], dtype=object)[
            rng.integers(0, 60_000, n)
        ]
        self.duration = rng.lognormal(mean=0.0, sigma=1.5, size=n)
        self.retries = rng.zipf(1.8, n) - 1
        self.build = rng.integers(0, 3 * ROWS, n)  # mostly distinct ints
        self.present = {
            "suite": rng.random(n) < 0.97,
            "duration": rng.random(n) < 0.9,
            "retries": rng.random(n) < 0.7,
        }

    def columns(self) -> dict[str, tuple[int, npt.NDArray[Any]]]:
        return {
            "suite": (v.STRING, self.suite),
            "status": (v.STRING, self.status),
            "name": (v.STRING, self.name),
            "duration": (v.FLOAT, self.duration),
            "retries": (v.INT, self.retries),
            "build": (v.INT, self.build),
        }

    def batch(self, rows: slice) -> events_pb2.EventBatch:
        timestamps = self.timestamp[rows]
        n = len(timestamps)
        batch = events_pb2.EventBatch(schema_version=1, upload_id="u", row_count=n)
        batch.timestamps.extend(timestamps.tolist())
        batch.event_ids.extend(next(_event_ids) for _ in range(n))
        for name, (kind, values) in self.columns().items():
            present = self.present.get(name, np.ones(ROWS, dtype=bool))[rows]
            col = batch.columns.add(name=name, type=kind)  # type: ignore[arg-type]
            col.rows.extend(np.flatnonzero(present).tolist())
            chosen = values[rows][present].tolist()
            if kind == v.STRING:
                col.string_values.extend(chosen)
            elif kind == v.INT:
                col.int_values.extend(chosen)
            else:
                col.float_values.extend(chosen)
        return batch

    def partitions(self) -> Iterator[list[SegmentView]]:
        """Rows dealt into partitions of several segments; the last segment of each stays open."""
        bounds = np.linspace(0, ROWS, PARTITIONS * SEGMENTS_PER_PARTITION + 1).astype(int)
        pieces = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for p in range(PARTITIONS):
            views = []
            for seq, rows in enumerate(pieces[p::PARTITIONS]):
                builder = SegmentBuilder("ci", p, seq)
                builder.add(self.batch(rows), offset=seq)
                last = seq == SEGMENTS_PER_PARTITION - 1
                views.append(builder.view() if last else decode_segment(builder.seal()))
            yield views


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def partitions(data: Data) -> list[list[SegmentView]]:
    return list(data.partitions())


@pytest.fixture(scope="module")
def duck(data: Data) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    arrays: dict[str, Any] = {"ts": data.timestamp}
    arrays.update({name: values for name, (_, values) in data.columns().items()})
    arrays.update({f"has_{name}": mask for name, mask in data.present.items()})
    connection.register("raw", arrays)
    nullable = ", ".join(f"CASE WHEN has_{name} THEN {name} END AS {name}" for name in data.present)
    connection.execute(f"CREATE VIEW ci AS SELECT ts, status, name, build, {nullable} FROM raw")
    return connection


def merged(
    plan: plan_pb2.QueryPlan, partitions: list[list[SegmentView]]
) -> dict[str | None, list[DistinctState | QuantileState]]:
    """Each partition's partial result, merged per group key as the query service does."""
    states: dict[str | None, list[list[bytes]]] = {}
    for views in partitions:
        columns = fragment.execute(plan, views).group_columns
        keys: list[str | None] = [None] * columns.size
        if columns.keys:
            (column,) = columns.keys
            assert set(column.types) <= {events_pb2.VALUE_TYPE_UNSPECIFIED, v.STRING}
            names = iter(column.string_values)
            keys = [next(names) if kind == v.STRING else None for kind in column.types]
        sketches = [list(column.sketches) for column in columns.states]
        for i, key in enumerate(keys):
            slots = states.setdefault(key, [[] for _ in plan.aggregates])
            for slot, column_sketches in zip(slots, sketches, strict=True):
                slot.append(column_sketches[i])
    out: dict[str | None, list[DistinctState | QuantileState]] = {}
    for key, slots in states.items():
        row: list[DistinctState | QuantileState] = []
        for aggregate, sketches in zip(plan.aggregates, slots, strict=True):
            if aggregate.function == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE:
                row.append(QuantileState.merge_all(map(QuantileState.from_bytes, sketches)))
            else:
                row.append(DistinctState.merge_all(map(DistinctState.from_bytes, sketches)))
        out[key] = row
    return out


def aggregate_plan(
    fields: list[str], *, quantiles: list[tuple[str, float]], group_by: str | None = None
) -> plan_pb2.QueryPlan:
    plan = plan_pb2.QueryPlan(ir_version=1, dataset="ci")
    if group_by:
        plan.group_by.add(field=group_by)
    for name in fields:
        plan.aggregates.add(function=plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT, field=name)
    for name, q in quantiles:
        plan.aggregates.add(function=plan_pb2.AGGREGATE_FUNCTION_PERCENTILE, field=name, quantile=q)
    return plan


QUANTILES = [("duration", q) for q in (0.5, 0.9, 0.95, 0.99)] + [
    ("retries", q) for q in (0.5, 0.9, 0.95, 0.99)
]
DISTINCT = ["name", "build", "retries", "status", "suite", "duration"]


def check(
    ours: list[DistinctState | QuantileState], theirs: tuple[Any, ...], plan: plan_pb2.QueryPlan
) -> None:
    for aggregate, state, expected in zip(plan.aggregates, ours, theirs, strict=True):
        if isinstance(state, DistinctState):
            got = state.estimate()
            if expected <= EXACT_LIMIT:
                assert got == expected, (aggregate.field, got, expected)
            else:
                assert abs(got / expected - 1) < 0.02, (aggregate.field, got, expected)
        else:
            got_q = state.quantile(aggregate.quantile)
            if expected is None:
                assert got_q is None
                continue
            assert got_q is not None
            assert abs(got_q - expected) <= 0.01 * (1 + 1e-9) * abs(expected), (
                aggregate.field,
                aggregate.quantile,
                got_q,
                expected,
            )


def duck_sql(plan: plan_pb2.QueryPlan, where: str = "") -> str:
    items = [
        f"quantile_cont({a.field}, {a.quantile})"
        if a.function == plan_pb2.AGGREGATE_FUNCTION_PERCENTILE
        else f"count(DISTINCT {a.field})"
        for a in plan.aggregates
    ]
    group = plan.group_by[0].field if plan.group_by else None
    select = ", ".join(([group] if group else []) + items)
    tail = f" GROUP BY {group}" if group else ""
    return f"SELECT {select} FROM ci {where}{tail}"


def test_whole_dataset(partitions: list[list[SegmentView]], duck: Any) -> None:
    plan = aggregate_plan(DISTINCT, quantiles=QUANTILES)
    ((key, ours),) = merged(plan, partitions).items()
    (expected,) = duck.execute(duck_sql(plan)).fetchall()
    assert key is None
    assert expected[0] > 50_000 and expected[1] > 100_000  # HLL territory
    assert expected[2] <= EXACT_LIMIT  # exact territory
    check(ours, expected, plan)


def test_grouped_by_suite(partitions: list[list[SegmentView]], duck: Any) -> None:
    plan = aggregate_plan(DISTINCT, quantiles=QUANTILES, group_by="suite")
    ours = merged(plan, partitions)
    expected = {row[0]: row[1:] for row in duck.execute(duck_sql(plan)).fetchall()}
    assert set(ours) == set(expected)
    # Groups from a few hundred rows to most of the data: exact and HLL states both.
    names = sorted(row[0] for row in expected.values())
    assert names[0] <= EXACT_LIMIT < names[-1]
    for key, row in expected.items():
        check(ours[key], row, plan)


def test_filtered_rows_only(partitions: list[list[SegmentView]], duck: Any) -> None:
    plan = aggregate_plan(["name", "build"], quantiles=[("duration", 0.95)], group_by="status")
    plan.filter.compare.op = plan_pb2.COMPARE_OP_NE
    plan.filter.compare.field = "status"
    plan.filter.compare.value.string_value = "passed"
    ours = merged(plan, partitions)
    expected = {
        row[0]: row[1:]
        for row in duck.execute(duck_sql(plan, "WHERE status != 'passed'")).fetchall()
    }
    assert set(ours) == set(expected) == {"failed", "skipped"}
    for key, row in expected.items():
        check(ours[key], row, plan)


def test_the_check_notices_a_wrong_answer(partitions: list[list[SegmentView]], duck: Any) -> None:
    # Guard against a comparison that always passes.
    plan = aggregate_plan(["name", "retries"], quantiles=[("duration", 0.9)])
    ((_, ours),) = merged(plan, partitions).items()
    (expected,) = duck.execute(duck_sql(plan)).fetchall()
    check(ours, expected, plan)
    with pytest.raises(AssertionError):
        check(ours, (expected[0] * 1.03, *expected[1:]), plan)
    with pytest.raises(AssertionError):
        check(ours, (expected[0], expected[1] + 1, expected[2]), plan)
    with pytest.raises(AssertionError):
        check(ours, (*expected[:2], expected[2] * 1.015), plan)
