"""The oracle battery's cases over `build`, a field that is an int in some events and a string
in others: two columns in DuckDB, `build_int` and `build_str`, combined as the coercion says."""

from __future__ import annotations

from collections.abc import Callable

from tests.oracle_world import Case, Row


def _coalesce(*indexes: int | tuple[int, int]) -> Callable[[Row], Row]:
    """A DuckDB row to ours, where (i, j) merges the int column i and the string column j of
    one mixed field into one value, as our engine answers it."""

    def post(row: Row) -> Row:
        out = []
        for i in indexes:
            if isinstance(i, tuple):
                out.append(row[i[0]] if row[i[0]] is not None else row[i[1]])
            else:
                out.append(row[i])
        return tuple(out)

    return post


def mixed_field_cases(twin_build: int) -> list[Case]:
    """The cases over the mixed field; `twin_build` is a build present as an int and as a string."""
    v = twin_build
    return [
        Case(
            "mixed field: IN with literals of both types",
            f"SELECT count(*) FROM ci WHERE build IN ({v}, '{v}', 'b125')",
            f"SELECT count(*) FROM events WHERE build_int IN ({v}) OR build_str IN ('{v}', 'b125')",
        ),
        Case(
            "mixed field: count distinct by group, typed",
            "SELECT status, count(DISTINCT build) FROM ci GROUP BY status",
            "SELECT status, count(DISTINCT build_int) + count(DISTINCT build_str) FROM events "
            "GROUP BY status",
        ),
        Case(
            "mixed field: avg and sum ignore strings",
            "SELECT branch, avg(build), sum(build), count(build) FROM ci GROUP BY branch",
            "SELECT branch, avg(build_int), sum(build_int), count(build_int) + count(build_str) "
            "FROM events GROUP BY branch",
        ),
        Case(
            "mixed field: HAVING compares numbers with numbers only",
            'SELECT "commit", min(build) AS m FROM ci GROUP BY "commit" HAVING min(build) > 105',
            'SELECT "commit", min(build_int) AS m FROM events GROUP BY "commit" '
            "HAVING min(build_int) > 105",
        ),
        Case(
            "mixed field: ORDER BY a mixed aggregate DESC",
            'SELECT "commit", min(build) AS m FROM ci GROUP BY "commit" ORDER BY m DESC LIMIT 40',
            'SELECT "commit", min(build_int), min(build_str) FROM events GROUP BY "commit" '
            # The string minimum counts only where the group has no int.
            "ORDER BY min(build_int) IS NULL, min(build_int) DESC, "
            "CASE WHEN min(build_int) IS NULL THEN min(build_str) END DESC NULLS LAST, "
            '"commit" NULLS LAST LIMIT 40',
            ordered=True,
            post=_coalesce(0, (1, 2)),
        ),
        Case(
            "mixed field: int = matches ints only",
            f"SELECT count(*) FROM ci WHERE build = {v}",
            f"SELECT count(*) FROM events WHERE build_int = {v}",
        ),
        Case(
            "mixed field: string = matches strings only",
            f"SELECT count(*) FROM ci WHERE build = '{v}'",
            f"SELECT count(*) FROM events WHERE build_str = '{v}'",
        ),
        Case(
            "mixed field: range on numbers, range on strings",
            "SELECT count(*) FROM ci WHERE build > 120 OR build >= 'b130'",
            "SELECT count(*) FROM events WHERE build_int > 120 OR build_str >= 'b130'",
        ),
        Case(
            "mixed field: NOT IN is true for the other type",
            "SELECT count(*) FROM ci WHERE build NOT IN (110, 120, 130)",
            "SELECT count(*) FROM events WHERE build_str IS NOT NULL "
            "OR build_int NOT IN (110, 120, 130)",
        ),
        Case(
            "mixed field: IS NULL means no value of any type",
            "SELECT status, count(*) FROM ci WHERE build IS NULL GROUP BY status",
            "SELECT status, count(*) FROM events WHERE build_int IS NULL AND build_str IS NULL "
            "GROUP BY status",
        ),
        Case(
            "mixed field: aggregates (numbers beat strings, distinct by type)",
            "SELECT min(build), max(build), sum(build), avg(build), count(DISTINCT build), "
            "count(build) FROM ci",
            "SELECT min(build_int), min(build_str), max(build_int), max(build_str), "
            "sum(build_int), avg(build_int), "
            "count(DISTINCT build_int) + count(DISTINCT build_str), "
            "count(build_int) + count(build_str) FROM events",
            post=_coalesce((0, 1), (2, 3), 4, 5, 6, 7),
        ),
        Case(
            "mixed field: min/max over strings only",
            "SELECT min(build), max(build) FROM ci WHERE build LIKE 'b%'",
            "SELECT min(build_str), max(build_str) FROM events WHERE build_str LIKE 'b%'",
        ),
        Case(
            "mixed field: typed group keys, numbers < strings < null",
            "SELECT build, count(*) FROM ci GROUP BY build",
            "SELECT build_int, build_str, count(*) FROM events GROUP BY build_int, build_str "
            "ORDER BY build_int IS NULL, build_int, build_str IS NULL, build_str",
            ordered=True,
            post=_coalesce((0, 1), 2),
        ),
        Case(
            "mixed field: raw ORDER BY DESC reverses within a type only",
            f"SELECT build FROM ci WHERE build <= 101 OR build >= 'b138' OR build = '{v}' "
            "ORDER BY build DESC LIMIT 5000",
            f"SELECT build_int, build_str FROM events WHERE build_int <= 101 "
            f"OR build_str >= 'b138' OR build_str = '{v}' "
            "ORDER BY build_int IS NULL, build_int DESC, build_str DESC",
            ordered=True,
            post=_coalesce((0, 1)),
        ),
    ]
