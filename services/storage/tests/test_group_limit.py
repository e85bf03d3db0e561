"""A plan's max_groups: past it a fragment stops, at the segment whose groups cross it and before
any later segment is read, and the storage API answers RESOURCE_EXHAUSTED naming the limit."""

from __future__ import annotations

from typing import Any

import pytest

from flakehouse.core.errors import ResourceExhausted
from flakehouse.storage import fragment
from flakehouse.storage.aggregate import TooManyGroups
from flakehouse.storage.api import StorageApi
from flakehouse.storage.segment import SegmentView
from flakehouse.storage.v1 import storage_pb2
from services.storage.tests.fake_replicas import Context, FakeNode, FakeReplica

MESSAGE = (
    "the query holds more than {} groups (max_groups); narrow it with WHERE or fewer GROUP BY keys"
)


def _chunks() -> list[list[dict[str, Any]]]:
    """Three segments of 4 new names each: 4, 8 and 12 groups after each."""
    return [[{"timestamp": s * 10 + i, "name": f"n{s}-{i}"} for i in range(4)] for s in range(3)]


class _Counted:
    """Views that count which segments were decoded."""

    def __init__(self, views: list[SegmentView]) -> None:
        self.read: list[int] = []
        self.views = [self._lazy(i, view) for i, view in enumerate(views)]

    def _lazy(self, i: int, view: SegmentView) -> SegmentView:
        def load() -> Any:
            self.read.append(i)
            return view.timestamps, view.columns

        return SegmentView(
            row_count=view.row_count,
            min_ts=view.min_ts,
            max_ts=view.max_ts,
            loader=load,
            ids_loader=lambda: view.event_ids,
        )


@pytest.mark.parametrize(("limit", "stops_after"), [(3, 0), (4, 1), (7, 1), (11, 2)])
def test_past_the_limit_the_fragment_stops(kit: Any, limit: int, stops_after: int) -> None:
    _, sealed = kit.views(*_chunks())
    counted = _Counted(sealed)
    plan = kit.plan(group_by=["name"], aggregates=[kit.agg("count")], max_groups=limit)
    with pytest.raises(TooManyGroups) as raised:
        fragment.execute(plan, counted.views)
    assert str(raised.value) == MESSAGE.format(limit)
    assert counted.read == list(range(stops_after + 1))


@pytest.mark.parametrize("limit", [0, 12, 1000])
def test_within_the_limit_or_without_one_the_answer_is_whole(kit: Any, limit: int) -> None:
    plan = kit.plan(group_by=["name"], aggregates=[kit.agg("count")], max_groups=limit)
    assert kit.run(plan, *_chunks()).group_columns.size == 12
    # The limit counts groups, not rows: one group of 12 rows is within a limit of 1.
    total = kit.plan(aggregates=[kit.agg("count")], max_groups=1)
    assert list(kit.run(total, *_chunks()).group_columns.states[0].counts) == [12]


async def test_the_api_answers_resource_exhausted(kit: Any) -> None:
    _, sealed = kit.views(*_chunks())

    class Holding(FakeReplica):
        def snapshot(self, fields: Any) -> list[Any]:
            return sealed

    node = FakeNode({0: Holding(end_offset=0, online=True)})
    plan = kit.plan(group_by=["name"], aggregates=[kit.agg("count")], max_groups=5)
    request = storage_pb2.ExecuteFragmentRequest(plan=plan, partitions=[0])
    with pytest.raises(ResourceExhausted) as raised:
        await StorageApi(node).ExecuteFragment(request, Context(5.0))  # type: ignore[arg-type]
    assert raised.value.status == "RESOURCE_EXHAUSTED"
    assert raised.value.message == MESSAGE.format(5)
    request.plan.max_groups = 12
    answer = await StorageApi(node).ExecuteFragment(request, Context(5.0))  # type: ignore[arg-type]
    assert answer.result.group_columns.size == 12
