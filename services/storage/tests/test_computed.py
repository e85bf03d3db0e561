"""Computed columns (`$0`, `$1`, …), case by case: arithmetic over mixed types, overflow and
division by zero; string functions computed once per dictionary entry and matching DuckDB on
Unicode; COALESCE and CASE; `$k` in every place a field goes; statistics that never prune a
computed column; the plan checks; the fields a plan reads."""

from __future__ import annotations

import gc
from typing import Any

import duckdb
import numpy as np
import pytest

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels import text as string_functions
from flakehouse.storage import fragment, string_columns
from flakehouse.storage.codec import object_array
from flakehouse.storage.computed import ComputedColumns
from flakehouse.storage.fragment import UnsupportedPlan
from flakehouse.storage.segment import ColumnView
from flakehouse.storage.string_columns import StringFunction

MIXED = [
    {"timestamp": 0, "id": 0, "x": 7, "y": 2},
    {"timestamp": 1, "id": 1, "x": 7.5, "y": 2},
    {"timestamp": 2, "id": 2, "x": -7, "y": 2.0},
    {"timestamp": 3, "id": 3, "x": "7", "y": 2},
    {"timestamp": 4, "id": 4, "x": True, "y": 2},
    {"timestamp": 5, "id": 5, "y": 2},
    {"timestamp": 6, "id": 6, "x": 7},
    {"timestamp": 7, "id": 7, "x": 2**62, "y": 2},
    {"timestamp": 8, "id": 8, "x": -(2**63), "y": -1},
    {"timestamp": 9, "id": 9, "x": 5, "y": 0},
    {"timestamp": 10, "id": 10, "x": 5.5, "y": 0.0},
]


def _column(kit: Any, scalar: plan_pb2.Scalar, *chunks: list[dict[str, Any]]) -> list[Any]:
    """The values of one computed column, row by row (id order), over sealed and open
    segments (kit.run checks that both agree)."""
    plan = kit.plan(computed=[scalar], select=["id", "$0"], order_by=[("id", False)])
    return [row[1] for row in kit.rows(kit.run(plan, *chunks))]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("add", [9, 9.5, -5.0, None, None, None, None, 2**62 + 2, None, 5, 5.5]),
        ("subtract", [5, 5.5, -9.0, None, None, None, None, 2**62 - 2, 1 - 2**63, 5, 5.5]),
        # 2**62 * 2 is beyond int64; MIN * -1 too.
        ("multiply", [14, 15.0, -14.0, None, None, None, None, None, None, 0, 0.0]),
        # Float division, ints or not; by zero: NULL.
        ("divide", [3.5, 3.75, -3.5, None, None, None, None, 2.0**61, 2.0**63, None, None]),
        # The remainder takes the dividend's sign (as DuckDB and C); MIN % -1 is 0.
        ("modulo", [1, 1.5, -1.0, None, None, None, None, 0, 0, None, None]),
    ],
)
def test_arithmetic_over_mixed_types(kit: Any, function: str, expected: list[Any]) -> None:
    got = _column(kit, kit.call(function, "x", kit.ref("y")), MIXED[:5], MIXED[5:])
    assert got == expected
    assert [type(g) for g in got] == [type(e) for e in expected]


def test_negate_and_literal_operands(kit: Any) -> None:
    assert _column(kit, kit.call("negate", "x"), MIXED) == [
        -7, -7.5, 7, None, None, None, -7, -(2**62), None, -5, -5.5,
    ]  # fmt: skip
    # A literal is a constant column: int * int stays int, a float literal makes floats.
    assert _column(kit, kit.call("multiply", "x", 1000), MIXED)[:3] == [7000, 7500.0, -7000]
    assert _column(kit, kit.call("add", "x", 0.5), MIXED)[0] == 7.5
    assert _column(kit, kit.call("add", "x", None), MIXED) == [None] * len(MIXED)
    # Chained: $1 uses $0.
    plan = kit.plan(
        computed=[kit.call("multiply", "x", 2), kit.call("add", "$0", 1)],
        select=["id", "$1"],
        order_by=[("id", False)],
    )
    assert [r[1] for r in kit.rows(kit.run(plan, MIXED))][:3] == [15, 16.0, -13]


NAMES = ["Alpha", "BETA", "gamma", "Straße", "İx", "ΑΣ ΣΑΣ", "a,b,,c", "e\u0301x", "", "ﬁne"]


