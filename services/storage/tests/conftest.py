"""Helpers for the storage tests: EventBatches from plain dicts and QueryPlans from short calls,
offered as one `kit` fixture (test modules cannot import each other under importlib mode)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.events.values import Scalar
from flakehouse.storage import fragment
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from flakehouse.storage.segment import SegmentView

_ids = itertools.count(1)

OPS = {
    "=": plan_pb2.COMPARE_OP_EQ,
    "!=": plan_pb2.COMPARE_OP_NE,
    "<": plan_pb2.COMPARE_OP_LT,
    "<=": plan_pb2.COMPARE_OP_LE,
    ">": plan_pb2.COMPARE_OP_GT,
    ">=": plan_pb2.COMPARE_OP_GE,
}
F = plan_pb2.AggregateFunction
_MEMBERS = {
    v.STRING: ("string_values", "string_value"),
    v.INT: ("int_values", "int_value"),
    v.FLOAT: ("float_values", "float_value"),
    v.BOOL: ("bool_values", "bool_value"),
}


@dataclass
class State:
    """One group's state of one aggregate, read back from a StateColumn: what the column does
    not carry for the aggregate's function keeps its default."""

    count: int = 0
    sum: float = 0.0
    int_sum: int = 0
    float_seen: bool = False
    extreme: events_pb2.Value | None = None
    sketch: bytes = b""
    mean: float = 0.0
    square: float = 0.0


@dataclass
class Group:
    """One group of a PartialResult: its key (an empty Value for NULL) and states."""

    key: list[events_pb2.Value]
    states: list[State] = field(default_factory=list)


def _values(column: plan_pb2.ValueColumn, size: int) -> list[events_pb2.Value]:
    """The Value of each group of a ValueColumn (an empty Value for NULL), checking that it
    holds exactly one value per group."""
    assert len(column.types) == size, "a value column's types are not one per group"
    lists = {kind: list(getattr(column, member)) for kind, (member, _) in _MEMBERS.items()}
    for kind, (member, _) in _MEMBERS.items():
        assert list(column.types).count(kind) == len(lists[kind]), f"{member}: wrong length"
    taken = dict.fromkeys(_MEMBERS, 0)
    out = []
    for kind in column.types:
        if kind == events_pb2.VALUE_TYPE_UNSPECIFIED:
            out.append(events_pb2.Value())
            continue
        out.append(events_pb2.Value(**{_MEMBERS[kind][1]: lists[kind][taken[kind]]}))
        taken[kind] += 1
    return out


def _states(column: plan_pb2.StateColumn, size: int) -> list[State]:
    """Each group's state in a StateColumn, checking that every member it uses holds one entry
    per group."""
    members = {
        "counts": "count",
        "sums": "sum",
        "int_sums": "int_sum",
        "float_seen": "float_seen",
        "sketches": "sketch",
        "means": "mean",
        "squares": "square",
    }
    lists = {name: list(getattr(column, name)) for name in members}
    for name, values in lists.items():
        assert len(values) in (0, size), f"{name} are not one per group"
    extremes = [events_pb2.Value()] * size
    if column.HasField("extremes"):
        extremes = _values(column.extremes, size)
    states = []
    for i, extreme in enumerate(extremes):
        state = State(extreme=None if extreme.WhichOneof("kind") is None else extreme)
        for name, attribute in members.items():
            if lists[name]:
                setattr(state, attribute, lists[name][i])
        states.append(state)
    return states


