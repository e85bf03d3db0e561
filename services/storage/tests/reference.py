"""The pure-Python reference of the executor's documented semantics, one row at a time, for the
randomized tests (test_fragment_against_reference.py, test_computed_against_reference.py):
filters in three-valued logic, groups, aggregate states, orderings and computed columns. Events
are dicts; a computed column `$k` becomes one more key of each event."""

from __future__ import annotations

import functools
import math
import random
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from flakehouse.common.v1 import plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels import calendar
from flakehouse.kernels import text as string_functions
from flakehouse.storage import fragment
from flakehouse.storage.segment import SegmentView
from services.storage.tests.random_plans import PY_OPS, STATUSES, SUITES, Event

ORIGIN = 946_857_600_000_000
"""2000-01-03T00:00:00Z, from which time buckets are laid."""

# -- the reference: one row at a time, straight from the documented rules ------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _ref_compare(x: Any, op: int, literal: Any) -> bool | None:
    if literal is None or x is None:
        return None
    comparable = _is_number(x) if _is_number(literal) else type(x) is type(literal)
    return PY_OPS[op](x, literal) if comparable else None


def _ref_eval(expr: plan_pb2.Expr, ev: Event) -> bool | None:
    kind = expr.WhichOneof("kind")
    if kind == "compare":
        c = expr.compare
        return _ref_compare(ev.get(c.field), c.op, v.from_value(c.value))
    if kind == "in_list":
        x = ev.get(expr.in_list.field)
        literals = [v.from_value(val) for val in expr.in_list.values]
        if any(_ref_compare(x, plan_pb2.COMPARE_OP_EQ, lit) for lit in literals):
            result: bool | None = True
        elif x is None or None in literals:
            result = None
        else:
            result = False
        return result if not expr.in_list.negated or result is None else not result
    if kind == "like":
        x = ev.get(expr.like.field)
        if not isinstance(x, str):
            return None
        regex = "".join(
            ".*" if c == "%" else "." if c == "_" else re.escape(c) for c in expr.like.pattern
        )
        matched = re.fullmatch(regex, x, re.DOTALL) is not None
        return matched != expr.like.negated
    if kind == "is_null":
        return (ev.get(expr.is_null.field) is None) != expr.is_null.negated
    if kind == "not":
        inner = _ref_eval(getattr(expr, "not").operand, ev)
        return None if inner is None else not inner
    j = expr.junction
    results = [_ref_eval(o, ev) for o in j.operands]
    if j.op == plan_pb2.JUNCTION_OP_AND:
        return False if False in results else None if None in results else True
    return True if True in results else None if None in results else False


# -- computed columns ----------------------------------------------------------------------------

_INT64 = range(-(2**63), 2**63)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fmod(x: float, y: float) -> float:
    try:
        return math.fmod(x, y)
    except ValueError:  # an infinite dividend: C's fmod gives NaN
        return math.nan


def _arithmetic(function: int, a: Any, b: Any) -> Any:
    """Ints stay ints, exactly, and NULL past int64; division is float division; by zero is
    NULL; the remainder takes the dividend's sign."""
    if not (_is_number(a) and _is_number(b)):
        return None
    if function in (plan_pb2.SCALAR_FUNCTION_DIVIDE, plan_pb2.SCALAR_FUNCTION_MODULO) and b == 0:
        return None
    if function == plan_pb2.SCALAR_FUNCTION_DIVIDE:
        return float(a) / float(b)
    if _is_int(a) and _is_int(b):
        if function == plan_pb2.SCALAR_FUNCTION_MODULO:
            r = abs(a) % abs(b)
            return -r if a < 0 else r
        r = {
            plan_pb2.SCALAR_FUNCTION_ADD: a + b,
            plan_pb2.SCALAR_FUNCTION_SUBTRACT: a - b,
            plan_pb2.SCALAR_FUNCTION_MULTIPLY: a * b,
        }[function]
        return r if r in _INT64 else None
    x, y = float(a), float(b)
    if function == plan_pb2.SCALAR_FUNCTION_MODULO:
        return _fmod(x, y)
    return {
        plan_pb2.SCALAR_FUNCTION_ADD: x + y,
        plan_pb2.SCALAR_FUNCTION_SUBTRACT: x - y,
        plan_pb2.SCALAR_FUNCTION_MULTIPLY: x * y,
    }[function]