def _names(n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"timestamp": i, "id": i, "name": NAMES[i % len(NAMES)]} for i in range(n)
    ]
    events[1]["name"] = 42  # not a string: NULL for string functions
    del events[2]["name"]
    return events


@pytest.mark.parametrize(
    ("scalar", "sql"),
    [
        (lambda k: k.call("lower", "name"), "lower(name)"),
        (lambda k: k.call("upper", "name"), "upper(name)"),
        (lambda k: k.call("length", "name"), "length(name)"),
        (lambda k: k.call("substr", "name", 2, 3), "substring(name, 2, 3)"),
        (lambda k: k.call("substr", "name", -2), "substring(name, -2)"),
        (lambda k: k.call("split_part", "name", ",", 3), "split_part(name, ',', 3)"),
        (lambda k: k.call("split_part", "name", "", -1), "split_part(name, '', -1)"),
        (lambda k: k.call("regexp_matches", "name", "^[A-Z]"), "regexp_matches(name, '^[A-Z]')"),
    ],
)
def test_string_functions_match_duckdb(kit: Any, scalar: Any, sql: str) -> None:
    events = _names(40)
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id BIGINT, name VARCHAR)")
    con.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(e["id"], e["name"] if isinstance(e.get("name"), str) else None) for e in events],
    )
    expected = [row[0] for row in con.execute(f"SELECT {sql} FROM t ORDER BY id").fetchall()]
    assert _column(kit, scalar(kit), events[:15], events[15:]) == expected


def test_case_mapping_matches_duckdb_on_every_code_point() -> None:
    """DuckDB maps case one code point at a time; Python's str.upper and str.lower map some to
    several (ß to SS) or look at neighbours (a final sigma)."""
    text = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000)
    lower, upper = duckdb.connect().execute("SELECT lower(?), upper(?)", [text, text]).fetchone()  # type: ignore[misc]
    assert string_functions.lower(text) == lower
    assert string_functions.upper(text) == upper
    assert text.upper() != upper  # the table is needed: Python alone differs


def test_substr_and_split_part_match_duckdb_on_edge_cases() -> None:
    con = duckdb.connect()
    for s in ["hello", "", "héllo🦆", "e\u0301x"]:
        for start in range(-8, 9):
            sql = "SELECT substring(?, ?::BIGINT), " + ", ".join(
                f"substring(?, ?::BIGINT, {n})" for n in range(-8, 9)
            )
            params: list[Any] = [s, start] + [x for _ in range(-8, 9) for x in (s, start)]
            row = con.execute(sql, params).fetchone()
            assert row is not None
            ours = [string_functions.substr(s, start)] + [
                string_functions.substr(s, start, n) for n in range(-8, 9)
            ]
            assert list(row) == ours, (s, start)
    for s in ["a,b,,c", "", ",", "abc", "a,,,b", "héllo", "xyx"]:
        for sep in [",", "", ",,", "x", "é"]:
            sql = ", ".join(f"split_part(?, ?, {i})" for i in range(-6, 7))
            params = [x for _ in range(-6, 7) for x in (s, sep)]
            row = con.execute(f"SELECT {sql}", params).fetchone()
            assert row is not None
            assert list(row) == [string_functions.split_part(s, sep, i) for i in range(-6, 7)]


def test_string_functions_run_once_per_dictionary_entry(kit: Any, monkeypatch: Any) -> None:
    """Never per row: a segment of 500 rows over 10 distinct names calls lower 10 times, and a
    second query over the same decoded segment (as the store's cache keeps it) not at all."""
    calls: list[str] = []

    def counted(s: str) -> str:
        calls.append(s)
        return string_functions.lower(s)

    monkeypatch.setitem(
        string_columns.FUNCTIONS,
        plan_pb2.SCALAR_FUNCTION_LOWER,
        StringFunction(counted, string_columns.FUNCTIONS[plan_pb2.SCALAR_FUNCTION_LOWER].result),
    )
    events = [e for e in _names(500) if isinstance(e.get("name"), str)]
    _, (sealed,) = kit.views(events)
    plan = kit.plan(
        computed=[kit.call("lower", "name")], group_by=["$0"], aggregates=[kit.agg("count")]
    )
    first = fragment.execute(plan, [sealed])
    assert sorted(calls) == sorted(set(NAMES))
    calls.clear()
    assert fragment.execute(plan, [sealed]) == first
    assert calls == []
    groups = kit.groups(first)
    # lower() merges nothing here but re-sorts: 'straße', 'beta', … each a group.
    assert sum(g[0]["count"] for g in groups.values()) == len(events)
    assert (("string", "beta"),) in groups and (("string", "i\u0307x"),) not in groups


