"""How long a replica has been behind the end it knows of (PartitionProgress.behind_ms): from
the moment it first knew of a record it had not applied, until it applied everything."""

from __future__ import annotations

from pathlib import Path

from flakehouse.storage.replica import Replica
from flakehouse.storage.store import SegmentStore


def test_behind_time_starts_when_records_are_known_and_ends_when_they_are_applied(
    tmp_path: Path,
) -> None:
    store = SegmentStore(str(tmp_path / "db"))
    try:
        replica = Replica("ci", 0, store, 1000)
        replica.track_behind(10.0)
        assert replica.behind_s(11.0) == 0.0  # end not known: not behind anything
        replica.end_offset = 0
        replica.track_behind(12.0)
        assert replica.behind_s(13.0) == 0.0
        replica.end_offset = 5  # it learns of five records at 14.0
        replica.track_behind(14.0)
        replica.end_offset = 9  # and of more: still behind since 14.0
        replica.track_behind(15.0)
        assert replica.behind_s(16.5) == 2.5
        replica.next_offset = 9  # applied them all
        replica.track_behind(17.0)
        assert replica.behind_s(18.0) == 0.0
    finally:
        store.close()
