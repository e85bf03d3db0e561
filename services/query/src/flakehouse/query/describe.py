"""DESCRIBE: a dataset's fields summed over its partitions' DescribeFields answers, and the
result table a DESCRIBE statement answers with."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from flakehouse.common.v1 import events_pb2
from flakehouse.events.values import TYPE_NAMES
from flakehouse.query.knownfields import KnownFields
from flakehouse.query.sql.syntax import TIMESTAMP
from flakehouse.query.v1 import query_pb2
from flakehouse.storage.v1 import storage_pb2


def field_summaries(
    responses: Iterable[storage_pb2.DescribeFieldsResponse],
) -> list[events_pb2.FieldSummary]:
    """Every (field, type) with the number of events holding it, summed over partitions, sorted
    by field then type."""
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for response in responses:
        for summary in response.fields:
            counts[(summary.name, summary.type)] += summary.count
    return [
        events_pb2.FieldSummary(name=n, type=events_pb2.ValueType.ValueType(t), count=c)
        for (n, t), c in sorted(counts.items())
    ]


def describe_table(
    fields: list[events_pb2.FieldSummary],
) -> tuple[list[query_pb2.ResultColumn], list[events_pb2.Row]]:
    """The fields as a result table: field, type, events holding it, their share."""
    # Every event has a timestamp: its count is the number of events (0: no fields at all).
    events = sum(f.count for f in fields if f.name == TIMESTAMP) or 1
    string, integer, real = (
        events_pb2.VALUE_TYPE_STRING,
        events_pb2.VALUE_TYPE_INT,
        events_pb2.VALUE_TYPE_FLOAT,
    )
    columns = [
        query_pb2.ResultColumn(name=n, type=t)
        for n, t in (("field", string), ("type", string), ("events", integer), ("share", real))
    ]
    rows = [
        events_pb2.Row(
            values=[
                events_pb2.Value(string_value=f.name),
                events_pb2.Value(string_value=TYPE_NAMES.get(f.type, "unknown")),
                events_pb2.Value(int_value=f.count),
                events_pb2.Value(float_value=f.count / events),
            ]
        )
        for f in fields
    ]
    return columns, rows


def known_fields(
    fields: list[events_pb2.FieldSummary], complete: bool, generation: int
) -> KnownFields:
    """What a DESCRIBE tells the field catalog (knownfields.py): the names, and how many events
    there are (the count of `timestamp`)."""
    return KnownFields(
        names=frozenset(f.name for f in fields),
        events=sum(f.count for f in fields if f.name == TIMESTAMP),
        complete=complete,
        generation=generation,
    )