def test_a_string_function_that_keeps_the_order_keeps_the_codes(kit: Any) -> None:
    """lower() of strings in lower case is the column itself; of strings whose order it keeps,
    the same codes over a new dictionary; else a new sorted dictionary and codes."""
    from flakehouse.storage.predicate import ScanSegment

    def computed(names: list[str]) -> tuple[Any, Any]:
        events = [{"timestamp": i, "name": names[i % len(names)]} for i in range(20)]
        (view,) = kit.views(events)[1]
        seg = ScanSegment(view, ComputedColumns([kit.call("lower", "name")]))
        return seg.columns("name")[v.STRING], seg.columns("$0")[v.STRING]

    field, lowered = computed(["alpha", "beta", "gamma"])
    assert lowered is field
    field, lowered = computed(["Alpha", "Beta", "Gamma"])
    assert lowered.codes is field.codes and list(lowered.dictionary) == ["alpha", "beta", "gamma"]
    field, lowered = computed(["B", "a", "b"])  # 'B' < 'a' < 'b'; lower: 'b', 'a', 'b'
    assert list(lowered.dictionary) == ["a", "b"]
    assert [lowered.dictionary[c] for c in lowered.codes] == [
        field.dictionary[c].lower() for c in field.codes
    ]


def test_remembered_results_go_with_their_dictionary() -> None:
    """An open segment's dictionary is rebuilt after each ingest: what was remembered for it must
    go when it does, also where the function changed no string (lower() of lower-case names,
    whose result is the column itself)."""
    gc.collect()
    before = len(string_columns._MEMO)
    for i in range(1000):
        dictionary = object_array([f"alpha{i}", f"beta{i}"])
        col = ColumnView(np.arange(2), codes=np.arange(2, dtype=np.uint32), dictionary=dictionary)
        lowered = string_columns.evaluate(plan_pb2.SCALAR_FUNCTION_LOWER, {v.STRING: col}, [], 2)
        assert lowered[v.STRING] is col
        upper = string_columns.evaluate(plan_pb2.SCALAR_FUNCTION_UPPER, {v.STRING: col}, [], 2)
        assert list(upper[v.STRING].dictionary) == [f"ALPHA{i}", f"BETA{i}"]
    assert len(string_columns._MEMO) > before  # the last one's, still alive
    del dictionary, col, lowered, upper
    gc.collect()
    assert len(string_columns._MEMO) <= before


def test_regexp_patterns_compile_once() -> None:
    string_functions.regex.cache_clear()
    for _ in range(3):
        assert string_functions.regexp_matches("flaky-test", "t.st")
    info = string_functions.regex.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_string_function_arguments_may_be_columns(kit: Any) -> None:
    """substr(name, n): each distinct (name, n) is computed once; a row whose n is missing or
    not an int gets NULL."""
    events = [
        {"timestamp": i, "id": i, "name": ["alpha", "beta"][i % 2], "n": [1, 2, 3, "x"][i % 4]}
        for i in range(12)
    ]
    del events[5]["n"]
    got = _column(kit, kit.call("substr", "name", kit.ref("n"), 2), events[:5], events[5:])
    expected = [
        None if not isinstance(e.get("n"), int) else e["name"][e["n"] - 1 : e["n"] + 1]
        for e in events
    ]
    assert got == expected


def test_coalesce_takes_the_first_value_of_any_type(kit: Any) -> None:
    events = [
        {"timestamp": 0, "id": 0, "a": 1, "b": "x"},
        {"timestamp": 1, "id": 1, "b": "x", "c": 2.5},
        {"timestamp": 2, "id": 2, "c": 2.5},
        {"timestamp": 3, "id": 3, "a": True},
        {"timestamp": 4, "id": 4},
    ]
    scalar = kit.call("coalesce", "a", kit.ref("b"), kit.ref("c"))
    assert _column(kit, scalar, events[:2], events[2:]) == [1, "x", 2.5, True, None]
    with_default = kit.call("coalesce", "a", kit.lit("none"))
    assert _column(kit, with_default, events) == [1, "none", "none", True, "none"]


