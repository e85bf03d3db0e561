"""Storage apply benchmark: the storage benchmark's generated events (storage_events.py) as Kafka
records, serialized EventBatches of `--record-rows` events each, applied to one partition
through Replica.apply into a real SegmentStore on disk, with the default dedupe window, in polls
of about 50,000 events, sealing every 100,000 rows as the node does; then every record applied
again (copies, as a second replication path would bring them).

`python -m benchmarks.storage_apply [--events N] [--record-rows R ...]`. Each record size runs in
a fresh process. Reported per size: the first pass's apply time (decoding, dedupe, the open
segment; seals excluded) and seal time, and the second pass's time and the rows it added again
(the copies older than the dedupe window, unless something else drops them). The records are
encoded before the clock starts."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.storage_events import STRING_FIELDS, Events, generate
from benchmarks.storage_store import in_process

DATASET = "bench"
SEAL_ROWS = 100_000
POLL_EVENTS = 50_000
DEDUPE_WINDOW = 500_000
"""The service default (FLAKEHOUSE_STORAGE_DEDUPE_WINDOW)."""


def _record(events: Events, start: int, stop: int) -> bytes:
    """The serialized EventBatch of events [start, stop), as ingest would write it."""
    from flakehouse.common.v1 import events_pb2

    batch = events_pb2.EventBatch(schema_version=1, upload_id=f"u{start}", row_count=stop - start)
    batch.timestamps.extend(events.timestamps[start:stop].tolist())
    batch.event_ids.extend(events.event_ids[start:stop].tolist())
    for field in STRING_FIELDS:
        codes = events.codes[field][start:stop]
        rows = np.flatnonzero(codes >= 0)
        if len(rows):
            col = batch.columns.add(name=field, type=events_pb2.VALUE_TYPE_STRING)
            col.rows.extend(rows.tolist())
            dictionary = events.dictionaries[field]
            col.string_values.extend([dictionary[c] for c in codes[rows].tolist()])
    duration = events.duration[start:stop]
    rows = np.flatnonzero(~np.isnan(duration))
    col = batch.columns.add(name="duration", type=events_pb2.VALUE_TYPE_FLOAT)
    col.rows.extend(rows.tolist())
    col.float_values.extend(duration[rows].tolist())
    rows = np.flatnonzero(events.has_retries[start:stop])
    if len(rows):
        col = batch.columns.add(name="retries", type=events_pb2.VALUE_TYPE_INT)
        col.rows.extend(rows.tolist())
        col.int_values.extend(events.retries[start:stop][rows].tolist())
    return batch.SerializeToString()


def _apply_pass(
    replica: Any, records: list[bytes], first_offset: int, per_poll: int, policy: Any
) -> dict[str, Any]:
    """Applies `records` from Kafka offset `first_offset`, `per_poll` at a time, sealing when
    due after each poll as the node does."""
    apply_s = seal_s = 0.0
    rows = duplicates = 0
    for at in range(0, len(records), per_poll):
        poll = [(first_offset + at + i, r) for i, r in enumerate(records[at : at + per_poll])]
        t0 = time.perf_counter()
        result = replica.apply(poll)
        t1 = time.perf_counter()
        replica.seal_if_due(policy)
        seal_s += time.perf_counter() - t1
        apply_s += t1 - t0
        rows += result.rows
        duplicates += result.duplicates
    t1 = time.perf_counter()
    replica.seal_if_due(policy, True)
    seal_s += time.perf_counter() - t1
    return {"apply_s": apply_s, "seal_s": seal_s, "rows": rows, "duplicates": duplicates}


def run(n: int, record_rows: int) -> dict[str, Any]:
    """Both passes over `n` events in records of `record_rows` (runs in its own process)."""
    from flakehouse.storage.replica import Replica, SealPolicy
    from flakehouse.storage.store import SegmentStore

    events = generate(n)
    records = [_record(events, s, min(s + record_rows, n)) for s in range(0, n, record_rows)]
    del events
    policy = SealPolicy(rows=SEAL_ROWS, bytes=1 << 40, age_s=1e9)
    per_poll = max(1, POLL_EVENTS // record_rows)
    with tempfile.TemporaryDirectory(prefix="flakehouse-bench-") as tmp:
        store = SegmentStore(os.path.join(tmp, "segments.rocksdb"))
        try:
            replica = Replica(DATASET, 0, store, DEDUPE_WINDOW)
            first = _apply_pass(replica, records, 0, per_poll, policy)
            again = _apply_pass(replica, records, len(records), per_poll, policy)
        finally:
            store.close()
    return {"records": len(records), "first": first, "again": again}


def storage_apply(n: int, sizes: Sequence[int]) -> None:
    print(
        f"storage apply: {n:,} events through Replica.apply into a SegmentStore on disk, one "
        f"partition, dedupe window {DEDUPE_WINDOW:,}, polls of ~{POLL_EVENTS:,} events, sealed "
        f"every {SEAL_ROWS:,} rows; then every record again"
    )
    print(
        f"  {'events/record':>13} {'records':>9} {'apply s':>8} {'events/s':>10} {'seal s':>7}"
        f" {'again s':>8} {'added again':>12}"
    )
    for size in sizes:
        got = in_process(run, n, size)
        first, again = got["first"], got["again"]
        print(
            f"  {size:>13,} {got['records']:>9,} {first['apply_s']:8.2f} "
            f"{n / first['apply_s']:10,.0f} {first['seal_s']:7.2f} "
            f"{again['apply_s'] + again['seal_s']:8.2f} {again['rows']:>12,}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storage_apply")
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--record-rows", type=int, nargs="+", default=[1000, 10])
    args = parser.parse_args(argv)
    storage_apply(args.events, args.record_rows)


if __name__ == "__main__":
    main()