class Kit:
    """Builders for test inputs. Events are dicts with an int `timestamp` (µs) and optionally an
    `_id`; every other key is a field."""

    OPS = OPS

    @staticmethod
    def batch(events: Sequence[dict[str, Any]], upload_id: str = "u") -> events_pb2.EventBatch:
        batch = events_pb2.EventBatch(schema_version=1, upload_id=upload_id, row_count=len(events))
        columns: dict[tuple[str, int], events_pb2.Column] = {}
        for row, event in enumerate(events):
            batch.timestamps.append(event["timestamp"])
            batch.event_ids.append(event["_id"] if "_id" in event else next(_ids))
            for name, value in event.items():
                if name in ("timestamp", "_id") or value is None:
                    continue
                kind = v.type_of(value)
                col = columns.get((name, kind))
                if col is None:
                    col = columns[(name, kind)] = batch.columns.add(name=name, type=kind)  # type: ignore[arg-type]
                col.rows.append(row)
                if kind == v.STRING:
                    col.string_values.append(value)
                elif kind == v.INT:
                    col.int_values.append(value)
                elif kind == v.FLOAT:
                    col.float_values.append(value)
                else:
                    col.bool_values.append(value)
        return batch

    @staticmethod
    def value(x: Scalar | None) -> events_pb2.Value:
        return v.to_value(x)

    @staticmethod
    def cmp(field: str, op: str, literal: Scalar | None) -> plan_pb2.Expr:
        return plan_pb2.Expr(
            compare=plan_pb2.Compare(op=OPS[op], field=field, value=v.to_value(literal))
        )

    @staticmethod
    def in_(field: str, literals: Iterable[Scalar | None], negated: bool = False) -> plan_pb2.Expr:
        return plan_pb2.Expr(
            in_list=plan_pb2.InList(
                field=field, values=[v.to_value(x) for x in literals], negated=negated
            )
        )

    @staticmethod
    def like(field: str, pattern: str, negated: bool = False) -> plan_pb2.Expr:
        return plan_pb2.Expr(like=plan_pb2.Like(field=field, pattern=pattern, negated=negated))

    @staticmethod
    def is_null(field: str, negated: bool = False) -> plan_pb2.Expr:
        return plan_pb2.Expr(is_null=plan_pb2.IsNull(field=field, negated=negated))

    @staticmethod
    def and_(*operands: plan_pb2.Expr) -> plan_pb2.Expr:
        return plan_pb2.Expr(
            junction=plan_pb2.Junction(op=plan_pb2.JUNCTION_OP_AND, operands=operands)
        )

    @staticmethod
    def or_(*operands: plan_pb2.Expr) -> plan_pb2.Expr:
        return plan_pb2.Expr(
            junction=plan_pb2.Junction(op=plan_pb2.JUNCTION_OP_OR, operands=operands)
        )

    @staticmethod
    def not_(operand: plan_pb2.Expr) -> plan_pb2.Expr:
        expr = plan_pb2.Expr()
        getattr(expr, "not").operand.CopyFrom(operand)
        return expr

    @staticmethod
    def agg(
        function: str,
        field: str = "",
        quantile: float = 0.0,
        filter: plan_pb2.Expr | None = None,
    ) -> plan_pb2.Aggregate:
        agg = plan_pb2.Aggregate(
            function=F.Value(f"AGGREGATE_FUNCTION_{function.upper()}"),
            field=field,
            quantile=quantile,
        )
        if filter is not None:
            agg.filter.CopyFrom(filter)
        return agg

    # -- computed columns: Scalars from short calls ------------------------------------------------

    @staticmethod
    def ref(name: str) -> plan_pb2.Scalar:
        return plan_pb2.Scalar(field=name)

    @staticmethod
    def lit(x: Scalar | None) -> plan_pb2.Scalar:
        return plan_pb2.Scalar(literal=v.to_value(x))

    @staticmethod
    def call(function: str, *args: plan_pb2.Scalar | str | Scalar | None) -> plan_pb2.Scalar:
        """function: the ScalarFunction's short name (`lower`); a str argument naming a field
        (`name`, `$0`) when it is the first, a literal elsewhere: pass Scalars to choose."""
        scalars = []
        for i, arg in enumerate(args):
            if isinstance(arg, plan_pb2.Scalar):
                scalars.append(arg)
            elif i == 0 and isinstance(arg, str):
                scalars.append(Kit.ref(arg))
            else:
                scalars.append(Kit.lit(arg))
        code = plan_pb2.ScalarFunction.Value(f"SCALAR_FUNCTION_{function.upper()}")
        return plan_pb2.Scalar(call=plan_pb2.ScalarCall(function=code, args=scalars))

    @staticmethod
    def case(
        *branches: tuple[plan_pb2.Expr, plan_pb2.Scalar], otherwise: plan_pb2.Scalar | None = None
    ) -> plan_pb2.Scalar:
        case = plan_pb2.CaseWhen()
        for condition, value in branches:
            case.branches.add(condition=condition, value=value)
        if otherwise is not None:
            case.otherwise.CopyFrom(otherwise)
        return plan_pb2.Scalar(case_when=case)

    @staticmethod
    def plan(
        *,
        filter: plan_pb2.Expr | None = None,
        group_by: Sequence[str | int] = (),
        aggregates: Sequence[plan_pb2.Aggregate] = (),
        select: Sequence[str] = (),
        order_by: Sequence[tuple[str, bool]] = (),
        limit: int = 0,
        start: int | None = None,
        end: int | None = None,
        computed: Sequence[plan_pb2.Scalar] = (),
        max_groups: int = 0,
    ) -> plan_pb2.QueryPlan:
        """group_by: a str is a field, an int a time-bucket width in µs; order_by: (field, desc);
        computed: the columns `$0`, `$1`, … ."""
        plan = plan_pb2.QueryPlan(
            ir_version=1,
            dataset="ci",
            aggregates=aggregates,
            select_fields=select,
            order_by=[plan_pb2.OrderBy(field=f, descending=d) for f, d in order_by],
            limit=limit,
            computed=computed,
            max_groups=max_groups,
        )
        if filter is not None:
            plan.filter.CopyFrom(filter)
        for key in group_by:
            if isinstance(key, str):
                plan.group_by.add(field=key)
            else:
                plan.group_by.add(time_bucket_us=key)
        if start is not None:
            plan.time_range.start_us = start
        if end is not None:
            plan.time_range.end_us = end
        return plan

    @staticmethod
    def group_list(result: plan_pb2.PartialResult) -> list[Group]:
        """The groups of a PartialResult's GroupColumns, in their order, one object each."""
        columns = result.group_columns
        size = columns.size
        keys = [_values(column, size) for column in columns.keys]
        states = [_states(column, size) for column in columns.states]
        return [
            Group([key[i] for key in keys], [column[i] for column in states]) for i in range(size)
        ]

    @staticmethod
    def groups(result: plan_pb2.PartialResult) -> dict[tuple[Any, ...], list[Any]]:
        """Groups as {key tuple: [state summaries]}; key items are (type name, value) or None."""
        out: dict[tuple[Any, ...], list[Any]] = {}
        for group in Kit.group_list(result):
            key = tuple(Kit.typed(k) for k in group.key)
            assert key not in out, f"group {key} appears twice"
            out[key] = [Kit.state(s) for s in group.states]
        return out

    @staticmethod
    def typed(value: events_pb2.Value) -> tuple[str, Any] | None:
        kind = value.WhichOneof("kind")
        return None if kind is None else (kind.removesuffix("_value"), getattr(value, kind))

    @staticmethod
    def state(state: State) -> dict[str, Any]:
        return {
            "count": state.count,
            "sum": state.sum,
            "int_sum": state.int_sum,
            "float_seen": state.float_seen,
            "extreme": None if state.extreme is None else Kit.typed(state.extreme),
        }

    @staticmethod
    def rows(result: plan_pb2.PartialResult) -> list[tuple[Any, ...]]:
        return [tuple(v.from_value(x) for x in row.values) for row in result.rows]

    @classmethod
    def views(cls, *chunks: list[dict[str, Any]]) -> tuple[list[SegmentView], list[SegmentView]]:
        """Each chunk of events as one segment: (open views, sealed-and-decoded views)."""
        open_views, sealed = [], []
        for seq, events in enumerate(chunks):
            builder = SegmentBuilder("ci", 0, seq)
            # Two batches per segment, so batch boundaries are exercised too.
            half = len(events) // 2
            builder.add(cls.batch(events[:half]), offset=2 * seq)
            builder.add(cls.batch(events[half:]), offset=2 * seq + 1)
            open_views.append(builder.view())
            sealed.append(decode_segment(builder.seal()))
        return open_views, sealed

    @classmethod
    def run(cls, plan: plan_pb2.QueryPlan, *chunks: list[dict[str, Any]]) -> Any:
        """Executes the plan over the chunks as open segments and as sealed ones; both must
        give the same answer, which is returned."""
        open_views, sealed = cls.views(*chunks)
        a = fragment.execute(plan, open_views)
        b = fragment.execute(plan, sealed)
        assert a == b, "open segment and sealed segment disagree"
        return a


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