def _string_call(function: int, args: list[Any]) -> Any:
    """ASCII strings in these tests: Python's own case mapping agrees with DuckDB's there
    (test_computed checks the Unicode rules against DuckDB, substr and split_part too)."""
    s, *rest = args
    if not isinstance(s, str) or None in rest:
        return None
    if function == plan_pb2.SCALAR_FUNCTION_LOWER:
        return s.lower()
    if function == plan_pb2.SCALAR_FUNCTION_UPPER:
        return s.upper()
    if function == plan_pb2.SCALAR_FUNCTION_LENGTH:
        return len(s)
    if function == plan_pb2.SCALAR_FUNCTION_REGEXP_MATCHES:
        return re.search(rest[0], s) is not None
    if function == plan_pb2.SCALAR_FUNCTION_SUBSTR:
        if not all(_is_int(x) for x in rest):
            return None
        return string_functions.substr(s, *rest)
    separator, index = rest
    if not (isinstance(separator, str) and _is_int(index)):
        return None
    return string_functions.split_part(s, separator, index)


def _calendar(function: int, args: list[Any]) -> Any:
    """The calendar kernels, one value at a time (libs/kernels checks them against DuckDB)."""
    if function == plan_pb2.SCALAR_FUNCTION_DATE_TRUNC:
        unit, ts, zone = args
        start = lambda t: calendar.date_trunc(t, unit, zone)  # noqa: E731
    else:
        ts, width, months, zone = args
        start = lambda t: calendar.time_bucket(t, width, months, zone)  # noqa: E731
    if not _is_int(ts):
        return None
    return int(start(np.array([ts], dtype=np.int64))[0])


def ref_scalar(scalar: plan_pb2.Scalar, ev: Event) -> Any:
    """The value of a computed column on one event (None: NULL)."""
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        return ev.get(scalar.field)
    if kind == "literal":
        return v.from_value(scalar.literal)
    if kind == "case_when":
        for branch in scalar.case_when.branches:
            if _ref_eval(branch.condition, ev) is True:
                return ref_scalar(branch.value, ev)
        otherwise = scalar.case_when
        return ref_scalar(otherwise.otherwise, ev) if otherwise.HasField("otherwise") else None
    call = scalar.call
    args = [ref_scalar(arg, ev) for arg in call.args]
    if call.function == plan_pb2.SCALAR_FUNCTION_COALESCE:
        return next((x for x in args if x is not None), None)
    if call.function == plan_pb2.SCALAR_FUNCTION_NEGATE:
        (a,) = args
        if not _is_number(a) or (a == -(2**63) and _is_int(a)):
            return None
        return -a
    if plan_pb2.SCALAR_FUNCTION_ADD <= call.function <= plan_pb2.SCALAR_FUNCTION_MODULO:
        return _arithmetic(call.function, *args)
    if call.function in (plan_pb2.SCALAR_FUNCTION_DATE_TRUNC, plan_pb2.SCALAR_FUNCTION_TIME_BUCKET):
        return _calendar(call.function, args)
    return _string_call(call.function, args)


def with_computed(plan: plan_pb2.QueryPlan, events: list[Event]) -> list[Event]:
    """The events with the plan's computed columns as further keys (absent where NULL)."""
    if not plan.computed:
        return events
    out = []
    for ev in events:
        ev = dict(ev)
        for k, scalar in enumerate(plan.computed):
            value = ref_scalar(scalar, ev)
            if value is not None:
                ev[f"${k}"] = value
        out.append(ev)
    return out


