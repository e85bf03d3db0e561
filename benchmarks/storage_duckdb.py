"""The storage benchmark's reference (benchmarks/storage.py): the same events and queries on
DuckDB, and the comparison of its answers with Flakehouse's."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.storage_events import STRING_FIELDS, Events
from benchmarks.storage_queries import WARM_RUNS, Query


def duckdb_table(events: Events) -> Any:
    """The events as table `bench`: one column per field, NULL where absent."""
    import duckdb

    con = duckdb.connect()
    source: dict[str, npt.NDArray[Any]] = {
        "ts": events.timestamps,
        "duration": events.duration,
        "retries": events.retries,
        "has_retries": events.has_retries,
    }
    selects = [
        'ts AS "timestamp"',
        "CASE WHEN isnan(duration) THEN NULL ELSE duration END AS duration",
    ]
    selects.append("CASE WHEN has_retries THEN retries END AS retries")
    joins = []
    for i, field in enumerate(STRING_FIELDS):
        source[f"c{i}"] = events.codes[field]
        dictionary = np.empty(len(events.dictionaries[field]), dtype=object)
        dictionary[:] = events.dictionaries[field]
        con.register(f"d{i}", {"code": np.arange(len(dictionary), dtype=np.int32), "s": dictionary})
        selects.append(f'd{i}.s AS "{field}"')
        joins.append(f"LEFT JOIN d{i} ON src.c{i} = d{i}.code")
    con.register("src", source)
    # In arrival order, like the segments: DuckDB's zone maps see the time order too.
    con.execute(
        f"CREATE TABLE bench AS SELECT {', '.join(selects)} FROM src {' '.join(joins)} ORDER BY ts"
    )
    con.unregister("src")
    return con


def run_duckdb(con: Any, query: Query) -> tuple[float, float, list[tuple[Any, ...]]]:
    sql = query.duck or query.sql
    t0 = time.perf_counter()
    rows = con.execute(sql).fetchall()
    cold = time.perf_counter() - t0
    times = []
    for _ in range(WARM_RUNS):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    return cold, statistics.median(times), [tuple(r) for r in rows]


def same_rows(
    a: list[tuple[Any, ...]], b: list[tuple[Any, ...]], ordered: int, rel: float = 0.0
) -> bool:
    if ordered:
        return [r[:ordered] for r in a] == [r[:ordered] for r in b]
    if len(a) != len(b):
        return False

    def key(row: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
        # Rows equal but for a float (raw rows) must pair up too: floats take part, by value.
        return tuple(
            (0, x if x == x else math.inf) if isinstance(x, float) else (1, repr(x)) for x in row
        )

    for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        for p, q in zip(x, y, strict=True):
            if rel and isinstance(p, int | float) and isinstance(q, int | float):
                # Within the sketches' bound (plus float rounding at the bound).
                if abs(p - q) > rel * (1 + 1e-9) * abs(q):
                    return False
            elif isinstance(p, float) or isinstance(q, float):
                if not math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-12):
                    return False
            elif p != q:
                return False
    return True


def duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)
