"""Micro-benchmark of the query service's merge and finalize (flakehouse.query.merge), without
storage: synthetic PartialResults with 1k to 100k groups, as storage nodes would send them.

Run from the repository root:

    .venv/bin/python services/query/benchmarks/merge.py [--groups 1000 40000] [--partials 1 8]

With P partials every group is in each of them (one per partition, in its own order), so the
merge sees P x groups group states, in columns (plan.proto's GroupColumns). Partials are parsed
from their bytes before each run, as they arrive from gRPC. Prints the median of a few runs, in
milliseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

from flakehouse.common.v1 import plan_pb2
from flakehouse.common.v1.events_pb2 import VALUE_TYPE_FLOAT, VALUE_TYPE_INT, VALUE_TYPE_STRING
from flakehouse.events.values import to_value
from flakehouse.query.answer import finalize
from flakehouse.query.merge import merge_partials
from flakehouse.query.sql import PlannedQuery, plan_query
from flakehouse.sketches import DistinctState, QuantileState

QUERIES = [
    ("count by name", "SELECT name, count(*) FROM bench GROUP BY name"),
    (
        "count/avg/max, top 20",
        "SELECT name, count(*) AS n, avg(duration), max(duration) FROM bench"
        " GROUP BY name ORDER BY n DESC LIMIT 20",
    ),
    (
        "2 keys, HAVING, by sum",
        "SELECT suite, name, sum(retries) AS r FROM bench GROUP BY suite, name"
        " HAVING count(*) > 1 ORDER BY r DESC, name",
    ),
    (
        "p95 by name, top 10",
        "SELECT name, count(*) AS n, p95(duration) FROM bench GROUP BY name"
        " ORDER BY n DESC LIMIT 10",
    ),
    (
        "stddev, failure rate, top 20",
        "SELECT name, stddev(duration), count_if(status = 'failed') * 1.0 / count(*) AS rate"
        " FROM bench GROUP BY name ORDER BY rate DESC LIMIT 20",
    ),
    (
        "raw rows, top 10000",
        "SELECT name, duration FROM bench ORDER BY duration DESC LIMIT 10000",
    ),
]
RUNS = 5

_QUANTILES = QuantileState.from_values([0.25, 0.5, 1.5, 3.0]).to_bytes()
_DISTINCT = DistinctState.from_values(["a", "b", "c"]).to_bytes()


def _key(group_by: plan_pb2.GroupKey, i: int) -> str | int:
    if group_by.WhichOneof("kind") == "time_bucket_us":
        return i * group_by.time_bucket_us
    if group_by.field == "suite":
        return f"suite-{i % 300:03d}"
    return f"test_{i}"


def _key_column(group_by: plan_pb2.GroupKey, order: list[int]) -> plan_pb2.ValueColumn:
    column = plan_pb2.ValueColumn()
    keys = [_key(group_by, i) for i in order]
    if group_by.WhichOneof("kind") == "time_bucket_us":
        column.types.extend([VALUE_TYPE_INT] * len(keys))
        column.int_values.extend(keys)  # type: ignore[arg-type]
    else:
        column.types.extend([VALUE_TYPE_STRING] * len(keys))
        column.string_values.extend(keys)  # type: ignore[arg-type]
    return column


def _state_column(
    aggregate: plan_pb2.Aggregate, size: int, rng: random.Random
) -> plan_pb2.StateColumn:
    fn = aggregate.function
    column = plan_pb2.StateColumn()
    counts = [rng.randrange(1, 50) for _ in range(size)]
    if fn in (plan_pb2.AGGREGATE_FUNCTION_COUNT, plan_pb2.AGGREGATE_FUNCTION_COUNT_FIELD):
        column.counts.extend(counts)
    elif fn in (plan_pb2.AGGREGATE_FUNCTION_SUM, plan_pb2.AGGREGATE_FUNCTION_AVG):
        column.counts.extend(counts)
        if aggregate.field == "retries":
            column.int_sums.extend(rng.randrange(0, 3 * n) for n in counts)
            column.sums.extend([0.0] * size)
            column.float_seen.extend([False] * size)
        else:
            column.int_sums.extend([0] * size)
            column.sums.extend(n * rng.random() for n in counts)
            column.float_seen.extend([True] * size)
    elif fn in (plan_pb2.AGGREGATE_FUNCTION_MIN, plan_pb2.AGGREGATE_FUNCTION_MAX):
        column.extremes.types.extend([VALUE_TYPE_FLOAT] * size)
        column.extremes.float_values.extend(round(rng.random() * 10, 3) for _ in range(size))
    elif fn in (plan_pb2.AGGREGATE_FUNCTION_STDDEV_SAMP, plan_pb2.AGGREGATE_FUNCTION_STDDEV_POP):
        column.counts.extend(counts)
        column.means.extend(rng.random() * 5 for _ in range(size))
        column.squares.extend(n * rng.random() for n in counts)
    elif fn == plan_pb2.AGGREGATE_FUNCTION_COUNT_DISTINCT:
        column.sketches.extend([_DISTINCT] * size)
    else:
        column.sketches.extend([_QUANTILES] * size)
    return column


def partials(planned: PlannedQuery, groups: int, count: int, seed: int = 1) -> list[bytes]:
    """`count` serialized PartialResults of the plan, each with all `groups` groups (aggregate
    plans, as GroupColumns) or `limit` rows (raw-rows plans)."""
    rng = random.Random(seed)
    plan = planned.plan
    out = []
    for _ in range(count):
        partial = plan_pb2.PartialResult()
        if planned.is_aggregate:
            order = list(range(groups))
            rng.shuffle(order)
            columns = partial.group_columns
            columns.size = groups
            columns.keys.extend(_key_column(k, order) for k in plan.group_by)
            columns.states.extend(_state_column(a, groups, rng) for a in plan.aggregates)
        else:
            for i in range(min(groups, plan.limit)):
                row = partial.rows.add()
                for field in plan.select_fields:
                    value = round(rng.random() * 100, 3) if field == "duration" else f"test_{i}"
                    row.values.append(to_value(value))
        out.append(partial.SerializeToString())
    return out


def measure(planned: PlannedQuery, data: Sequence[bytes]) -> tuple[float, float]:
    """Median seconds of merge_partials and of finalize."""
    merges, finals = [], []
    for _ in range(RUNS):
        parsed = [plan_pb2.PartialResult.FromString(b) for b in data]
        started = time.perf_counter()
        merged = merge_partials(planned, parsed)
        middle = time.perf_counter()
        finalize(planned, merged)
        merges.append(middle - started)
        finals.append(time.perf_counter() - middle)
    return statistics.median(merges), statistics.median(finals)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[1_000, 10_000, 40_000, 100_000])
    parser.add_argument("--partials", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args(argv)
    print(f"{'query':26} {'partials':>8} {'groups':>8} {'merge':>8} {'finalize':>9} {'total':>8}")
    for label, sql in QUERIES:
        planned = plan_query(sql, now_us=0)
        for count in args.partials:
            for groups in args.groups:
                merge_s, final_s = measure(planned, partials(planned, groups, count))
                print(
                    f"{label:26} {count:8} {groups:8} {merge_s * 1000:8.1f} {final_s * 1000:9.1f}"
                    f" {(merge_s + final_s) * 1000:8.1f}"
                )


if __name__ == "__main__":
    main()