def _ref_tag(x: Any) -> tuple[str, Any] | None:
    return None if x is None else (v.TYPE_NAMES[v.type_of(x)], x)


def _ref_key(plan: plan_pb2.QueryPlan, ev: Event) -> tuple[Any, ...]:
    key = []
    for k in plan.group_by:
        if k.WhichOneof("kind") == "field":
            key.append(_ref_tag(ev.get(k.field)))
        else:
            width = k.time_bucket_us
            key.append(("int", ORIGIN + (ev["timestamp"] - ORIGIN) // width * width))
    return tuple(key)


def _num_better(new: Any, old: Any, is_min: bool) -> bool:
    if new == old:
        return isinstance(new, int) and isinstance(old, float)
    return new < old if is_min else new > old


def _ref_state(agg: plan_pb2.Aggregate, rows: list[Event]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "count": 0,
        "sum": 0.0,
        "int_sum": 0,
        "float_seen": False,
        "extreme": None,
    }
    F = plan_pb2.AggregateFunction
    if agg.HasField("filter"):
        rows = [r for r in rows if _ref_eval(agg.filter, r) is True]
    xs = [r.get(agg.field) for r in rows]
    if agg.function == F.AGGREGATE_FUNCTION_COUNT:
        state["count"] = len(rows)
    elif agg.function == F.AGGREGATE_FUNCTION_COUNT_FIELD:
        state["count"] = sum(x is not None for x in xs)
    elif agg.function in (F.AGGREGATE_FUNCTION_SUM, F.AGGREGATE_FUNCTION_AVG):
        ints = [x for x in xs if _is_number(x) and isinstance(x, int)]
        floats = [x for x in xs if isinstance(x, float)]
        state.update(
            count=len(ints) + len(floats),
            int_sum=sum(ints),
            sum=math.fsum(floats),
            float_seen=bool(floats),
        )
    else:
        is_min = agg.function == F.AGGREGATE_FUNCTION_MIN
        numbers = [x for x in xs if _is_number(x)]
        if numbers:
            best = numbers[0]
            for x in numbers[1:]:
                if _num_better(x, best, is_min):
                    best = x
            state["extreme"] = _ref_tag(best)
        else:
            for kind in (str, bool):
                typed = [x for x in xs if type(x) is kind]
                if typed:
                    state["extreme"] = _ref_tag(min(typed) if is_min else max(typed))
                    break
    return state


def _ref_matches(plan: plan_pb2.QueryPlan, events: list[Event]) -> list[Event]:
    tr = plan.time_range
    return [
        e
        for e in events
        if (not tr.HasField("start_us") or e["timestamp"] >= tr.start_us)
        and (not tr.HasField("end_us") or e["timestamp"] < tr.end_us)
        and (not plan.HasField("filter") or _ref_eval(plan.filter, e) is True)
    ]


def _ref_groups(plan: plan_pb2.QueryPlan, matched: list[Event]) -> dict[Any, list[Any]]:
    buckets: dict[Any, list[Event]] = {}
    for e in matched:
        buckets.setdefault(_ref_key(plan, e), []).append(e)
    if not plan.group_by and not buckets:
        buckets[()] = []
    return {k: [_ref_state(a, rows) for a in plan.aggregates] for k, rows in buckets.items()}


def _order_rank(x: Any) -> tuple[int, Any]:
    if x is None:
        return (3, None)
    if _is_number(x):
        return (0, x)
    return (1, x) if isinstance(x, str) else (2, x)


def _ref_compare_rows(plan: plan_pb2.QueryPlan, a: Event, b: Event) -> int:
    for ob in plan.order_by:
        (ra, xa), (rb, xb) = _order_rank(a.get(ob.field)), _order_rank(b.get(ob.field))
        if ra != rb:
            return -1 if ra < rb else 1
        if ra == 3 or xa == xb:
            continue
        less = xa < xb
        return (1 if less else -1) if ob.descending else (-1 if less else 1)
    return 0


def mixed_events(rng: random.Random, n: int) -> list[Event]:
    events = []
    for i in range(n):
        e: Event = {"timestamp": rng.randrange(-50_000, 10_000_000), "id": i, "_id": 10_000 + i}
        r = rng.random()
        if r < 0.85:
            e["status"] = rng.choice(STATUSES)
        elif r < 0.93:
            e["status"] = rng.randrange(3)
        if rng.random() < 0.9:
            e["suite"] = rng.choice(SUITES)
        r = rng.random()
        if r < 0.6:
            e["duration"] = rng.randrange(0, 400) / 4
        elif r < 0.8:
            e["duration"] = rng.randrange(0, 100)
        elif r < 0.85:
            e["duration"] = rng.choice(["slow", "fast"])
        r = rng.random()
        if r < 0.5:
            e["retries"] = rng.randrange(4)
        elif r < 0.6:
            e["retries"] = rng.random() < 0.5
        if rng.random() < 0.4:
            e["flaky"] = rng.random() < 0.3
        if rng.random() < 0.3:
            e["line"] = rng.randrange(-(2**40), 2**40)
        events.append(e)
    return events


def _close(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    """Group maps equal, float sums within rounding (summation order differs)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        for sa, sb in zip(a[key], b[key], strict=True):
            if not math.isclose(sa["sum"], sb["sum"], rel_tol=1e-9, abs_tol=1e-9):
                return False
            if {**sa, "sum": 0} != {**sb, "sum": 0}:
                return False
    return True


def _row_dicts(plan: plan_pb2.QueryPlan, result: plan_pb2.PartialResult) -> list[Event]:
    out = []
    for row in result.rows:
        d = {f: v.from_value(x) for f, x in zip(plan.select_fields, row.values, strict=True)}
        out.append({k: x for k, x in d.items() if x is not None})
    return out


def _project(plan: plan_pb2.QueryPlan, rows: list[Event]) -> list[tuple[Any, ...]]:
    return [tuple(_ref_tag(r.get(f)) for f in plan.select_fields) for r in rows]


def check_reference(
    events: list[Event],
    views: list[SegmentView],
    plans: Iterable[plan_pb2.QueryPlan],
    kit: Any,
) -> int:
    """Each plan over `views` (holding `events`) against the reference; returns how many
    segments were skipped in all."""
    skipped = 0
    for plan in plans:
        result = fragment.execute(plan, views)
        skipped += result.stats.segments_skipped
        matched = _ref_matches(plan, with_computed(plan, events))
        assert result.stats.rows_matched == len(matched) or (not plan.order_by and plan.limit), plan
        if plan.aggregates or plan.group_by:
            assert _close(kit.groups(result), _ref_groups(plan, matched)), plan
            continue
        got = _row_dicts(plan, result)
        ordered = sorted(
            matched, key=functools.cmp_to_key(functools.partial(_ref_compare_rows, plan))
        )
        if plan.limit:
            ordered = ordered[: plan.limit]
        assert len(got) == len(ordered), plan
        if plan.order_by:
            # Ties may come in any order: compare the order keys, and the rows as multisets
            # when nothing was cut off.
            fields_ordered = [ob.field for ob in plan.order_by]
            # Numbers compare by value: 1 and 1.0 are a tie.
            assert [[_order_rank(r.get(f)) for f in fields_ordered] for r in got] == [
                [_order_rank(r.get(f)) for f in fields_ordered] for r in ordered
            ], plan
        by_id = {e["id"]: e for e in matched}
        # Every row is a matching event, with its values, each at most once.
        assert len({r["id"] for r in got}) == len(got)
        assert _project(plan, got) == _project(plan, [by_id[r["id"]] for r in got]), plan
        if not plan.limit:
            assert {r["id"] for r in got} == set(by_id)
    return skipped
