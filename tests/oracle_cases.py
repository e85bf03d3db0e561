"""The battery of tests/test_query_oracle.py: each SQL case as we ask it and as DuckDB answers it,
for a given world of events (the cases over the mixed-type field are in tests/oracle_mixed.py,
those of conditional aggregates and stddev in tests/oracle_conditional.py, those over scalar
expressions and time zones in tests/oracle_scalars.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.oracle_conditional import conditional_cases
from tests.oracle_mixed import mixed_field_cases
from tests.oracle_scalars import scalar_cases
from tests.oracle_world import DAY_US, HOUR_US, RELATIVE_DAYS, Case, World


def battery(world: World) -> list[Case]:
    """The queries, ours and DuckDB's, for the world's events."""
    now_us = world.now_us
    times = sorted(int(e["timestamp"]) for e in world.events) or [0]
    # Bounds equal to stored timestamps: `>` and `<=` must be exact to the microsecond.
    t_lo, t_hi = times[len(times) // 3], times[2 * len(times) // 3]
    cut = now_us - RELATIVE_DAYS * DAY_US
    day = datetime.fromtimestamp(now_us // 1_000_000, UTC).date()
    first, last = day - timedelta(days=6), day - timedelta(days=4)
    first_us = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) * 10**6
    last_us = int(datetime(last.year, last.month, last.day, 12, tzinfo=UTC).timestamp()) * 10**6
    return [
        Case("count(*)", "SELECT count(*) FROM ci", "SELECT count(*) FROM events"),
        Case(
            "count(field) on sparse fields",
            'SELECT count(duration), count("prop.os"), count("prop.browser"), count(retries), '
            'count(flaky), count("commit"), count(1) FROM ci',
            'SELECT count(duration), count("prop.os"), count("prop.browser"), count(retries), '
            'count(flaky), count("commit"), count(1) FROM events',
        ),
        Case(
            "group by status, default order",
            "SELECT status, count(*) FROM ci GROUP BY status",
            "SELECT status, count(*) FROM events GROUP BY status ORDER BY status",
            ordered=True,
        ),
        Case(
            "float aggregates by suite",
            "SELECT suite, count(*), sum(duration), avg(duration), min(duration), max(duration) "
            "FROM ci GROUP BY suite",
            "SELECT suite, count(*), sum(duration), avg(duration), min(duration), max(duration) "
            "FROM events GROUP BY suite",
        ),
        Case(
            "int aggregates",
            "SELECT sum(retries), avg(retries), min(retries), max(retries) FROM ci",
            "SELECT sum(retries), avg(retries), min(retries), max(retries) FROM events",
        ),
        Case(
            "count distinct, small (exact)",
            'SELECT count(DISTINCT name), count(DISTINCT classname), count(DISTINCT "commit"), '
            "count(DISTINCT flaky) FROM ci",
            'SELECT count(DISTINCT name), count(DISTINCT classname), count(DISTINCT "commit"), '
            "count(DISTINCT flaky) FROM events",
        ),
        Case(
            "count distinct by suite",
            "SELECT suite, count(DISTINCT name), count(DISTINCT hostname) FROM ci GROUP BY suite",
            "SELECT suite, count(DISTINCT name), count(DISTINCT hostname) FROM events "
            "GROUP BY suite",
        ),
        Case(
            "count distinct, HyperLogLog",
            "SELECT count(DISTINCT run_id) FROM ci",
            "SELECT count(DISTINCT run_id) FROM events",
            sketch={0: "distinct"},
        ),
        Case(
            "count distinct by branch, both regimes",
            "SELECT branch, count(DISTINCT run_id), count(*) FROM ci GROUP BY branch",
            "SELECT branch, count(DISTINCT run_id), count(*) FROM events GROUP BY branch",
            sketch={1: "distinct"},
        ),
        Case(
            "percentiles",
            "SELECT p50(duration), p90(duration), p95(duration), p99(duration), "
            "percentile(duration, 0.25) FROM ci",
            "SELECT quantile_cont(duration, 0.5), quantile_cont(duration, 0.9), "
            "quantile_cont(duration, 0.95), quantile_cont(duration, 0.99), "
            "quantile_cont(duration, 0.25) FROM events",
            sketch={0: "quantile", 1: "quantile", 2: "quantile", 3: "quantile", 4: "quantile"},
        ),
        Case(
            "percentiles by suite with a filter",
            "SELECT suite, p95(duration), percentile(duration, 0.75), count(*) FROM ci "
            "WHERE status = 'passed' GROUP BY suite",
            "SELECT suite, quantile_cont(duration, 0.95), quantile_cont(duration, 0.75), "
            "count(*) FROM events WHERE status = 'passed' GROUP BY suite",
            sketch={1: "quantile", 2: "quantile"},
        ),
        Case(
            "other engines' spellings of percentiles and count distinct",
            "SELECT suite, median(duration), quantile_cont(duration, 0.9), "
            "approx_quantile(duration, 0.95), approx_count_distinct(name) FROM ci GROUP BY suite",
            "SELECT suite, median(duration), quantile_cont(duration, 0.9), "
            "quantile_cont(duration, 0.95), count(DISTINCT name) FROM events GROUP BY suite",
            sketch={1: "quantile", 2: "quantile", 3: "quantile", 4: "distinct"},
        ),
        Case(
            "percentile of an int field",
            "SELECT p50(retries), p99(retries) FROM ci WHERE retries > 0",
            "SELECT quantile_cont(retries, 0.5), quantile_cont(retries, 0.99) FROM events "
            "WHERE retries > 0",
            sketch={0: "quantile", 1: "quantile"},
        ),
        Case(
            "time_bucket 1d, default order",
            "SELECT time_bucket(timestamp, '1d') AS day, count(*), avg(duration) FROM ci "
            "GROUP BY day",
            "SELECT timestamp - timestamp % 86400000000 AS day, count(*), avg(duration) "
            "FROM events GROUP BY day ORDER BY day",
            ordered=True,
            times=(0,),
        ),
        Case(
            "time_bucket 6h, DuckDB argument order, with status",
            "SELECT time_bucket(interval '6 hours', timestamp) AS b, status, count(*) FROM ci "
            "WHERE status != 'passed' GROUP BY b, status",
            "SELECT timestamp - timestamp % 21600000000 AS b, status, count(*) FROM events "
            "WHERE status != 'passed' GROUP BY b, status",
            times=(0,),
        ),
        Case(
            "string =",
            "SELECT classname, count(*) FROM ci WHERE status = 'failed' GROUP BY classname",
            "SELECT classname, count(*) FROM events WHERE status = 'failed' GROUP BY classname",
        ),
        Case(
            "string != on a sparse field",
            "SELECT branch, count(*) FROM ci WHERE branch != 'main' GROUP BY branch",
            "SELECT branch, count(*) FROM events WHERE branch != 'main' GROUP BY branch",
        ),
        Case(
            "IN",
            "SELECT branch, status, count(*) FROM ci WHERE branch IN ('main', 'release/1.x') "
            "GROUP BY branch, status",
            "SELECT branch, status, count(*) FROM events WHERE branch IN ('main', 'release/1.x') "
            "GROUP BY branch, status",
        ),
        Case(
            "NOT IN",
            "SELECT suite, count(*) FROM ci WHERE status NOT IN ('passed', 'skipped') "
            "GROUP BY suite",
            "SELECT suite, count(*) FROM events WHERE status NOT IN ('passed', 'skipped') "
            "GROUP BY suite",
        ),
        Case(
            "LIKE prefix",
            "SELECT name, count(*) FROM ci WHERE name LIKE 'test_login%' GROUP BY name",
            "SELECT name, count(*) FROM events WHERE name LIKE 'test_login%' GROUP BY name",
        ),
        Case(
            "NOT LIKE and _",
            "SELECT count(*) FROM ci WHERE classname NOT LIKE '%.ui.%' AND name LIKE 'test_load__'",
            "SELECT count(*) FROM events WHERE classname NOT LIKE '%.ui.%' "
            "AND name LIKE 'test_load__'",
        ),
        Case(
            "int >=",
            "SELECT status, count(*) FROM ci WHERE retries >= 1 GROUP BY status",
            "SELECT status, count(*) FROM events WHERE retries >= 1 GROUP BY status",
        ),
        Case(
            "int against float literals",
            "SELECT count(*) FROM ci WHERE retries = 0.0 OR retries > 1.5",
            "SELECT count(*) FROM events WHERE retries = 0.0 OR retries > 1.5",
        ),
        Case(
            "float range",
            "SELECT suite, count(*) FROM ci WHERE duration > 2.5 AND duration <= 10 GROUP BY suite",
            "SELECT suite, count(*) FROM events WHERE duration > 2.5 AND duration <= 10 "
            "GROUP BY suite",
        ),
        Case(
            "BETWEEN",
            "SELECT count(*), sum(duration) FROM ci WHERE duration BETWEEN 0.1 AND 0.2",
            "SELECT count(*), sum(duration) FROM events WHERE duration BETWEEN 0.1 AND 0.2",
        ),
        Case(
            "bare bool",
            "SELECT count(*) FROM ci WHERE flaky",
            "SELECT count(*) FROM events WHERE flaky",
        ),
        Case(
            "bool = FALSE",
            "SELECT count(*) FROM ci WHERE flaky = FALSE",
            "SELECT count(*) FROM events WHERE flaky = FALSE",
        ),
        Case(
            "NOT bool (absent is unknown)",
            "SELECT count(*) FROM ci WHERE NOT flaky",
            "SELECT count(*) FROM events WHERE NOT flaky",
        ),
        Case(
            "group by bool, default order",
            "SELECT flaky, count(*) FROM ci GROUP BY flaky",
            "SELECT flaky, count(*) FROM events GROUP BY flaky ORDER BY flaky NULLS LAST",
            ordered=True,
        ),
        Case(
            "IS NULL on a sparse field",
            'SELECT suite, count(*) FROM ci WHERE "prop.os" IS NULL GROUP BY suite',
            'SELECT suite, count(*) FROM events WHERE "prop.os" IS NULL GROUP BY suite',
        ),
        Case(
            "IS NOT NULL on a sparse field",
            'SELECT "prop.browser", count(*) FROM ci WHERE "prop.browser" IS NOT NULL '
            'GROUP BY "prop.browser"',
            'SELECT "prop.browser", count(*) FROM events WHERE "prop.browser" IS NOT NULL '
            'GROUP BY "prop.browser"',
        ),
        Case(
            "AND / OR / NOT",
            "SELECT count(*) FROM ci WHERE (status = 'failed' OR status = 'error') "
            "AND NOT (branch = 'main')",
            "SELECT count(*) FROM events WHERE (status = 'failed' OR status = 'error') "
            "AND NOT (branch = 'main')",
        ),
        Case(
            "NOT over OR of sparse fields (three-valued logic)",
            "SELECT count(*) FROM ci WHERE NOT (\"prop.os\" = 'linux' OR retries > 0)",
            "SELECT count(*) FROM events WHERE NOT (\"prop.os\" = 'linux' OR retries > 0)",
        ),
        Case(
            "dotted fields unquoted, null group keys, default order",
            "SELECT prop.os, prop.browser, count(*) FROM ci GROUP BY prop.os, prop.browser",
            'SELECT "prop.os", "prop.browser", count(*) FROM events '
            'GROUP BY "prop.os", "prop.browser" ORDER BY "prop.os", "prop.browser"',
            ordered=True,
        ),
        Case(
            "relative time",
            f"SELECT status, count(*) FROM ci WHERE timestamp >= now() - interval "
            f"'{RELATIVE_DAYS} days' GROUP BY status",
            f"SELECT status, count(*) FROM events WHERE timestamp >= {cut} GROUP BY status",
        ),
        Case(
            "absolute time range",
            f"SELECT count(*), count(DISTINCT \"commit\") FROM ci WHERE timestamp >= '{first}' "
            f"AND timestamp < '{last}T12:00:00Z'",
            f'SELECT count(*), count(DISTINCT "commit") FROM events WHERE timestamp >= '
            f"{first_us} AND timestamp < {last_us}",
        ),
        Case(
            "HAVING",
            "SELECT classname, count(*) AS fails FROM ci WHERE status IN ('failed', 'error') "
            "GROUP BY classname HAVING count(*) >= 5",
            "SELECT classname, count(*) AS fails FROM events WHERE status IN ('failed', 'error') "
            "GROUP BY classname HAVING count(*) >= 5",
        ),
        Case(
            "ORDER BY count DESC LIMIT (ties by key)",
            "SELECT name, count(*) AS runs FROM ci GROUP BY name ORDER BY runs DESC LIMIT 7",
            "SELECT name, count(*) AS runs FROM events GROUP BY name "
            "ORDER BY runs DESC, name LIMIT 7",
            ordered=True,
        ),
        Case(
            "HAVING on an unselected aggregate, ORDER BY avg LIMIT",
            "SELECT classname, name, avg(duration) AS mean FROM ci GROUP BY classname, name "
            "HAVING count(duration) > 40 ORDER BY mean DESC LIMIT 10",
            "SELECT classname, name, avg(duration) AS mean FROM events GROUP BY classname, name "
            "HAVING count(duration) > 40 ORDER BY mean DESC LIMIT 10",
            ordered=True,
        ),
        Case(
            "expressions over aggregates",
            "SELECT suite, sum(duration) / count(*) AS per_run, max(duration) - min(duration) "
            "AS spread FROM ci GROUP BY suite ORDER BY spread DESC",
            "SELECT suite, sum(duration) / count(*) AS per_run, max(duration) - min(duration) "
            "AS spread FROM events GROUP BY suite ORDER BY spread DESC",
            ordered=True,
        ),
        Case(
            "GROUP BY position and alias",
            "SELECT status AS s, branch, count(*) FROM ci GROUP BY 1, branch",
            "SELECT status AS s, branch, count(*) FROM events GROUP BY 1, branch",
        ),
        Case(
            "raw rows ORDER BY float DESC LIMIT",
            "SELECT name, duration FROM ci ORDER BY duration DESC LIMIT 10",
            "SELECT name, duration FROM events ORDER BY duration DESC LIMIT 10",
            ordered=True,
        ),
        Case(
            "raw rows filtered, ORDER BY timestamp DESC",
            "SELECT timestamp, classname, name, status FROM ci WHERE status = 'error' "
            "ORDER BY timestamp DESC LIMIT 25",
            "SELECT timestamp, classname, name, status FROM events WHERE status = 'error' "
            "ORDER BY timestamp DESC LIMIT 25",
            ordered=True,
            times=(0,),
        ),
        Case(
            "raw rows LIMIT OFFSET on a dotted field",
            "SELECT timestamp, name, prop.os FROM ci WHERE prop.os = 'macos' "
            "ORDER BY timestamp LIMIT 10 OFFSET 5",
            'SELECT timestamp, name, "prop.os" FROM events WHERE "prop.os" = \'macos\' '
            "ORDER BY timestamp LIMIT 10 OFFSET 5",
            ordered=True,
            times=(0,),
        ),
        Case(
            "aggregates over no rows",
            "SELECT count(*), sum(duration), min(name), count(DISTINCT name), p50(duration) "
            "FROM ci WHERE status = 'nope'",
            "SELECT count(*), sum(duration), min(name), count(DISTINCT name), "
            "quantile_cont(duration, 0.5) FROM events WHERE status = 'nope'",
        ),
        Case(
            "GROUP BY over no rows",
            "SELECT status, count(*) FROM ci WHERE duration < 0 GROUP BY status",
            "SELECT status, count(*) FROM events WHERE duration < 0 GROUP BY status",
            empty=True,
        ),
        Case(
            "min/max of strings and bools",
            "SELECT min(name), max(classname), min(flaky), max(flaky) FROM ci",
            "SELECT min(name), max(classname), min(flaky), max(flaky) FROM events",
        ),
        Case(
            "ORDER BY an unselected aggregate, LIMIT OFFSET",
            "SELECT classname FROM ci GROUP BY classname ORDER BY max(duration) DESC "
            "LIMIT 5 OFFSET 2",
            "SELECT classname FROM events GROUP BY classname ORDER BY max(duration) DESC, "
            "classname LIMIT 5 OFFSET 2",
            ordered=True,
        ),
        Case(
            "ORDER BY key ASC, count DESC, ties by keys, OFFSET",
            "SELECT status, branch, count(*) AS n FROM ci GROUP BY status, branch "
            "ORDER BY status, n DESC LIMIT 6 OFFSET 2",
            "SELECT status, branch, count(*) AS n FROM events GROUP BY status, branch "
            "ORDER BY status, n DESC, branch LIMIT 6 OFFSET 2",
            ordered=True,
        ),
        Case(
            "HAVING on count distinct",
            "SELECT suite, count(*) FROM ci GROUP BY suite HAVING count(DISTINCT name) > 34",
            "SELECT suite, count(*) FROM events GROUP BY suite HAVING count(DISTINCT name) > 34",
        ),
        Case(
            "time_bucket 1h, ORDER BY bucket DESC LIMIT",
            "SELECT time_bucket(timestamp, '1h') AS h, count(*) AS n FROM ci "
            "WHERE status = 'failed' GROUP BY h ORDER BY h DESC LIMIT 5",
            "SELECT timestamp - timestamp % 3600000000 AS h, count(*) AS n FROM events "
            "WHERE status = 'failed' GROUP BY h ORDER BY h DESC LIMIT 5",
            ordered=True,
            times=(0,),
        ),
        Case(
            "timestamp > and <= an exact stored value",
            f"SELECT count(*), min(timestamp), max(timestamp) FROM ci "
            f"WHERE timestamp > {t_lo} AND timestamp <= {t_hi}",
            f"SELECT count(*), min(timestamp), max(timestamp) FROM events "
            f"WHERE timestamp > {t_lo} AND timestamp <= {t_hi}",
            times=(1, 2),
        ),
        Case(
            "timestamp BETWEEN dates",
            f"SELECT branch, count(*) FROM ci WHERE timestamp BETWEEN '{first}' AND '{last}' "
            "GROUP BY branch",
            f"SELECT branch, count(*) FROM events WHERE timestamp BETWEEN {first_us} AND "
            f"{last_us - 12 * HOUR_US} GROUP BY branch",
        ),
        Case(
            "NOT BETWEEN",
            "SELECT count(*) FROM ci WHERE duration NOT BETWEEN 0.05 AND 5",
            "SELECT count(*) FROM events WHERE duration NOT BETWEEN 0.05 AND 5",
        ),
        Case(
            "NOT LIKE on a sparse field",
            "SELECT count(*) FROM ci WHERE \"prop.browser\" NOT LIKE 'c%'",
            "SELECT count(*) FROM events WHERE \"prop.browser\" NOT LIKE 'c%'",
        ),
        Case(
            "LIKE with literal dots and a middle %",
            "SELECT classname, count(*) FROM ci WHERE classname LIKE 'com.acme.%.Auth%' "
            "GROUP BY classname",
            "SELECT classname, count(*) FROM events WHERE classname LIKE 'com.acme.%.Auth%' "
            "GROUP BY classname",
        ),
        Case(
            "bool !=",
            "SELECT count(*) FROM ci WHERE flaky != TRUE",
            "SELECT count(*) FROM events WHERE flaky != TRUE",
        ),
        Case(
            "quoted dataset and table alias",
            "SELECT c.status, count(*) FROM \"ci\" AS c WHERE c.suite = 'db' GROUP BY c.status",
            "SELECT c.status, count(*) FROM events AS c WHERE c.suite = 'db' GROUP BY c.status",
        ),
        Case(
            "count distinct of ints, HyperLogLog and exact",
            "SELECT count(DISTINCT timestamp), count(DISTINCT line) FROM ci",
            "SELECT count(DISTINCT timestamp), count(DISTINCT line) FROM events",
            sketch={0: "distinct", 1: "distinct"},
        ),
        Case(
            "int sum and avg by group",
            "SELECT suite, sum(line), avg(line), max(line) FROM ci GROUP BY suite",
            "SELECT suite, sum(line), avg(line), max(line) FROM events GROUP BY suite",
        ),
        Case(
            "raw ORDER BY a sparse field DESC: nulls last",
            "SELECT timestamp, \"prop.browser\" FROM ci WHERE suite = 'ui' "
            "AND name LIKE 'test_l%' ORDER BY \"prop.browser\" DESC, timestamp LIMIT 3000",
            "SELECT timestamp, \"prop.browser\" FROM events WHERE suite = 'ui' "
            "AND name LIKE 'test_l%' ORDER BY \"prop.browser\" DESC NULLS LAST, timestamp",
            ordered=True,
            times=(0,),
        ),
        Case(
            "raw ORDER BY unselected bool and float fields",
            "SELECT name, status FROM ci WHERE retries >= 2 ORDER BY flaky DESC, duration DESC "
            "LIMIT 50",
            "SELECT name, status FROM events WHERE retries >= 2 "
            "ORDER BY flaky DESC NULLS LAST, duration DESC NULLS LAST LIMIT 50",
            ordered=True,
        ),
        Case(
            "thousands of groups",
            'SELECT classname, name, "commit", count(*), max(duration) FROM ci '
            'GROUP BY classname, name, "commit"',
            'SELECT classname, name, "commit", count(*), max(duration) FROM events '
            'GROUP BY classname, name, "commit"',
        ),
        Case(
            "percentiles of hundreds of small groups",
            "SELECT classname, name, p95(duration), p50(duration) FROM ci GROUP BY classname, name",
            "SELECT classname, name, quantile_cont(duration, 0.95), "
            "quantile_cont(duration, 0.5) FROM events GROUP BY classname, name",
            sketch={2: "quantile", 3: "quantile"},
        ),
        Case(
            "percentile(f, 1) is the maximum",
            "SELECT percentile(duration, 1), max(duration) FROM ci",
            "SELECT quantile_cont(duration, 1.0), max(duration) FROM events",
            sketch={0: "quantile"},
        ),
        *mixed_field_cases(world.twin_build),
        *conditional_cases(now_us),
        *scalar_cases(world),
    ]


def cases_with_marks() -> list[Any]:
    # The battery's names and bugs do not depend on when the events were made.
    cases = battery(World([], [], set(), set(), 0, 0))
    return [
        pytest.param(
            case.name,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [],
        )
        for case in cases
    ]
