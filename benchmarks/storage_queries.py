"""The storage benchmark's queries (benchmarks/storage.py), and how they run on the store: the
fragment executor, then the query service's merge and finalize."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from benchmarks.storage_events import DAYS, START_US
from benchmarks.storage_store import CACHE_BYTES, DATASET, PARTITIONS, peak_rss_mb

WARM_RUNS = 5
PAIRED_RUNS = 9
"""Runs of each PAIRS query, alternating with its counterpart's."""


@dataclass(frozen=True)
class Query:
    label: str
    sql: str
    """Flakehouse SQL, planned by the query service's planner."""
    duck: str = ""
    """DuckDB SQL when it differs."""
    ordered: int = 0
    """Compare only the first `ordered` columns, in order (ORDER BY with ties)."""
    rel: float = 0.0
    """Relative tolerance of numbers, for the sketch-based aggregates (else float rounding)."""


_HOUR, _DAY = 3_600_000_000, 86_400_000_000
_LAST_2D = START_US + (DAYS - 2) * _DAY

QUERIES = [
    Query("count by status", "SELECT status, count(*) FROM bench GROUP BY status"),
    Query(
        "failed by suite",
        "SELECT suite, count(*) FROM bench WHERE status = 'failed' GROUP BY suite",
    ),
    Query(
        "count/avg/max by suite",
        "SELECT suite, count(*), avg(duration), max(duration) FROM bench GROUP BY suite",
    ),
    Query(
        "count by suite, status",
        "SELECT suite, status, count(*) FROM bench GROUP BY suite, status",
    ),
    Query(
        "time_bucket 1h",
        "SELECT time_bucket(timestamp, '1h'), count(*) FROM bench GROUP BY 1",
        f'SELECT "timestamp" // {_HOUR} * {_HOUR}, count(*) FROM bench GROUP BY 1',
    ),
    Query(
        "time_bucket 1d",
        "SELECT time_bucket(timestamp, '1d'), count(*) FROM bench GROUP BY 1",
        f'SELECT "timestamp" // {_DAY} * {_DAY}, count(*) FROM bench GROUP BY 1',
    ),
    Query(
        "last 2 days by status",
        "SELECT status, count(*) FROM bench WHERE timestamp >= '2026-01-29' GROUP BY status",
        f'SELECT status, count(*) FROM bench WHERE "timestamp" >= {_LAST_2D} GROUP BY status',
    ),
    Query(
        "prop.os = windows by suite",
        """SELECT suite, count(*) FROM bench WHERE "prop.os" = 'windows' GROUP BY suite""",
    ),
    Query(
        "duration > 10 by suite",
        "SELECT suite, count(*) FROM bench WHERE duration > 10 GROUP BY suite",
    ),
    Query(
        "duration > 100 (rare)",
        "SELECT suite, name, duration FROM bench WHERE duration > 100",
    ),
    Query(
        "name LIKE by status",
        "SELECT status, count(*) FROM bench WHERE name LIKE '%timeout%' GROUP BY status",
    ),
    Query(
        "failed by name (40k keys)",
        "SELECT name, count(*) FROM bench WHERE status = 'failed' GROUP BY name",
    ),
    Query(
        "top 100 by duration",
        "SELECT duration, suite, name FROM bench ORDER BY duration DESC LIMIT 100",
        "SELECT duration, suite, name FROM bench ORDER BY duration DESC NULLS LAST LIMIT 100",
        ordered=1,
    ),
    Query("count(DISTINCT name)", "SELECT count(DISTINCT name) FROM bench", rel=0.02),
    Query(
        "count(DISTINCT name) by suite",
        "SELECT suite, count(DISTINCT name) FROM bench GROUP BY suite",
        rel=0.02,
    ),
    Query(
        "p50/p95/p99 duration by suite",
        "SELECT suite, p50(duration), p95(duration), p99(duration) FROM bench GROUP BY suite",
        "SELECT suite, quantile_cont(duration, 0.5), quantile_cont(duration, 0.95),"
        " quantile_cont(duration, 0.99) FROM bench GROUP BY suite",
        rel=0.01,
    ),
    # Conditional aggregates against the plain ones over the same rows and groups, and GROUP BY
    # an expression of a dictionary-encoded string against GROUP BY the string (PAIRS).
    Query("count by name", "SELECT name, count(*) FROM bench GROUP BY name"),
    Query(
        "count FILTER failed by name",
        "SELECT name, count(*) FILTER (WHERE status = 'failed') FROM bench GROUP BY name",
    ),
    Query("sum(duration) by name", "SELECT name, sum(duration) FROM bench GROUP BY name"),
    Query(
        "sum(duration) FILTER by name",
        "SELECT name, sum(duration) FILTER (WHERE status = 'failed') FROM bench GROUP BY name",
    ),
    Query(
        "count by lower(name)",
        "SELECT lower(name), count(*) FROM bench GROUP BY 1",
    ),
    Query("count by classname", "SELECT classname, count(*) FROM bench GROUP BY classname"),
    Query(
        "count by lower(classname)",
        "SELECT lower(classname), count(*) FROM bench GROUP BY 1",
    ),
]

