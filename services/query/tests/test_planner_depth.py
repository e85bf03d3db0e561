"""Expressions nested deeper than a plan can carry (protobuf decodes no message nested more than
100 deep) are refused where they get too deep, before any of them is translated; the deepest plan
of every shape accepted travels to storage and back (issue 15)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from google.protobuf.message import DecodeError, EncodeError, Message

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.sql import QueryError, parse_statement, planner
from flakehouse.query.sql.depth import MAX_DEPTH
from flakehouse.query.sql.parsing import MAX_NESTING
from flakehouse.query.sql.scalars import Scalars
from flakehouse.query.v1 import query_pb2
from flakehouse.storage.v1 import storage_pb2
from services.query.tests.planner_helpers import NOW, error, plan


def travels(query_plan: plan_pb2.QueryPlan) -> int:
    """How many messages deep the plan nests in the request storage gets (and in the answer,
    QueryResponse.plan, as deep), after checking that both serialize and parse back whole."""
    request = storage_pb2.ExecuteFragmentRequest(plan=query_plan, partitions=[0])
    for message in (request, query_pb2.QueryResponse(plan=query_plan)):
        assert type(message).FromString(message.SerializeToString()) == message
    return _nesting(request)


def _nesting(message: Message) -> int:
    """Levels of messages below `message` (a message without submessages: 0)."""
    deepest = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        for child in value if field.is_repeated else [value]:
            deepest = max(deepest, 1 + _nesting(child))
    return deepest


def test_protobuf_decodes_a_request_nested_100_deep_and_no_deeper() -> None:
    # The limit the tests here hold plans to, measured as they measure plans.
    for levels, decodes in ((100, True), (101, False)):
        request = storage_pb2.ExecuteFragmentRequest()
        scalar = request.plan.computed.add()  # 2 levels below the request
        for _ in range((levels - 2) // 2):
            scalar = scalar.call.args.add()
        if levels % 2:
            scalar.literal.int_value = 1
        else:
            scalar.field = "duration"
        assert _nesting(request) == levels
        data = request.SerializeToString()
        if decodes:
            assert storage_pb2.ExecuteFragmentRequest.FromString(data) == request
        else:
            with pytest.raises(DecodeError):
                storage_pb2.ExecuteFragmentRequest.FromString(data)


def chained(levels: int) -> str:
    """`levels` operators in a row, each inside the next: d + d - d + …"""
    return "duration" + "".join(f" {'-' if i % 2 else '+'} duration" for i in range(levels))


def cases_in_then(levels: int, innermost: str = "1") -> str:
    return "CASE WHEN flaky THEN " * levels + innermost + " END" * levels


def cases_in_else(levels: int) -> str:
    return "CASE WHEN flaky THEN 1 ELSE " * levels + "0" + " END" * levels


def alternating(levels: int) -> str:
    """AND in OR in AND …, `levels` deep (a parenthesis per level but the first)."""
    condition = "flaky"
    for level in range(levels):
        joined = f"{condition} {'AND' if level % 2 else 'OR'} prop.ok"
        condition = joined if level == levels - 1 else f"({joined})"
    return condition


def calls(levels: int) -> str:
    """lower(upper(lower(… name …))), `levels` calls."""
    return "".join("upper(" if i % 2 else "lower(" for i in range(levels)) + "name" + ")" * levels


def cases_in_arithmetic(levels: int) -> str:
    """1 + CASE WHEN flaky THEN 1 + CASE … END END, `levels` additions and CASEs."""
    innermost = "2 + duration" if levels % 2 else "2"
    return "1 + CASE WHEN flaky THEN " * (levels // 2) + innermost + " END" * (levels // 2)


# Each shape at `levels` levels of operators, calls, CASEs and conditions, as a whole query.
SHAPES: dict[str, Callable[[int], str]] = {
    "arithmetic in SELECT": lambda n: f"SELECT {chained(n)} FROM ci",
    "arithmetic in WHERE": lambda n: f"SELECT count(*) FROM ci WHERE {chained(n - 1)} > 1",
    "arithmetic in an aggregate": lambda n: f"SELECT sum({chained(n - 1)}) FROM ci",
    "arithmetic over aggregates": lambda n: (
        "SELECT " + chained(n - 1).replace("duration", "max(d)") + " FROM ci"
    ),
    "CASE in THEN": lambda n: f"SELECT {cases_in_then(n)} FROM ci",
    "CASE in ELSE": lambda n: f"SELECT {cases_in_else(n)} FROM ci",
    "CASE in arithmetic": lambda n: f"SELECT {cases_in_arithmetic(n)} FROM ci",
    # The deepest plan per level: a condition as the innermost value (Scalar → CaseWhen →
    # WhenThen → Expr → Junction → Expr → Compare → Value).
    "condition as a CASE's value": lambda n: (
        "SELECT " + cases_in_then(n - 1, "(flaky AND prop.ok)") + " FROM ci"
    ),
    "conditions in a CASE's WHEN": lambda n: (
        f"SELECT CASE WHEN {alternating(n - 1)} THEN 1 END FROM ci"
    ),
    "condition as a value": lambda n: f"SELECT ({alternating(n)}) AS c FROM ci",
    "conditions in WHERE": lambda n: f"SELECT count(*) FROM ci WHERE {alternating(n)}",
    "conditions in FILTER": lambda n: (
        f"SELECT count(*) FILTER (WHERE {alternating(n - 1)}) FROM ci"
    ),
    "function calls": lambda n: f"SELECT {calls(n)} FROM ci",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_deepest_expression_accepted_travels_to_storage_and_back(shape: str) -> None:
    query_plan = plan(SHAPES[shape](MAX_DEPTH)).plan
    # 3 * MAX_DEPTH + 6, depth.MAX_DEPTH says, and protobuf takes 100.
    assert travels(query_plan) <= 3 * MAX_DEPTH + 6 <= 100


def test_the_bound_on_a_plans_depth_is_reached() -> None:
    # The deepest shape nests exactly as deep as depth.MAX_DEPTH says a plan can: the shapes
    # above include the worst case, so the bound they check is the one the limit is set by.
    deepest = max(travels(plan(build(MAX_DEPTH)).plan) for build in SHAPES.values())
    assert deepest == 3 * MAX_DEPTH + 6


@pytest.mark.parametrize("shape", SHAPES)
def test_one_level_more_is_refused(shape: str) -> None:
    sql = SHAPES[shape](MAX_DEPTH + 1)
    found = error(sql)
    assert found.message.startswith(f"expression nested deeper than {MAX_DEPTH} levels")
    assert "group long ones in parentheses, (a + b + c) + (d + e + f)" in found.message
    assert found.position is not None and 0 <= found.position < len(sql)


def test_the_error_is_at_the_level_that_goes_too_deep() -> None:
    # A chain nests to the left: the part of it too deep starts with its first term.
    sql = "SELECT count(*) FROM ci WHERE name = 'a' AND " + chained(3000) + " > 1"
    assert error(sql).position == sql.index("duration")
    # In nested CASEs, the first CASE past the limit (at its first field: CASE and WHEN are
    # keywords, which sqlglot gives no position).
    sql = f"SELECT {cases_in_then(MAX_DEPTH + 1)} FROM ci"
    cases = [found.start() for found in re.finditer("CASE", sql)]
    assert error(sql).position == sql.index("flaky", cases[MAX_DEPTH])


def test_grouping_a_long_chain_in_parentheses_plans_it() -> None:
    # What the error says to do: 200 terms in 20 groups of 10 nest 19 + 9 levels deep.
    groups = [" + ".join(["duration"] * 10) for _ in range(20)]
    query_plan = plan(f"SELECT {' + '.join(f'({g})' for g in groups)} FROM ci").plan
    assert travels(query_plan) < 100


@pytest.mark.parametrize("terms", [3_000, 20_000])
def test_a_long_chain_is_refused_before_any_of_it_is_translated(
    terms: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Translating it first took 40 s for 3,000 terms (the SQL of every level written out) and
    # then failed in protobuf.
    def translate(self: Scalars, node: object) -> object:
        raise AssertionError("translated")

    monkeypatch.setattr(Scalars, "translate", translate)
    sql = "SELECT count(*) FROM ci WHERE " + " + ".join(["duration"] * terms) + " > 1"
    assert error(sql).message.startswith("expression nested deeper than")


def test_cases_count_with_parentheses_before_parsing() -> None:
    # sqlglot recurses some twenty frames per CASE: 60 nested ones exhausted Python's stack
    # while parsing, before the depth of the tree could be measured.
    sql = f"SELECT {cases_in_then(3000)} FROM ci"
    found = error(sql)
    assert "parentheses and CASEs nested more than 32 deep" in found.message
    cases = [found.start() for found in re.finditer("CASE", sql)]
    assert found.position == cases[MAX_NESTING]
    # Together: 16 parentheses and 16 CASEs are 32 levels, and the 17th parenthesis one more.
    mixed = "SELECT " + "(CASE WHEN flaky THEN " * 17 + "1" + " END)" * 17 + " FROM ci"
    cases = [found.start() for found in re.finditer("CASE", mixed)]
    assert error(mixed).position == cases[16] - 1


@pytest.mark.parametrize("raised", [DecodeError("too deep"), EncodeError("too deep")])
def test_protobuf_refusing_a_plan_is_a_query_error(
    raised: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backstop, as for RecursionError: a plan that check_depth let through and protobuf does
    # not take is still an answer the user can act on, not an INTERNAL error.
    def plan_query(sql: str, *, now_us: int, zone: str) -> planner.PlannedQuery:
        raise raised

    monkeypatch.setattr(planner, "plan_query", plan_query)
    with pytest.raises(QueryError, match="nested too deeply to plan"):
        parse_statement("SELECT 1 FROM ci", now_us=NOW)