def test_case_takes_the_first_true_branch(kit: Any) -> None:
    events = [{"timestamp": i, "id": i, "d": d} for i, d in enumerate([0.5, 5, 50, "slow"])]
    events.append({"timestamp": 9, "id": 9})
    case = kit.case(
        (kit.cmp("d", "<", 1), kit.lit("fast")),
        (kit.cmp("d", "<", 10), kit.lit("ok")),
        # Overlaps the branch before: rows taken by it stay taken.
        (kit.cmp("d", "<", 100), kit.ref("d")),
    )
    # 'slow' and the missing value compare as unknown: not true, so no branch and no ELSE.
    assert _column(kit, case, events) == ["fast", "ok", 50, None, None]
    case.case_when.otherwise.CopyFrom(kit.lit(-1))
    assert _column(kit, case, events) == ["fast", "ok", 50, -1, -1]


def test_case_conditions_may_use_computed_columns(kit: Any) -> None:
    events = [{"timestamp": i, "id": i, "name": n} for i, n in enumerate(["Fail", "FAIL", "ok"])]
    plan = kit.plan(
        computed=[
            kit.call("lower", "name"),
            kit.case((kit.cmp("$0", "=", "fail"), kit.lit(1)), otherwise=kit.lit(0)),
        ],
        aggregates=[kit.agg("sum", "$1"), kit.agg("count_distinct", "$0")],
    )
    (group,) = kit.group_list(kit.run(plan, events))
    assert group.states[0].int_sum == 2


def test_computed_columns_in_every_place(kit: Any) -> None:
    events = [
        {"timestamp": i, "id": i, "suite": f"Suite-{i % 3}", "duration": float(i)}
        for i in range(30)
    ]
    computed = [kit.call("lower", "suite"), kit.call("multiply", "duration", 1000)]
    aggregates = [
        kit.agg("count"),
        kit.agg("sum", "$1"),
        kit.agg("max", "$1"),
        kit.agg("count_field", "$0"),
        kit.agg("percentile", "$1", 0.5),
        kit.agg("count_distinct", "$1"),
    ]
    plan = kit.plan(
        computed=computed,
        filter=kit.cmp("$1", ">=", 3000),
        group_by=["$0"],
        aggregates=aggregates,
    )
    groups = kit.groups(kit.run(plan, events[:10], events[10:]))
    assert sorted(groups) == [(("string", f"suite-{i}"),) for i in range(3)]
    suite0 = groups[(("string", "suite-0"),)]
    kept = [1000.0 * i for i in range(3, 30, 3)]
    assert suite0[0]["count"] == len(kept) and suite0[1]["sum"] == sum(kept)
    assert suite0[2]["extreme"] == ("float", 27000.0) and suite0[3]["count"] == len(kept)
    rows = kit.plan(computed=computed, select=["id", "$0", "$1"], order_by=[("$1", True)], limit=3)
    assert kit.rows(kit.run(rows, events[:10], events[10:])) == [
        (29, "suite-2", 29000.0),
        (28, "suite-1", 28000.0),
        (27, "suite-0", 27000.0),
    ]


@pytest.mark.parametrize(
    "condition",
    [
        lambda k: k.cmp("$0", "=", "passed"),
        lambda k: k.in_("$0", ["passed"]),
        lambda k: k.like("$0", "pass%"),
        lambda k: k.is_null("$0", negated=True),
        lambda k: k.not_(k.is_null("$0")),
        lambda k: k.cmp("$1", ">", 5),
    ],
)
def test_statistics_never_prune_on_computed_columns(kit: Any, condition: Any) -> None:
    """A sealed segment's statistics know its stored fields only: `$0` has no entry there,
    which must not read as "a column without values"."""
    events = [{"timestamp": i, "id": i, "status": "PASSED", "n": 3} for i in range(5)]
    _, sealed = kit.views(events)
    assert sealed[0].column_stats("$0") == {}  # unknown to the metadata
    plan = kit.plan(
        computed=[kit.call("lower", "status"), kit.call("add", "n", 10)],
        filter=condition(kit),
        aggregates=[kit.agg("count")],
    )
    result = fragment.execute(plan, sealed)
    assert result.stats.segments_skipped == 0
    assert list(result.group_columns.states[0].counts) == [5]


def _plan_with(kit: Any, *computed: plan_pb2.Scalar, **changes: Any) -> plan_pb2.QueryPlan:
    return kit.plan(computed=computed, aggregates=[kit.agg("count")], **changes)


