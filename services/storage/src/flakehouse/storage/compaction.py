"""Background merge of small sealed segments into fewer, larger ones: sealing by age under a
trickle of uploads leaves many small segments, and each costs per-segment work in every query.

Pure code: which segments to merge, and the merge itself (rows are replayed, in order, through
the same SegmentBuilder that built them). The store swaps them in one WriteBatch."""

from __future__ import annotations

from collections.abc import Sequence

from flakehouse.common.v1 import events_pb2
from flakehouse.events import values as v
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import decode_segment
from flakehouse.storage.v1 import storage_pb2

_VALUE_FIELDS: dict[int, str] = {
    v.INT: "int_values",
    v.FLOAT: "float_values",
    v.BOOL: "bool_values",
    v.STRING: "string_values",
}


def pick_run(
    metas: Sequence[storage_pb2.Segment], small_rows: int, max_rows: int, min_count: int
) -> list[storage_pb2.Segment]:
    """The oldest run of consecutive small segments worth merging: at least min_count of them,
    each under small_rows, together at most max_rows. Empty when there is none."""
    run: list[storage_pb2.Segment] = []
    for meta in sorted(metas, key=lambda m: m.sequence):
        if (
            meta.row_count < small_rows
            and sum(m.row_count for m in run) + meta.row_count <= max_rows
        ):
            run.append(meta)
            continue
        if len(run) >= min_count:
            return run
        run = [meta] if meta.row_count < small_rows else []
    return run if len(run) >= min_count else []


def segment_to_batch(segment: storage_pb2.Segment) -> events_pb2.EventBatch:
    """A sealed segment's rows as an EventBatch, as if they came from Kafka again."""
    view = decode_segment(segment)
    batch = events_pb2.EventBatch(row_count=view.row_count)
    batch.timestamps.extend(view.timestamps.tolist())
    batch.event_ids.extend(view.event_ids.tolist())
    for name, by_type in sorted(view.columns.items()):
        for kind, column in sorted(by_type.items()):
            out = batch.columns.add(name=name, type=kind)
            out.rows.extend(column.rows.tolist())
            if column.codes is not None and column.dictionary is not None:
                values = column.dictionary[column.codes].tolist()
            else:
                assert column.values is not None
                values = column.values.tolist()
            getattr(out, _VALUE_FIELDS[kind]).extend(values)
    return batch


def merge_segments(segments: Sequence[storage_pb2.Segment]) -> storage_pb2.Segment:
    """One segment with the rows of `segments` (of one partition), in sequence order; it takes
    the smallest sequence and spans their offsets."""
    ordered = sorted(segments, key=lambda s: s.sequence)
    first = ordered[0]
    builder = SegmentBuilder(first.dataset, first.partition, first.sequence)
    for segment in ordered:
        builder.add(segment_to_batch(segment), segment.last_offset)
    merged = builder.seal()
    merged.first_offset = first.first_offset
    merged.last_offset = ordered[-1].last_offset
    return merged
