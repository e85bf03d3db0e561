"""The fragment executor: runs a QueryPlan over segment views and returns the partial result
that the query service merges. This module checks the plan, prunes segments by time and applies
the filter; predicate.py, aggregate.py and rows.py do the rest. Pure code: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from flakehouse.common.v1 import events_pb2, plan_pb2
from flakehouse.events import values as v
from flakehouse.kernels.computed_names import is_computed
from flakehouse.storage.aggregate import aggregate
from flakehouse.storage.computed import ComputedColumns
from flakehouse.storage.predicate import Filter, Index, Mask, ScanSegment, not_operand
from flakehouse.storage.rows import raw_rows
from flakehouse.storage.segment import TIMESTAMP, SegmentView
from flakehouse.storage.validation import IR_VERSION, UnsupportedPlan, check_plan

__all__ = ["IR_VERSION", "UnsupportedPlan", "describe", "execute", "fields_needed"]


def _expr_fields(expr: plan_pb2.Expr, out: set[str]) -> None:
    kind = expr.WhichOneof("kind")
    if kind in ("compare", "in_list", "like", "is_null"):
        out.add(getattr(expr, kind).field)
    elif kind == "junction":
        for operand in expr.junction.operands:
            _expr_fields(operand, out)
    elif kind == "not":
        _expr_fields(not_operand(expr), out)


def _scalar_fields(scalar: plan_pb2.Scalar, out: set[str]) -> None:
    kind = scalar.WhichOneof("kind")
    if kind == "field":
        out.add(scalar.field)
    elif kind == "call":
        for arg in scalar.call.args:
            _scalar_fields(arg, out)
    elif kind == "case_when":
        for branch in scalar.case_when.branches:
            _expr_fields(branch.condition, out)
            _scalar_fields(branch.value, out)
        if scalar.case_when.HasField("otherwise"):
            _scalar_fields(scalar.case_when.otherwise, out)


def fields_needed(plan: plan_pb2.QueryPlan) -> set[str]:
    """The fields whose columns `execute` reads, those read by computed columns and by
    aggregates' filters included; `timestamp` is always loaded, so not listed, and computed
    columns (`$k`) are not stored fields."""
    out: set[str] = set()
    if plan.HasField("filter"):
        _expr_fields(plan.filter, out)
    for scalar in plan.computed:
        _scalar_fields(scalar, out)
    out.update(k.field for k in plan.group_by if k.WhichOneof("kind") == "field")
    for a in plan.aggregates:
        out.add(a.field)
        if a.HasField("filter"):
            _expr_fields(a.filter, out)
    if not plan.aggregates and not plan.group_by:
        out.update(plan.select_fields)
        out.update(o.field for o in plan.order_by)
    out.discard(TIMESTAMP)
    out.discard("")
    return {name for name in out if not is_computed(name)}


@dataclass
class _Stats:
    rows_scanned: int = 0
    rows_matched: int = 0
    segments_scanned: int = 0
    segments_skipped: int = 0

    def proto(self) -> plan_pb2.ScanStats:
        return plan_pb2.ScanStats(
            rows_scanned=self.rows_scanned,
            rows_matched=self.rows_matched,
            segments_scanned=self.segments_scanned,
            segments_skipped=self.segments_skipped,
        )


def _scan(
    plan: plan_pb2.QueryPlan, segments: Iterable[SegmentView], stats: _Stats
) -> Iterator[tuple[ScanSegment, Index]]:
    """The non-empty segments that neither the time range nor the filter's statistics exclude,
    each with its selected rows (ascending). Segments wholly outside the range are skipped
    unread; so are segments whose column stats prove the filter false or unknown everywhere."""
    tr = plan.time_range
    start = tr.start_us if tr.HasField("start_us") else None
    end = tr.end_us if tr.HasField("end_us") else None
    empty_range = start is not None and end is not None and start >= end
    flt = Filter(plan.filter) if plan.HasField("filter") else None
    computed = ComputedColumns(plan.computed) if plan.computed else None
    for view in segments:
        if view.row_count == 0:
            continue
        if (
            empty_range
            or (start is not None and view.max_ts < start)
            or (end is not None and view.min_ts >= end)
            or (flt is not None and not flt.may_match(view))
        ):
            stats.segments_skipped += 1
            continue
        stats.segments_scanned += 1
        stats.rows_scanned += view.row_count
        seg = ScanSegment(view, computed)
        mask: Mask | None = None
        if start is not None and view.min_ts < start:
            mask = seg.timestamps >= start
        if end is not None and view.max_ts >= end:
            below = seg.timestamps < end
            mask = below if mask is None else mask & below
        if flt is not None:
            true = flt.true(seg)
            mask = true if mask is None else mask & true
        sel = np.arange(seg.n, dtype=np.intp) if mask is None else np.flatnonzero(mask)
        stats.rows_matched += len(sel)
        yield seg, sel


# -- entry points --------------------------------------------------------------------------------


def execute(plan: plan_pb2.QueryPlan, segments: Iterable[SegmentView]) -> plan_pb2.PartialResult:
    """The partial result of `plan` over `segments` (views holding at least `fields_needed`)."""
    check_plan(plan)
    stats = _Stats()
    result = plan_pb2.PartialResult()
    scanned = _scan(plan, segments, stats)
    if plan.aggregates or plan.group_by:
        aggregate(plan, scanned, result.group_columns)
    else:
        result.rows.extend(raw_rows(plan, scanned))
    result.stats.CopyFrom(stats.proto())
    return result


def describe(segments: Iterable[SegmentView]) -> list[events_pb2.FieldSummary]:
    """How many rows hold each (field, type), `timestamp` included as INT, sorted by name."""
    counts: dict[tuple[str, int], int] = {}
    rows = 0
    for view in segments:
        rows += view.row_count
        for key, count in view.column_counts().items():
            if key[0] != TIMESTAMP and count:
                counts[key] = counts.get(key, 0) + count
    if rows:
        counts[(TIMESTAMP, v.INT)] = rows
    # `kind` is a ValueType value held as a plain int; the stubs want the enum's NewType.
    return [
        events_pb2.FieldSummary(name=name, type=kind, count=count)  # type: ignore[arg-type]
        for (name, kind), count in sorted(counts.items())
    ]
