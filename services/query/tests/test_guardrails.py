"""The limits on the groups a query holds and the rows it answers: the settings, the merge that
stops past max_groups, and the answer that refuses more than max_answer_rows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flakehouse.core.errors import ResourceExhausted
from flakehouse.query.answer import to_response
from flakehouse.query.guardrails import check_raw_limit
from flakehouse.query.merge import add_partial, merge_partials
from flakehouse.query.settings import QuerySettings
from flakehouse.query.sql import PlannedQuery
from services.query.tests.merge_helpers import answer, count, group, groups, plan

GROUPS = "the query holds more than 3 groups (max_groups); narrow the query: "


def by_name(
    max_groups: int, sql: str = "SELECT name, count(*) FROM ci GROUP BY name"
) -> PlannedQuery:
    planned = plan(sql)
    planned.plan.max_groups = max_groups
    return planned


def names(*keys: str, n: int = 1) -> list[object]:
    return [group([key], count(n)) for key in keys]


def test_the_defaults_and_what_the_settings_accept() -> None:
    settings = QuerySettings(replication_address="x:1")
    assert settings.max_groups == 100_000 and settings.max_answer_rows == 100_000
    assert QuerySettings(replication_address="x:1", max_groups=0, max_answer_rows=0)
    with pytest.raises(ValidationError, match="less than 1000, the default LIMIT"):
        QuerySettings(replication_address="x:1", max_answer_rows=999)
    with pytest.raises(ValidationError):
        QuerySettings(replication_address="x:1", max_groups=-1)


def test_the_merge_holds_up_to_max_groups() -> None:
    planned = by_name(3)
    merged = merge_partials(planned, [groups(*names("a", "b")), groups(*names("b", "c"))])
    assert merged.size == 3


def test_one_partial_past_max_groups_is_refused_before_it_is_merged() -> None:
    with pytest.raises(ResourceExhausted) as refused:
        merge_partials(by_name(3), [groups(*names("a", "b", "c", "d"))])
    assert refused.value.message.startswith(GROUPS)
    assert "WHERE" in refused.value.message and "GROUP BY" in refused.value.message


def test_the_merge_stops_as_soon_as_the_groups_together_pass_the_limit() -> None:
    planned = by_name(3)
    merged = merge_partials(planned, [groups(*names("a", "b"))])
    with pytest.raises(ResourceExhausted, match="more than 3 groups"):
        add_partial(planned, merged, groups(*names("b", "c", "d")))
    # Nothing of the refused partial stays: the merge is as it was.
    assert merged.size == merged.index.size == 2  # type: ignore[union-attr]
    add_partial(planned, merged, groups(*names("c", n=5)))
    assert answer(planned, [groups(*names("a", "b")), groups(*names("c", n=5))])[1] == [
        ["a", 1],
        ["b", 1],
        ["c", 5],
    ]


def test_no_limit_when_max_groups_is_zero() -> None:
    many = groups(*names(*(f"t{i}" for i in range(50))))
    assert merge_partials(by_name(0), [many]).size == 50


def test_an_answer_past_max_answer_rows_is_refused() -> None:
    planned = by_name(0)
    merged = merge_partials(planned, [groups(*names(*(f"t{i:02}" for i in range(30))))])
    with pytest.raises(ResourceExhausted) as refused:
        to_response(planned, merged, max_rows=20)
    assert refused.value.message.startswith(
        "the answer would have 30 rows, more than 20 (max_answer_rows); add a LIMIT"
    )
    assert len(to_response(planned, merged, max_rows=30).rows) == 30


@pytest.mark.parametrize(
    "tail",
    ["LIMIT 20", "LIMIT 50 OFFSET 10", "HAVING count(*) > 1", "HAVING name < 't20'"],
)
def test_limit_offset_and_having_count_before_the_rows_are(tail: str) -> None:
    planned = plan(f"SELECT name, count(*) FROM ci GROUP BY name {tail}")
    partial = groups(*[group([f"t{i:02}"], count(1 + (i < 5))) for i in range(30)])
    response = to_response(planned, merge_partials(planned, [partial]), max_rows=20)
    assert 0 < len(response.rows) <= 20


def test_a_raw_limit_past_max_answer_rows_is_refused_before_it_runs() -> None:
    check_raw_limit(1000, 1000)
    check_raw_limit(50_000, 0)
    with pytest.raises(ResourceExhausted) as refused:
        check_raw_limit(5000, 1000)
    assert refused.value.message.startswith(
        "LIMIT 5000 is more rows than an answer may return (max_answer_rows, 1000)"
    )
