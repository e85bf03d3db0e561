"""The oracle battery's cases over scalar expressions (computed columns): string functions,
arithmetic, CASE, coalesce, regexp_matches, ILIKE, SELECT DISTINCT, expressions in WHERE, raw
rows and GROUP BY, date_trunc and calendar and zoned time buckets across daylight-saving
changes. DuckDB's `timestamp` is a BIGINT of microseconds: make_timestamp() (UTC) or
make_timestamptz() (in the case's TimeZone) makes it a time, epoch_us() an int again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.oracle_world import HOUR_US, Case, World, dst_changes


def _text(micros: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).isoformat()


def scalar_cases(world: World) -> list[Case]:
    day = datetime.fromtimestamp(world.now_us // 1_000_000, UTC).date() - timedelta(days=5)
    # The last time New York's clocks changed (went back, in the autumn: 01:00-02:00 twice).
    [ny_change, *_] = dst_changes("America/New_York", world.now_us) or [0]
    start, end = ny_change - 6 * HOUR_US, ny_change + 6 * HOUR_US
    around = f"timestamp BETWEEN '{_text(start)}' AND '{_text(end)}'"
    around_duck = f"timestamp BETWEEN {start} AND {end}"
    # The Paris day of its last clock change (25 hours long in the autumn), as a date alone.
    [paris_change, *_] = dst_changes("Europe/Paris", world.now_us) or [0]
    paris_day = (
        datetime.fromtimestamp(paris_change // 1_000_000, ZoneInfo("Europe/Paris")).date()
    ).isoformat()
    return [
        Case(
            "scalar: lower, upper, length as group keys and aggregate arguments",
            "SELECT lower(classname) AS c, upper(status) AS s, count(*), max(length(name)),"
            " min(length(message)) FROM ci GROUP BY 1, 2",
            "SELECT lower(classname) AS c, upper(status) AS s, count(*), max(length(name)),"
            " min(length(message)) FROM events GROUP BY 1, 2",
        ),
        Case(
            "scalar: GROUP BY lower(f) matched in SELECT, HAVING and ORDER BY",
            "SELECT LOWER(hostname), count(*) AS n FROM ci GROUP BY lower(hostname)"
            " HAVING lower(hostname) != 'ci-3' ORDER BY lower(ci.hostname) DESC",
            "SELECT lower(hostname), count(*) AS n FROM events GROUP BY lower(hostname)"
            " HAVING lower(hostname) != 'ci-3' ORDER BY lower(hostname) DESC",
            ordered=True,
        ),
        Case(
            "scalar: substr and split_part, negative and zero positions",
            "SELECT substr(name, 6, 4) AS w, substr(name, -3) AS tail, substring(run_id, 0, 4),"
            " split_part(classname, '.', 3) AS area, split_part(classname, '.', -1),"
            " split_part(classname, '.', 9), count(*) FROM ci GROUP BY 1, 2, 3, 4, 5, 6",
            "SELECT substr(name, 6, 4) AS w, substr(name, -3) AS tail, substring(run_id, 0, 4),"
            " split_part(classname, '.', 3) AS area, split_part(classname, '.', -1),"
            " split_part(classname, '.', 9), count(*) FROM events GROUP BY 1, 2, 3, 4, 5, 6",
        ),
        Case(
            "scalar: coalesce over sparse fields",
            'SELECT coalesce("prop.browser", "prop.os", \'none\') AS p, sum(coalesce(retries, 0)),'
            " avg(coalesce(duration, 0.0)), count(*) FROM ci GROUP BY p",
            'SELECT coalesce("prop.browser", "prop.os", \'none\') AS p, sum(coalesce(retries, 0)),'
            " avg(coalesce(duration, 0.0)), count(*) FROM events GROUP BY p",
        ),
        Case(
            "scalar: regexp_matches as a condition and as a group key",
            "SELECT regexp_matches(message, 'expected [0-3]') AS m, count(*) FROM ci"
            " WHERE regexp_matches(name, '^test_(login|logout)_')"
            " AND NOT regexp_matches(name, '1$')"
            " GROUP BY m",
            "SELECT regexp_matches(message, 'expected [0-3]') AS m, count(*) FROM events"
            " WHERE regexp_matches(name, '^test_(login|logout)_')"
            " AND NOT regexp_matches(name, '1$')"
            " GROUP BY m",
        ),
        Case(
            "scalar: arithmetic in WHERE, aggregates and keys",
            "SELECT line % 7 AS r, avg(duration * 1000) AS ms, sum(line * 2 + 1), max(-line),"
            " min(line / 4), count(*) FROM ci WHERE duration * 1000 > 250 AND line - 40 >= 0"
            " GROUP BY r",
            "SELECT line % 7 AS r, avg(duration * 1000) AS ms, sum(line * 2 + 1), max(-line),"
            " min(line / 4), count(*) FROM events WHERE duration * 1000 > 250 AND line - 40 >= 0"
            " GROUP BY r",
        ),
        Case(
            "scalar: CASE in aggregates: failure rate",
            "SELECT suite, sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS fails,"
            " sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) / count(*) AS rate FROM ci"
            " GROUP BY suite ORDER BY rate DESC",
            "SELECT suite, sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS fails,"
            " sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) / count(*) AS rate FROM events"
            " GROUP BY suite ORDER BY rate DESC, suite",
            ordered=True,
        ),
        Case(
            "scalar: simple CASE without ELSE, if(), a condition as a key",
            "SELECT CASE status WHEN 'passed' THEN 'ok' WHEN 'skipped' THEN 'skip' END AS o,"
            " if(retries > 0, 'retried', 'once') AS r, duration > 1 AS slow, count(*) FROM ci"
            " GROUP BY o, r, slow",
            "SELECT CASE status WHEN 'passed' THEN 'ok' WHEN 'skipped' THEN 'skip' END AS o,"
            " if(retries > 0, 'retried', 'once') AS r, duration > 1 AS slow, count(*) FROM events"
            " GROUP BY o, r, slow",
        ),
        Case(
            "scalar: count(DISTINCT expression), max of a length",
            "SELECT suite, count(DISTINCT lower(name)), count(DISTINCT split_part(run_id, '-', 1)),"
            " max(length(message)) FROM ci GROUP BY suite",
            "SELECT suite, count(DISTINCT lower(name)), count(DISTINCT split_part(run_id, '-', 1)),"
            " max(length(message)) FROM events GROUP BY suite",
        ),
        Case(
            "SELECT DISTINCT fields",
            "SELECT DISTINCT suite, status FROM ci",
            "SELECT DISTINCT suite, status FROM events",
        ),
        Case(
            "SELECT DISTINCT expressions, ORDER BY DESC with nulls, LIMIT",
            'SELECT DISTINCT lower(status) AS s, "prop.os" FROM ci ORDER BY s DESC, "prop.os"'
            " LIMIT 7",
            'SELECT DISTINCT lower(status) AS s, "prop.os" FROM events'
            ' ORDER BY s DESC, "prop.os" NULLS LAST LIMIT 7',
            ordered=True,
        ),
        Case(
            "scalar: expressions in WHERE: IN, LIKE, BETWEEN, IS NULL",
            "SELECT count(*) FROM ci WHERE upper(suite) IN ('API', 'DB', 'NET')"
            " AND split_part(classname, '.', 4) LIKE 'Auth%' AND length(name) BETWEEN 10 AND 14"
            ' AND coalesce("prop.os", branch) IS NOT NULL',
            "SELECT count(*) FROM events WHERE upper(suite) IN ('API', 'DB', 'NET')"
            " AND split_part(classname, '.', 4) LIKE 'Auth%' AND length(name) BETWEEN 10 AND 14"
            ' AND coalesce("prop.os", branch) IS NOT NULL',
        ),
        Case(
            "ILIKE and NOT ILIKE",
            "SELECT classname, count(*) FROM ci WHERE classname ILIKE '%.AUTHtest'"
            " AND name NOT ILIKE 'TEST_L%' GROUP BY classname",
            "SELECT classname, count(*) FROM events WHERE classname ILIKE '%.AUTHtest'"
            " AND name NOT ILIKE 'TEST_L%' GROUP BY classname",
        ),
        Case(
            "ILIKE on a sparse field",
            "SELECT count(*) FROM ci WHERE \"prop.os\" ILIKE 'LIN%'"
            " OR \"prop.browser\" ILIKE '_IREFOX'",
            "SELECT count(*) FROM events WHERE \"prop.os\" ILIKE 'LIN%'"
            " OR \"prop.browser\" ILIKE '_IREFOX'",
        ),
        Case(
            "raw rows of expressions, ORDER BY an expression",
            "SELECT name, duration * 1000 AS ms, lower(classname), upper(status) FROM ci"
            " WHERE status = 'error' ORDER BY ms DESC, name LIMIT 20",
            "SELECT name, duration * 1000 AS ms, lower(classname), upper(status) FROM events"
            " WHERE status = 'error' ORDER BY ms DESC NULLS LAST, name LIMIT 20",
            ordered=True,
        ),
        Case(
            "raw rows: a condition and coalesce as values",
            "SELECT run_id, duration > 1 AS slow, coalesce(retries, -1) AS r FROM ci"
            " WHERE suite = 'db' AND name LIKE 'test_s%' ORDER BY run_id LIMIT 40",
            "SELECT run_id, duration > 1 AS slow, coalesce(retries, -1) AS r FROM events"
            " WHERE suite = 'db' AND name LIKE 'test_s%' ORDER BY run_id LIMIT 40",
            ordered=True,
        ),
        Case(
            "date_trunc day and hour in UTC (the fast buckets)",
            "SELECT date_trunc('day', timestamp) AS d, date_trunc('hour', timestamp) AS h,"
            " count(*) FROM ci WHERE status = 'failed' GROUP BY d, h",
            "SELECT epoch_us(date_trunc('day', make_timestamp(timestamp))) AS d,"
            " epoch_us(date_trunc('hour', make_timestamp(timestamp))) AS h, count(*)"
            " FROM events WHERE status = 'failed' GROUP BY d, h",
            times=(0, 1),
        ),
        Case(
            "date_trunc week, month and year in UTC; max of a time",
            "SELECT date_trunc('month', timestamp) AS m, date_trunc('week', timestamp) AS w,"
            " date_trunc('year', timestamp) AS y, count(*), max(timestamp) FROM ci"
            " GROUP BY m, w, y",
            "SELECT epoch_us(date_trunc('month', make_timestamp(timestamp))) AS m,"
            " epoch_us(date_trunc('week', make_timestamp(timestamp))) AS w,"
            " epoch_us(date_trunc('year', make_timestamp(timestamp))) AS y, count(*),"
            " max(timestamp) FROM events GROUP BY m, w, y",
            times=(0, 1, 2, 4),
        ),
        Case(
            "time_bucket by calendar months, quarters, years and weeks from Monday",
            "SELECT time_bucket(timestamp, '1 month') AS m, time_bucket(interval '3 months',"
            " timestamp) AS q, time_bucket(timestamp, '1 year') AS y,"
            " time_bucket(timestamp, '1 week') AS w, count(*) FROM ci GROUP BY m, q, y, w",
            "SELECT epoch_us(time_bucket(interval '1 month', make_timestamp(timestamp))) AS m,"
            " epoch_us(time_bucket(interval '3 months', make_timestamp(timestamp))) AS q,"
            " epoch_us(time_bucket(interval '1 year', make_timestamp(timestamp))) AS y,"
            " epoch_us(time_bucket(interval '1 week', make_timestamp(timestamp))) AS w, count(*)"
            " FROM events GROUP BY m, q, y, w",
            times=(0, 1, 2, 3),
        ),
        Case(
            "raw rows of time expressions",
            "SELECT timestamp, date_trunc('day', timestamp) AS d, time_bucket(timestamp, '1 month')"
            " AS m FROM ci WHERE status = 'error' ORDER BY timestamp LIMIT 15",
            "SELECT timestamp, epoch_us(date_trunc('day', make_timestamp(timestamp))) AS d,"
            " epoch_us(time_bucket(interval '1 month', make_timestamp(timestamp))) AS m"
            " FROM events WHERE status = 'error' ORDER BY timestamp LIMIT 15",
            ordered=True,
            times=(0, 1, 2),
        ),
        Case(
            "min and max of time expressions, a time expression in WHERE",
            "SELECT suite, min(date_trunc('day', timestamp)),"
            " max(time_bucket(timestamp, '1 month')), count(*)"
            f" FROM ci WHERE date_trunc('day', timestamp) != '{day}' GROUP BY suite",
            "SELECT suite, epoch_us(min(date_trunc('day', make_timestamp(timestamp)))),"
            " epoch_us(max(time_bucket(interval '1 month', make_timestamp(timestamp)))), count(*)"
            f" FROM events WHERE date_trunc('day', make_timestamp(timestamp)) != TIMESTAMP '{day}'"
            " GROUP BY suite",
            times=(1, 2),
        ),
        Case(
            "date_trunc day in the query's zone: 25-hour days (Europe/Paris)",
            "SELECT date_trunc('day', timestamp) AS d, count(*), min(timestamp), max(timestamp)"
            " FROM ci GROUP BY d",
            "SELECT epoch_us(date_trunc('day', make_timestamptz(timestamp))) AS d, count(*),"
            " min(timestamp), max(timestamp) FROM events GROUP BY d ORDER BY d",
            ordered=True,
            times=(0, 2, 3),
            zone="Europe/Paris",
        ),
        Case(
            "date_trunc with a zone argument, in a UTC query",
            "SELECT date_trunc('day', timestamp, 'Europe/Paris') AS d,"
            " date_trunc('month', timestamp, 'America/New_York') AS m, count(*) FROM ci"
            " WHERE status = 'skipped' GROUP BY d, m",
            "SELECT epoch_us(timezone('Europe/Paris', date_trunc('day',"
            " timezone('Europe/Paris', make_timestamptz(timestamp))))) AS d,"
            " epoch_us(timezone('America/New_York', date_trunc('month',"
            " timezone('America/New_York', make_timestamptz(timestamp))))) AS m, count(*)"
            " FROM events WHERE status = 'skipped' GROUP BY d, m",
            times=(0, 1),
        ),
        Case(
            "time_bucket with a zone argument: days and 6 hours in New York",
            "SELECT time_bucket(timestamp, '1 day', 'America/New_York') AS d,"
            " time_bucket(interval '6 hours', timestamp, 'America/New_York') AS q, count(*)"
            " FROM ci GROUP BY d, q",
            "SELECT epoch_us(time_bucket(interval '1 day', make_timestamptz(timestamp),"
            " 'America/New_York')) AS d, epoch_us(time_bucket(interval '6 hours',"
            " make_timestamptz(timestamp), 'America/New_York')) AS q, count(*) FROM events"
            " GROUP BY d, q",
            times=(0, 1),
        ),
        Case(
            "time_bucket months and date_trunc weeks in the query's zone (New York)",
            "SELECT time_bucket(timestamp, '1 month') AS m, date_trunc('week', timestamp) AS w,"
            " count(*) FROM ci GROUP BY m, w",
            "SELECT epoch_us(time_bucket(interval '1 month', make_timestamptz(timestamp),"
            " 'America/New_York')) AS m, epoch_us(date_trunc('week', make_timestamptz(timestamp)))"
            " AS w, count(*) FROM events GROUP BY m, w",
            times=(0, 1),
            zone="America/New_York",
        ),
        Case(
            "dates and day intervals written in a zoned query are the zone's (Europe/Paris)",
            "SELECT count(*), min(timestamp), max(timestamp) FROM ci"
            f" WHERE timestamp >= '{paris_day}' AND timestamp < '{paris_day}' + interval '1 day'",
            "SELECT count(*), min(timestamp), max(timestamp) FROM events"
            f" WHERE make_timestamptz(timestamp) >= TIMESTAMPTZ '{paris_day}'"
            f" AND make_timestamptz(timestamp) < TIMESTAMPTZ '{paris_day}' + interval '1 day'",
            times=(1, 2),
            zone="Europe/Paris",
        ),
        Case(
            "hours around New York's last clock change, in its zone",
            "SELECT date_trunc('hour', timestamp) AS h, time_bucket(timestamp, '1 hour') AS b,"
            f" count(*) FROM ci WHERE {around} GROUP BY h, b",
            "SELECT epoch_us(date_trunc('hour', make_timestamptz(timestamp))) AS h,"
            " epoch_us(time_bucket(interval '1 hour', make_timestamptz(timestamp),"
            f" 'America/New_York')) AS b, count(*) FROM events WHERE {around_duck} GROUP BY h, b",
            times=(0, 1),
            zone="America/New_York",
        ),
    ]
