"""The limits that keep one query from taking the service down: the groups it may hold (in
storage and in the merge, `max_groups`) and the rows its answer may return (`max_answer_rows`);
past either, a RESOURCE_EXHAUSTED that names the limit and how to narrow the query."""

from __future__ import annotations

from flakehouse.core.errors import ResourceExhausted

NARROW = (
    "narrow the query: a WHERE that keeps fewer rows, fewer GROUP BY keys or wider time "
    "buckets, or a shorter time range"
)


def too_many_groups(max_groups: int) -> ResourceExhausted:
    """The query holds more groups than `max_groups`: the query service's words for it, which a
    storage node's refusal of its fragment (plan.max_groups) should match."""
    return ResourceExhausted(
        f"the query holds more than {max_groups} groups (max_groups); {NARROW}"
    )


def check_groups(groups: int, max_groups: int) -> None:
    """Raises too_many_groups when `groups` exceeds `max_groups` (0: no limit)."""
    if max_groups and groups > max_groups:
        raise too_many_groups(max_groups)


def check_answer_rows(rows: int, max_rows: int) -> None:
    """Raises RESOURCE_EXHAUSTED when an answer of `rows` rows exceeds `max_rows` (0: none)."""
    if max_rows and rows > max_rows:
        raise ResourceExhausted(
            f"the answer would have {rows} rows, more than {max_rows} (max_answer_rows); add a "
            "LIMIT or a HAVING that keeps fewer groups, or narrow the query with a WHERE or "
            "fewer GROUP BY keys"
        )


def check_raw_limit(limit: int, max_rows: int) -> None:
    """A raw-rows query's LIMIT is its answer's most rows: refused before anything runs when it
    exceeds `max_rows` (0: no limit)."""
    if max_rows and limit > max_rows:
        raise ResourceExhausted(
            f"LIMIT {limit} is more rows than an answer may return (max_answer_rows, {max_rows});"
            f" ask for at most {max_rows}, and page with OFFSET"
        )