PAIRS = [
    ("count FILTER failed by name", "count by name", 1.5),
    ("sum(duration) FILTER by name", "sum(duration) by name", 1.5),
    ("count by lower(name)", "count by name", 1.2),
    ("count by lower(classname)", "count by classname", 1.2),
]
"""(query, the query it is measured against, the most its storage time may be as a multiple).
Names are in lower case already (lower() changes none); class names are not."""


def _flakehouse(store: Any, query: Query) -> tuple[float, float, list[tuple[Any, ...]] | None, Any]:
    """One run as the service does it: plan, views of every partition, execute, merge, finalize.
    Returns (seconds in the storage node: views and fragment.execute; seconds in all, planning
    and the query service's merge and finalize included; the answer's rows, or None when the
    query service cannot finalize it yet; the scan stats)."""
    from flakehouse.events.values import from_value
    from flakehouse.query.answer import finalize
    from flakehouse.query.merge import merge_partials
    from flakehouse.query.sql import plan_query
    from flakehouse.storage import fragment

    t0 = time.perf_counter()
    planned = plan_query(query.sql, now_us=0)
    plan = planned.plan
    t1 = time.perf_counter()
    fields = fragment.fields_needed(plan)
    views = [v for p in range(PARTITIONS) for v in store.segments(DATASET, p, fields)]
    partial = fragment.execute(plan, views)
    t2 = time.perf_counter()
    _, answer = finalize(planned, merge_partials(planned, [partial]))
    t3 = time.perf_counter()
    rows = [tuple(from_value(x) for x in r.values) for r in answer]
    return t2 - t1, t3 - t0, rows, partial.stats


def run_storage(path: str) -> dict[str, Any]:
    """Every query on the store at `path`: a cold run on a freshly opened store, then warm runs
    (runs in its own process, whose peak RSS is the storage side's)."""
    from flakehouse.storage.fragment import UnsupportedPlan
    from flakehouse.storage.store import SegmentStore

    out: dict[str, Any] = {}
    for query in QUERIES:
        store = SegmentStore(path, cache_bytes=CACHE_BYTES)
        try:
            cold, _, rows, stats = _flakehouse(store, query)
            runs = [_flakehouse(store, query) for _ in range(WARM_RUNS)]
        except UnsupportedPlan as exc:
            out[query.label] = {"error": str(exc)}
            continue
        finally:
            store.close()
        out[query.label] = {
            "cold": cold,
            "warm": statistics.median(r[0] for r in runs),
            "total": statistics.median(r[1] for r in runs),
            "rows": rows,
            "scanned": stats.segments_scanned,
            "skipped": stats.segments_skipped,
        }
    out["pairs"] = _paired(path)
    out["peak_mb"] = peak_rss_mb()
    return out


def _paired(path: str) -> dict[str, float]:
    """The storage time of each PAIRS query over its counterpart's: the median of the ratios of
    runs made one after the other, so that a machine whose load changes during the benchmark
    slows both alike (medians of runs taken seconds apart can differ by more than the
    difference measured)."""
    from flakehouse.storage.store import SegmentStore

    by_label = {q.label: q for q in QUERIES}
    out: dict[str, float] = {}
    store = SegmentStore(path, cache_bytes=CACHE_BYTES)
    try:
        for label, base, _ in PAIRS:
            query, counterpart = by_label[label], by_label[base]
            _flakehouse(store, query)  # warm both: their computed dictionaries too
            _flakehouse(store, counterpart)
            ratios = []
            for _ in range(PAIRED_RUNS):
                ratios.append(_flakehouse(store, query)[0] / _flakehouse(store, counterpart)[0])
            out[label] = statistics.median(ratios)
    finally:
        store.close()
    return out