def _bad_call(kit: Any, function: int, *args: plan_pb2.Scalar) -> plan_pb2.Scalar:
    return plan_pb2.Scalar(call=plan_pb2.ScalarCall(function=function, args=args))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda k: _plan_with(k, _bad_call(k, 99, k.ref("a"))), "scalar function 99 is not"),
        (lambda k: _plan_with(k, _bad_call(k, 0)), "UNSPECIFIED is not supported"),
        (lambda k: _plan_with(k, k.call("lower", "a", "b")), "LOWER takes 1 arguments, not 2"),
        (lambda k: _plan_with(k, k.call("add", "a")), "ADD takes 2 arguments, not 1"),
        (lambda k: _plan_with(k, k.call("substr", "a")), "SUBSTR takes 2 or 3 arguments"),
        (lambda k: _plan_with(k, k.call("coalesce")), "at least 1 arguments"),
        (lambda k: _plan_with(k, k.call("add", "a", "x")), "argument 2 of ADD must be int or"),
        (lambda k: _plan_with(k, k.call("lower", k.lit(3))), "must be string, not int 3"),
        (
            lambda k: _plan_with(k, k.call("regexp_matches", "a", k.ref("b"))),
            "argument 2 of REGEXP_MATCHES must be a literal",
        ),
        (lambda k: _plan_with(k, k.call("regexp_matches", "a", "(")), "pattern '\\(':"),
        (
            lambda k: _plan_with(k, k.call("regexp_matches", "a", "x(?=y)")),
            r"pattern 'x\(\?=y\)': invalid perl operator: \(\?= \(RE2's syntax",
        ),
        (lambda k: _plan_with(k, k.call("regexp_matches", "a", None)), "must not be NULL"),
        (lambda k: _plan_with(k, k.ref("$0")), r"computed column \$0 refers to itself"),
        (
            lambda k: _plan_with(k, k.ref("a"), k.ref("$2"), k.ref("a")),
            r"\$1 refers to \$2, which is not an earlier one",
        ),
        (lambda k: _plan_with(k, k.ref("a"), group_by=["$1"]), r"\$1 names no computed column"),
        (lambda k: _plan_with(k, select=["x"], filter=k.cmp("$0", "=", 1)), "names no computed"),
        (lambda k: _plan_with(k, k.ref("$x")), "'\\$x' names no computed column"),
        (lambda k: _plan_with(k, k.ref("$01")), "'\\$01' names no computed column"),
        (lambda k: _plan_with(k, plan_pb2.Scalar()), "empty scalar"),
        (lambda k: _plan_with(k, k.case()), "CASE without a WHEN branch"),
        (
            lambda k: _plan_with(k, k.case((k.cmp("$1", "=", 1), k.lit(1)))),
            r"\$0 refers to \$1",
        ),
        (
            lambda k: k.plan(aggregates=[k.agg("count", filter=k.cmp("$0", "=", 1))]),
            r"\$0 names no computed column \(the plan has 0\)",
        ),
        (
            lambda k: k.plan(aggregates=[k.agg("count", filter=plan_pb2.Expr())]),
            "empty filter expression",
        ),
        (lambda k: k.plan(select=["$0"]), "names no computed column"),
        (lambda k: k.plan(select=["a"], order_by=[("$3", True)]), "names no computed column"),
    ],
)
def test_unsupported_computed_plans_are_refused(kit: Any, make: Any, message: str) -> None:
    with pytest.raises(UnsupportedPlan, match=message):
        fragment.execute(make(kit), [])


def test_fields_needed_reads_inside_computed_columns_and_filters(kit: Any) -> None:
    plan = kit.plan(
        computed=[
            kit.call("lower", "a"),
            kit.case((kit.cmp("b", "=", 1), kit.ref("$0")), otherwise=kit.ref("c")),
            kit.call("substr", "d", kit.ref("e")),
        ],
        filter=kit.cmp("$1", "=", "x"),
        group_by=["$2", "f"],
        aggregates=[kit.agg("sum", "$1", filter=kit.is_null("g")), kit.agg("count")],
    )
    assert fragment.fields_needed(plan) == {"a", "b", "c", "d", "e", "f", "g"}
    raw = kit.plan(computed=[kit.call("upper", "h")], select=["$0", "i"], order_by=[("$0", True)])
    assert fragment.fields_needed(raw) == {"h", "i"}
