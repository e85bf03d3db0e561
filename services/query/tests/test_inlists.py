"""Long IN lists read without sqlglot plan exactly as sqlglot would have them: the same filter,
or the same error at the same place; and a list the scanner would misread is left to sqlglot."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flakehouse.common.v1 import plan_pb2
from flakehouse.query.sql import QueryError, inlists, parse_statement
from services.query.tests.planner_helpers import NOW


@contextmanager
def lifting(smallest: int) -> Iterator[None]:
    with mock.patch.object(inlists, "LONG_LIST", smallest):
        yield


def planned(sql: str) -> plan_pb2.QueryPlan | tuple[str, int | None]:
    """The plan of `sql`, or its error's message and position."""
    try:
        result = parse_statement(sql, now_us=NOW)
    except QueryError as error:
        return error.message, error.position
    assert not isinstance(result, tuple) and hasattr(result, "plan")
    return result.plan  # type: ignore[union-attr]


def as_sqlglot_reads_it(sql: str) -> plan_pb2.QueryPlan | tuple[str, int | None]:
    with lifting(10**9):
        return planned(sql)


def as_lifted(sql: str) -> plan_pb2.QueryPlan | tuple[str, int | None]:
    with lifting(2):
        return planned(sql)


def test_a_long_list_plans_to_every_value_in_order() -> None:
    names = [f"t{i}" for i in range(10_000)]
    sql = f"SELECT count(*) FROM ci WHERE name IN ({', '.join(map(repr, names))}) AND flaky"
    _, lifted = inlists.lift(sql)
    assert len(lifted) == 1
    plan = planned(sql)
    assert isinstance(plan, plan_pb2.QueryPlan)
    in_list = plan.filter.junction.operands[0].in_list
    assert [v.string_value for v in in_list.values] == names
    assert plan == as_sqlglot_reads_it(sql)


def test_what_looks_like_a_list_in_a_string_a_comment_or_select_is_left_to_sqlglot() -> None:
    values = ", ".join(f"'{i}'" for i in range(5))
    for sql in (
        f"SELECT name FROM ci WHERE message = 'x IN ({values})'",
        f"SELECT name FROM ci WHERE suite = 'a' -- x IN ({values})\n",
        f"SELECT name FROM ci WHERE suite = 'a' /* x IN ({values}) */",
        f'SELECT name FROM ci WHERE "x IN ({values})" = 1',
        f"SELECT name IN ({values}) AS hit FROM ci",
        f"SELECT suite FROM ci GROUP BY suite HAVING suite IN ({values})",
        f"SELECT name FROM ci WHERE (name IN ({values})) = TRUE",
        f"SELECT name FROM ci WHERE lower(name) IN ({values})",
    ):
        assert as_lifted(sql) == as_sqlglot_reads_it(sql), sql


def test_digits_of_other_scripts_are_no_numbers_in_a_long_list() -> None:
    # Python's \d takes Arabic-Indic digits and int() reads them (U+0661 U+0662 is 12);
    # sqlglot refuses them, in a short list or a long one.
    values = ", ".join(["\u0661\u0662"] * 150)
    sql = f"SELECT name FROM ci WHERE duration IN ({values})"
    assert planned(sql) == as_sqlglot_reads_it(sql)


def test_a_bad_value_in_a_long_list_is_refused_where_it_is() -> None:
    good = ", ".join(str(i) for i in range(200))
    sql = f"SELECT name FROM ci WHERE n IN ({good}, -9223372036854775809, 1)"
    message, position = planned(sql)  # type: ignore[misc]
    assert message == "integer 9223372036854775809 does not fit in 64 bits"
    assert position == sql.index("9223372036854775809")
    assert planned(sql) == as_sqlglot_reads_it(sql)
    times = ", ".join(f"'2026-11-{1 + i % 28:02d}'" for i in range(200))
    sql = f"SELECT name FROM ci WHERE timestamp NOT IN ({times}, 'yesterday')"
    assert planned(sql) == as_sqlglot_reads_it(sql)
    assert planned(sql)[1] == sql.index("'yesterday'")  # type: ignore[index]


STRINGS = (
    st.lists(st.one_of(st.characters(), st.sampled_from(["'", ",", ")", "(", "\n", "IN ("])))
    .map("".join)
    .map(lambda text: "'" + text.replace("'", "''") + "'")
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**66), max_value=2**66).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.sampled_from(["00012", "-0", "-0.0", "1" * 5000, "1" * 400 + ".5", "1e5", ".5", "1."]),
)
LISTS = st.lists(st.one_of(STRINGS, NUMBERS), min_size=1, max_size=8)
SPACES = st.sampled_from(["", " ", "  ", "\n", "\t"])


@st.composite
def statements(draw: st.DrawFn) -> str:
    field = draw(st.sampled_from(["name", "n", "timestamp", "ci.name", '"name"']))
    values = draw(LISTS)
    listed = "".join(draw(SPACES) + value + draw(SPACES) + "," for value in values)[:-1]
    condition = f"{field} {draw(st.sampled_from(['IN', 'in', 'NOT IN']))} ({listed})"
    shape = draw(
        st.sampled_from(
            [
                "{}",
                "NOT ({})",
                "suite = 'a' OR {}",
                "({}) AND flaky",
                "{} AND {}",
                "message = '{}'",
                "{} /* {} */",
            ]
        )
    )
    where = shape.format(condition, condition)
    return f"SELECT count(*) FROM ci WHERE {where} {draw(st.sampled_from(['', 'LIMIT 5', ')']))}"


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(statements())
def test_a_lifted_list_plans_as_sqlglot_reads_it(sql: str) -> None:
    assert as_lifted(sql) == as_sqlglot_reads_it(sql)
