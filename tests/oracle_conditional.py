"""The oracle battery's cases for conditional aggregates (`FILTER (WHERE …)`, count_if) and the
standard deviations, which DuckDB spells as we do."""

from __future__ import annotations

from tests.oracle_world import DAY_US, RELATIVE_DAYS, Case


def conditional_cases(now_us: int) -> list[Case]:
    """The cases; `now_us` is when the world's events were made (now() in relative times)."""
    cut = now_us - RELATIVE_DAYS * DAY_US
    return [
        Case(
            "failure rate: FILTER and count(*) in one scan",
            "SELECT name, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) "
            "AS failure_rate FROM ci GROUP BY name ORDER BY failure_rate DESC",
            "SELECT name, count(*) FILTER (WHERE status = 'failed') * 1.0 / count(*) "
            "AS failure_rate FROM events GROUP BY name ORDER BY failure_rate DESC, name",
            ordered=True,
        ),
        Case(
            "count_if, countif, on a bool and a sparse field",
            "SELECT suite, count_if(status = 'failed'), count_if(flaky), countif(retries > 0), "
            "count_if(NOT (\"prop.os\" = 'linux')) FROM ci GROUP BY suite",
            "SELECT suite, count_if(status = 'failed'), count_if(flaky), countif(retries > 0), "
            "count_if(NOT (\"prop.os\" = 'linux')) FROM events GROUP BY suite",
        ),
        Case(
            "FILTER on count, sum, avg, min and max",
            "SELECT suite, count(duration) FILTER (WHERE branch = 'main'), "
            "sum(duration) FILTER (WHERE status = 'passed'), "
            "avg(duration) FILTER (WHERE status IN ('failed', 'error')), "
            "min(duration) FILTER (WHERE \"prop.os\" = 'linux'), "
            "max(retries) FILTER (WHERE NOT flaky), max(name) FILTER (WHERE name LIKE 'test_l%') "
            "FROM ci GROUP BY suite",
            "SELECT suite, count(duration) FILTER (WHERE branch = 'main'), "
            "sum(duration) FILTER (WHERE status = 'passed'), "
            "avg(duration) FILTER (WHERE status IN ('failed', 'error')), "
            "min(duration) FILTER (WHERE \"prop.os\" = 'linux'), "
            "max(retries) FILTER (WHERE NOT flaky), max(name) FILTER (WHERE name LIKE 'test_l%') "
            "FROM events GROUP BY suite",
        ),
        Case(
            "FILTER on count distinct, and no row passing",
            "SELECT branch, count(DISTINCT name) FILTER (WHERE status IN ('failed', 'error')), "
            "count(DISTINCT \"commit\") FILTER (WHERE suite = 'ui'), "
            "sum(retries) FILTER (WHERE suite = 'nope'), count(*) FROM ci GROUP BY branch",
            "SELECT branch, count(DISTINCT name) FILTER (WHERE status IN ('failed', 'error')), "
            "count(DISTINCT \"commit\") FILTER (WHERE suite = 'ui'), "
            "sum(retries) FILTER (WHERE suite = 'nope'), count(*) FROM events GROUP BY branch",
        ),
        Case(
            "FILTER on percentiles",
            "SELECT suite, p95(duration) FILTER (WHERE status = 'passed'), "
            "percentile(duration, 0.5) FILTER (WHERE \"prop.os\" = 'macos'), p95(duration) "
            "FROM ci GROUP BY suite",
            "SELECT suite, quantile_cont(duration, 0.95) FILTER (WHERE status = 'passed'), "
            "quantile_cont(duration, 0.5) FILTER (WHERE \"prop.os\" = 'macos'), "
            "quantile_cont(duration, 0.95) FROM events GROUP BY suite",
            sketch={1: "quantile", 2: "quantile", 3: "quantile"},
        ),
        Case(
            "FILTER on timestamp is the aggregate's, not the time range",
            "SELECT status, count(*) FILTER (WHERE timestamp >= now() - interval "
            f"'{RELATIVE_DAYS} days') AS recent, count(*), min(timestamp) FILTER (WHERE "
            f"timestamp >= now() - interval '{RELATIVE_DAYS} days') FROM ci GROUP BY status",
            f"SELECT status, count(*) FILTER (WHERE timestamp >= {cut}) AS recent, count(*), "
            f"min(timestamp) FILTER (WHERE timestamp >= {cut}) FROM events GROUP BY status",
            times=(3,),
        ),
        Case(
            "conditional aggregates without GROUP BY, HAVING and ORDER BY on them",
            "SELECT classname FROM ci GROUP BY classname "
            "HAVING count_if(status IN ('failed', 'error')) >= 3 "
            "ORDER BY avg(duration) FILTER (WHERE status = 'passed') DESC LIMIT 8",
            "SELECT classname FROM events GROUP BY classname "
            "HAVING count_if(status IN ('failed', 'error')) >= 3 "
            "ORDER BY avg(duration) FILTER (WHERE status = 'passed') DESC, classname LIMIT 8",
            ordered=True,
        ),
        Case(
            "conditional aggregates over all rows",
            "SELECT count_if(status = 'error'), sum(retries) FILTER (WHERE status = 'failed'), "
            "max(duration) FILTER (WHERE suite = 'nope'), count(*) FILTER (WHERE flaky IS NULL) "
            "FROM ci",
            "SELECT count_if(status = 'error'), sum(retries) FILTER (WHERE status = 'failed'), "
            "max(duration) FILTER (WHERE suite = 'nope'), count(*) FILTER (WHERE flaky IS NULL) "
            "FROM events",
        ),
        Case(
            "stddev by suite, floats and ints",
            "SELECT suite, stddev(duration), stddev_samp(retries), stddev_pop(duration), "
            "stddev_pop(line) FROM ci GROUP BY suite",
            "SELECT suite, stddev(duration), stddev_samp(retries), stddev_pop(duration), "
            "stddev_pop(line) FROM events GROUP BY suite",
        ),
        Case(
            "stddev of everything, and of timestamps",
            "SELECT stddev_samp(duration), stddev_pop(duration), stddev_samp(timestamp) FROM ci "
            "WHERE status = 'passed'",
            "SELECT stddev_samp(duration), stddev_pop(duration), stddev_samp(timestamp) "
            "FROM events WHERE status = 'passed'",
        ),
        Case(
            "stddev with FILTER: NULL below 2 values (sample), 1 (population)",
            "SELECT \"commit\", suite, stddev_samp(duration) FILTER (WHERE status = 'failed'), "
            "stddev_pop(duration) FILTER (WHERE status = 'failed'), count_if(status = 'failed') "
            'FROM ci GROUP BY "commit", suite',
            "SELECT \"commit\", suite, stddev_samp(duration) FILTER (WHERE status = 'failed'), "
            "stddev_pop(duration) FILTER (WHERE status = 'failed'), count_if(status = 'failed') "
            'FROM events GROUP BY "commit", suite',
        ),
        Case(
            "ORDER BY stddev LIMIT, HAVING on a count",
            "SELECT classname, name, stddev_pop(duration) AS spread FROM ci "
            "GROUP BY classname, name HAVING count(duration) > 40 ORDER BY spread DESC LIMIT 10",
            "SELECT classname, name, stddev_pop(duration) AS spread FROM events "
            "GROUP BY classname, name HAVING count(duration) > 40 ORDER BY spread DESC LIMIT 10",
            ordered=True,
        ),
        Case(
            "stddev and count_if of a mixed field: numbers only",
            "SELECT branch, stddev_pop(build), stddev_samp(build), count_if(build = 123), "
            "count_if(build = '123') FROM ci GROUP BY branch",
            "SELECT branch, stddev_pop(build_int), stddev_samp(build_int), "
            "count_if(build_int = 123), count_if(build_str = '123') FROM events GROUP BY branch",
        ),
    ]
