"""The Kafka record codec: columnar batches, event ids, upload ids, and the JSON form."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flakehouse.common.v1 import events_pb2
from flakehouse.events.batch import (
    MAX_BYTES,
    MAX_ROWS,
    _Builder,
    _ids,
    _place,
    decode_batch,
    encode_batches,
    event_id,
    event_to_json,
    upload_id_for,
)
from flakehouse.events.jsonlines import parse_json_lines_all
from flakehouse.events.junit import parse_junit_all
from flakehouse.events.model import Event
from flakehouse.events.values import BOOL, FLOAT, INT, STRING

MIXED: list[Event] = [
    {"timestamp": 10, "name": "a", "n": 1, "status": "passed"},
    {"timestamp": 5, "n": "one", "flag": True},
    {"timestamp": -3, "n": 1.5, "name": "ü𝄞", "status": "failed"},
    {"timestamp": 7},
    {"timestamp": 8, "n": -(2**63), "big": 2**63 - 1, "flag": False, "f": -0.0},
]


def encode(events: list[Event], **kwargs: int) -> list[events_pb2.EventBatch]:
    return list(encode_batches(events, dataset="ci", upload_id="up1", **kwargs))


def test_round_trip_with_sparse_fields_and_mixed_types() -> None:
    (batch,) = encode(MIXED)
    assert batch.schema_version == 1
    assert batch.upload_id == "up1"
    assert batch.row_count == 5
    assert list(batch.timestamps) == [10, 5, -3, 7, 8]
    # Survives the wire, and decodes to the same events, types included.
    wire = events_pb2.EventBatch.FromString(batch.SerializeToString())
    decoded = decode_batch(wire)
    assert decoded == MIXED
    for got, want in zip(decoded, MIXED, strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_columns_are_one_per_field_and_type_and_sparse() -> None:
    (batch,) = encode(MIXED)
    columns = {(c.name, c.type): c for c in batch.columns}
    assert set(columns) == {
        ("name", STRING),
        ("n", INT),
        ("n", STRING),
        ("n", FLOAT),
        ("status", STRING),
        ("flag", BOOL),
        ("big", INT),
        ("f", FLOAT),
    }
    assert "timestamp" not in {c.name for c in batch.columns}
    assert list(columns[("n", INT)].rows) == [0, 4]
    assert list(columns[("n", INT)].int_values) == [1, -(2**63)]
    assert list(columns[("n", STRING)].rows) == [1]
    assert list(columns[("n", FLOAT)].float_values) == [1.5]
    assert list(columns[("flag", BOOL)].bool_values) == [True, False]
    for column in batch.columns:
        rows = list(column.rows)
        assert rows == sorted(rows) and len(set(rows)) == len(rows)
        filled = [
            n
            for n in ("string_values", "int_values", "float_values", "bool_values")
            if len(getattr(column, n))
        ]
        assert len(filled) == 1 and len(getattr(column, filled[0])) == len(rows)


def test_event_ids_are_deterministic_and_distinct() -> None:
    assert event_id("ci", "u", 0) == event_id("ci", "u", 0)
    ids = {event_id("ci", "u", i) for i in range(10_000)}
    assert len(ids) == 10_000
    assert all(0 <= i < 2**64 for i in ids)
    others = {event_id("ci", "v", 0), event_id("nightly", "u", 0), event_id("ciu", "", 0)}
    assert event_id("ci", "u", 0) not in others and len(others) == 3
    with pytest.raises(ValueError):
        event_id("ci", "u", -1)


def test_event_ids_continue_across_batches() -> None:
    events: list[Event] = [{"timestamp": i, "i": i} for i in range(25)]
    batches = encode(events, max_rows=10)
    assert [b.row_count for b in batches] == [10, 10, 5]
    ids = [i for b in batches for i in b.event_ids]
    assert ids == [event_id("ci", "up1", i) for i in range(25)]
    # The same upload encoded again gives the same ids: a retry is recognisable.
    assert [i for b in encode(events, max_rows=7) for i in b.event_ids] == ids
    assert [e for b in batches for e in decode_batch(b)] == events


def test_upload_ids() -> None:
    digest = b"\x01" * 32
    first = upload_id_for("ci", {"branch": "main", "job": "x"}, digest)
    assert len(first) == 32 and int(first, 16) >= 0
    assert first == upload_id_for("ci", {"job": "x", "branch": "main"}, digest)
    different = {
        upload_id_for("nightly", {"branch": "main", "job": "x"}, digest),
        upload_id_for("ci", {"branch": "main", "job": "y"}, digest),
        upload_id_for("ci", {"branch": "main"}, digest),
        upload_id_for("ci", {"branch": "main", "job": "x"}, b"\x02" * 32),
        upload_id_for("ci", {"branch": "mainjob", "": "x"}, digest),
    }
    assert first not in different and len(different) == 5


def test_batches_stay_under_max_bytes() -> None:
    rng = random.Random(7)
    events: list[Event] = []
    for i in range(3000):
        event: Event = {"timestamp": 1_700_000_000_000_000 + i, "name": f"test_{i}"}
        if rng.random() < 0.3:
            event["stack"] = "é" * rng.randint(0, 8192)
        if rng.random() < 0.5:
            event[f"prop.k{rng.randint(0, 300)}"] = rng.choice([1, 2.5, True, "v" * 50])
        event["line"] = rng.randint(-(2**40), 2**40)
        events.append(event)
    max_bytes = 64 * 1024
    batches = encode(events, max_bytes=max_bytes)
    assert len(batches) > 10
    sizes = [b.ByteSize() for b in batches]
    assert max(sizes) <= max_bytes
    # The estimate is conservative but not absurdly so: batches are reasonably full.
    assert sum(sizes[:-1]) / len(sizes[:-1]) > max_bytes / 2
    assert [e for b in batches for e in decode_batch(b)] == events


def test_default_batches_are_under_one_mib() -> None:
    events: list[Event] = [
        {"timestamp": i, "stdout": "x" * 8192, "stack": "y" * 8192, "name": str(i)}
        for i in range(500)
    ]
    batches = encode(events)
    assert len(batches) > 1
    assert all(b.ByteSize() <= 768 * 1024 for b in batches)


def test_an_event_larger_than_a_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="more than a batch may hold"):
        encode([{"timestamp": 1, "big": "x" * 2000}], max_bytes=1000)


@pytest.mark.parametrize(
    "event", [{"name": "no timestamp"}, {"timestamp": "2026-01-01"}, {"timestamp": True}]
)
def test_events_need_an_int_timestamp(event: Event) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        encode([event])


def test_non_scalar_values_are_refused() -> None:
    with pytest.raises(TypeError):
        encode([{"timestamp": 1, "x": [1]}])  # type: ignore[dict-item]


def test_empty_input_gives_no_batch() -> None:
    assert encode([]) == []


def test_decode_rejects_inconsistent_batches() -> None:
    (batch,) = encode(MIXED)
    short = events_pb2.EventBatch()
    short.CopyFrom(batch)
    short.row_count = 4
    with pytest.raises(ValueError, match="row_count"):
        decode_batch(short)
    broken = events_pb2.EventBatch()
    broken.CopyFrom(batch)
    broken.columns[0].rows.append(1)
    with pytest.raises(ValueError, match="rows but"):
        decode_batch(broken)
    beyond = events_pb2.EventBatch()
    beyond.CopyFrom(batch)
    beyond.columns[0].rows[-1] = 99
    with pytest.raises(ValueError, match="row 99"):
        decode_batch(beyond)


def test_event_to_json() -> None:
    line = event_to_json({"name": "t", "timestamp": 1793534400123456, "ok": True, "d": 0.5})
    assert line == ('{"timestamp":"2026-11-01T12:00:00.123456Z","name":"t","ok":true,"d":0.5}')
    assert "\n" not in event_to_json({"timestamp": 0, "stack": "a\nb"})
    assert json.loads(event_to_json({"timestamp": 0, "s": "é"}))["s"] == "é"
    with pytest.raises(ValueError):
        event_to_json({"timestamp": 0, "x": float("nan")})


def test_json_round_trip_through_parse_json_lines() -> None:
    data = "\n".join(event_to_json(e) for e in MIXED).encode()
    back = parse_json_lines_all(io.BytesIO(data), filename="x", upload_time_us=0)
    assert back == MIXED
    for got, want in zip(back, MIXED, strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}


def test_junit_to_json_to_events_round_trip() -> None:
    xml = b"""<testsuite name="S" timestamp="2026-11-01T12:00:00.5" hostname="h">
      <properties><property name="java.version" value="21"/></properties>
      <testcase classname="C" name="t" time="1,234.5" line="3">
        <failure message="m" type="E">trace
  at x</failure><system-out>out</system-out></testcase>
      <testcase name="flaky"><flakyFailure/></testcase>
    </testsuite>"""
    events = parse_junit_all(io.BytesIO(xml), filename="x", upload_time_us=0, labels={"b": "m"})
    data = "\n".join(event_to_json(e) for e in events).encode()
    assert parse_json_lines_all(io.BytesIO(data), filename="y", upload_time_us=1) == events


def exact_batches(
    events: list[Event], max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES
) -> Iterator[events_pb2.EventBatch]:
    """The batches of the exact path alone, event by event: what the block path must match."""
    id_of = _ids("ci", "up1")
    builder = _Builder("up1", 0)
    for position, event in enumerate(events):
        builder = yield from _place(builder, event, position, id_of(position), max_rows, max_bytes)
    if builder.timestamps:
        yield builder.build()


def outcome(batches: Iterator[events_pb2.EventBatch]) -> tuple[list[bytes], str | None]:
    """The bytes of every batch handed out, and the error that ended them, if any."""
    out: list[bytes] = []
    try:
        for batch in batches:
            out.append(batch.SerializeToString())
    except (ValueError, TypeError) as err:
        return out, f"{type(err).__name__}: {err}"
    return out, None


def wide_events(count: int) -> list[Event]:
    rng = random.Random(count)
    return [
        {
            "timestamp": 1_700_000_000_000_000 + i,
            "name": f"test_{rng.randrange(20_000)}",
            "commit": "c386bbc4cd613e30d8f16adf91b7584a2265b1f5",
            "job": "unit-tests (ubuntu-latest, 3.12)",
            "pipeline_id": 123456789,
            "duration": rng.random(),
            **({"message": "é" * rng.randrange(300)} if rng.random() < 0.1 else {}),
        }
        for i in range(count)
    ]


def test_blocks_too_large_for_a_batch_are_cut_column_by_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = wide_events(12_000)
    expected = outcome(exact_batches(events, max_bytes=200_000))
    assert len(expected[0]) > 6 and expected[1] is None
    # Cut by the block path: the event-by-event path is not taken at all.
    monkeypatch.setattr(_Builder, "add", None)
    assert outcome(encode_batches(events, dataset="ci", upload_id="up1", max_bytes=200_000)) == (
        expected
    )


KINDS = [
    st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-100, max_value=100),
    st.sampled_from([2**40, 2**40 + 1, 2**41 - 1, -(2**40), 0]),
    st.floats(allow_nan=False),
    st.booleans(),
]


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    # Each field keeps one type in most examples (so that blocks take the block path), and
    # gets a second one in others.
    fields = {name: draw(st.sampled_from(KINDS)) for name in ("name", "n", "flag", "d", "msg")}
    mixed = draw(st.booleans())
    events: list[Event] = []
    for i in range(draw(st.integers(min_value=0, max_value=60))):
        event: Event = {"timestamp": draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))}
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=5)):
            kind = draw(st.sampled_from(KINDS)) if mixed and draw(st.booleans()) else fields[name]
            event[name] = draw(kind)
        if i % 7 == 3 and draw(st.booleans()):
            event = dict(reversed(event.items()))
        events.append(event)
    return events


@settings(max_examples=400, deadline=None)
@given(
    events=event_lists(),
    max_rows=st.integers(min_value=1, max_value=25),
    max_bytes=st.integers(min_value=60, max_value=1500),
)
def test_block_and_exact_paths_give_the_same_bytes(
    events: list[Event], max_rows: int, max_bytes: int
) -> None:
    expected = outcome(exact_batches(events, max_rows, max_bytes))
    got = outcome(
        encode_batches(
            events, dataset="ci", upload_id="up1", max_rows=max_rows, max_bytes=max_bytes
        )
    )
    assert got == expected
