"""The columnar format: open segment, sealed protobuf layout, decoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from flakehouse.events import values as v
from flakehouse.storage.builder import SegmentBuilder
from flakehouse.storage.codec import FORMAT_VERSION, decode_segment, validate_segment
from flakehouse.storage.segment import SegmentView

EVENTS = [
    {"timestamp": 300, "_id": 1, "status": "passed", "duration": 1.5, "retries": 0},
    {"timestamp": 100, "_id": 2, "status": "failed", "duration": 2, "flaky": True},
    {"timestamp": 200, "_id": 3, "status": "error", "retries": 3, "flaky": False},
    {"timestamp": 400, "_id": 4, "status": 7},
]


def _as_dicts(view: SegmentView) -> list[dict[str, Any]]:
    """Rows of a view back as event dicts, for comparing views whatever their encoding."""
    rows: list[dict[str, Any]] = [
        {"timestamp": int(ts), "_id": int(i)}
        for ts, i in zip(view.timestamps, view.event_ids, strict=True)
    ]
    for name, by_type in view.columns.items():
        for kind, col in by_type.items():
            if kind == v.STRING:
                assert col.codes is not None and col.dictionary is not None
                items = col.dictionary[col.codes].tolist()
            else:
                assert col.values is not None
                items = col.values.tolist()
            for row, item in zip(col.rows.tolist(), items, strict=True):
                assert name not in rows[row], "a row holds two types of one field"
                rows[row][name] = item
                assert v.type_of(item) == kind
    return rows


def test_builder_view_and_sealed_segment_hold_the_events(kit: Any) -> None:
    builder = SegmentBuilder("ci", 3, 7)
    assert builder.add(kit.batch(EVENTS[:2]), offset=10) == 2
    assert builder.add(kit.batch(EVENTS[2:]), offset=11) == 2
    assert (builder.row_count, builder.first_offset, builder.last_offset) == (4, 10, 11)
    assert builder.approx_bytes > 4 * 16

    assert _as_dicts(builder.view()) == EVENTS
    segment = builder.seal()
    assert segment.format_version == FORMAT_VERSION == 1
    assert (segment.dataset, segment.partition, segment.sequence) == ("ci", 3, 7)
    assert (segment.first_offset, segment.last_offset, segment.row_count) == (10, 11, 4)
    assert (segment.min_timestamp_us, segment.max_timestamp_us) == (100, 400)
    decoded = decode_segment(segment)
    assert _as_dicts(decoded) == EVENTS
    assert (decoded.min_ts, decoded.max_ts, decoded.row_count) == (100, 400, 4)


def test_sealed_layout_is_packed_little_endian(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(EVENTS), offset=0)
    segment = builder.seal()
    assert segment.timestamps == np.array([300, 100, 200, 400], dtype="<i8").tobytes()
    assert segment.event_ids == np.array([1, 2, 3, 4], dtype="<u8").tobytes()
    chunks = {(c.name, c.type): c for c in segment.columns}
    assert sorted(chunks) == sorted(
        [
            ("status", v.STRING),
            ("status", v.INT),
            ("duration", v.FLOAT),
            ("duration", v.INT),
            ("retries", v.INT),
            ("flaky", v.BOOL),
        ]
    )
    status = chunks[("status", v.STRING)]
    assert status.count == 3
    assert status.rows == np.array([0, 1, 2], dtype="<u4").tobytes()
    # Sorted dictionary: codes order like the strings.
    assert list(status.dictionary) == ["error", "failed", "passed"]
    assert status.values == np.array([2, 1, 0], dtype="<u4").tobytes()
    assert (status.min.string_value, status.max.string_value) == ("error", "passed")
    retries = chunks[("retries", v.INT)]
    assert retries.rows == np.array([0, 2], dtype="<u4").tobytes()
    assert retries.values == np.array([0, 3], dtype="<i8").tobytes()
    assert (retries.min.int_value, retries.max.int_value) == (0, 3)
    flaky = chunks[("flaky", v.BOOL)]
    assert flaky.values == bytes([1, 0])
    assert (flaky.min.bool_value, flaky.max.bool_value) == (False, True)
    duration = chunks[("duration", v.FLOAT)]
    assert duration.values == np.array([1.5], dtype="<f8").tobytes()
    assert duration.min.WhichOneof("kind") == "float_value"


def test_skip_ids_drop_duplicates_and_keep_rows_aligned(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    assert builder.add(kit.batch(EVENTS), offset=4, skip_ids={1, 3}) == 2
    assert _as_dicts(builder.view()) == [EVENTS[1], EVENTS[3]]
    # A batch that is all duplicates adds nothing but still moves the offset.
    assert builder.add(kit.batch(EVENTS[:1]), offset=5, skip_ids={1}) == 0
    assert (builder.row_count, builder.last_offset) == (2, 5)
    segment = builder.seal()
    status = next(c for c in segment.columns if c.name == "status" and c.type == v.STRING)
    # The skipped rows' strings are not in the dictionary.
    assert list(status.dictionary) == ["failed"]
    assert _as_dicts(decode_segment(segment)) == [EVENTS[1], EVENTS[3]]


def test_view_is_cached_until_rows_are_added_and_stays_valid(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(EVENTS[:2]), offset=0)
    first = builder.view()
    assert builder.view() is first
    builder.add(kit.batch([]), offset=1)
    assert builder.view() is first
    # Enough rows to outgrow the initial buffers.
    many = [{"timestamp": i, "status": f"s{i % 7}", "retries": i} for i in range(3000)]
    builder.add(kit.batch(many), offset=2)
    second = builder.view()
    assert second is not first
    assert _as_dicts(first) == EVENTS[:2]
    assert second.row_count == 3002
    assert [{k: x for k, x in d.items() if k != "_id"} for d in _as_dicts(second)[2:]] == many


def test_string_dictionary_of_open_view_is_sorted(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch([{"timestamp": 1, "s": "b"}, {"timestamp": 2, "s": "a"}]), offset=0)
    builder.add(kit.batch([{"timestamp": 3, "s": "c"}, {"timestamp": 4, "s": "a"}]), offset=1)
    col = builder.view().columns["s"][v.STRING]
    assert col.dictionary is not None and col.codes is not None
    assert col.dictionary.tolist() == ["a", "b", "c"]
    assert col.codes.tolist() == [1, 0, 2, 0]


def test_malformed_batches_are_rejected_without_change(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(EVENTS[:1]), offset=0)
    bad = kit.batch(EVENTS[1:])
    bad.columns[0].rows.append(99)
    with pytest.raises(ValueError, match="values"):
        builder.add(bad, offset=1)
    bad = kit.batch(EVENTS[1:])
    bad.row_count = 7
    with pytest.raises(ValueError, match="row_count"):
        builder.add(bad, offset=1)
    bad = kit.batch(EVENTS[1:3])
    bad.columns[0].rows[:] = [1, 0]
    with pytest.raises(ValueError, match="ascend"):
        builder.add(bad, offset=1)
    bad = kit.batch(EVENTS[1:])
    bad.columns.append(bad.columns[0])
    with pytest.raises(ValueError, match="two columns"):
        builder.add(bad, offset=1)
    assert (builder.row_count, builder.last_offset) == (1, 0)
    assert _as_dicts(builder.view()) == EVENTS[:1]


def test_decode_only_requested_fields_and_reject_unknown_format(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(EVENTS), offset=0)
    segment = builder.seal()
    view = decode_segment(segment, fields={"retries", "nope"})
    assert set(view.columns) == {"retries"}
    assert view.column_counts()[("status", v.STRING)] == 3
    segment.format_version = 2
    with pytest.raises(ValueError, match="format_version 2"):
        decode_segment(segment)


def test_sealed_builder_refuses_rows_and_empty_seal_keeps_offsets(kit: Any) -> None:
    builder = SegmentBuilder("ci", 0, 5)
    builder.add(kit.batch([]), offset=9)
    segment = builder.seal()
    assert (segment.row_count, segment.first_offset, segment.last_offset) == (0, 9, 9)
    assert decode_segment(segment).row_count == 0
    with pytest.raises(RuntimeError):
        builder.add(kit.batch(EVENTS), offset=10)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda s: setattr(s, "min_timestamp_us", 101), "min/max"),
        (lambda s: setattr(s, "timestamps", s.timestamps[:-8]), "timestamps"),
        (lambda s: setattr(s, "event_ids", s.event_ids + b"\0" * 8), "event ids"),
        (lambda s: s.columns.append(s.columns[0]), "twice"),
        (lambda s: _chunk(s, "status", v.STRING).dictionary.reverse(), "sorted"),
        (lambda s: setattr(_chunk(s, "status", v.STRING), "values", b"\x09" * 12), "codes"),
        (
            lambda s: setattr(_chunk(s, "retries", v.INT), "rows", bytes([2, 0, 0, 0, 0, 0, 0, 0])),
            "ascend",
        ),
        (lambda s: setattr(_chunk(s, "retries", v.INT), "rows", bytes([9, 0, 0, 0] * 2)), "ascend"),
        (lambda s: setattr(_chunk(s, "retries", v.INT), "count", 3), "count"),
        (lambda s: setattr(s, "format_version", 7), "format_version"),
    ],
)
def test_validate_segment_rejects_corruption(kit: Any, corrupt: Any, message: str) -> None:
    builder = SegmentBuilder("ci", 0, 0)
    builder.add(kit.batch(EVENTS), offset=0)
    segment = builder.seal()
    validate_segment(segment)
    corrupt(segment)
    with pytest.raises(ValueError, match=message):
        validate_segment(segment)


def _chunk(segment: Any, name: str, kind: int) -> Any:
    return next(c for c in segment.columns if c.name == name and c.type == kind)
