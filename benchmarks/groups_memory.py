"""What a query with a million groups costs, the figure behind the query service's `max_groups`:
a storage node's fragment over 1,000,000 distinct test names, then the query service's merge of
two such partials (two partitions that hold the same names) and its answer. Each side runs in a
fresh process; its peak is the rise of its peak RSS over what it held before the query (the
kernel's high-water mark is reset first), with tracemalloc's peak of Python and numpy
allocations beside it (protobuf's own memory is not in that one).

`python -m benchmarks groups`: a million groups from two partitions, then the default
max_groups (100,000) from the default 8 partitions. The plans run with max_groups 0 (no
limit)."""

from __future__ import annotations

import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.storage_store import in_process

EVENTS_PER_GROUP = 2
SEGMENT_ROWS = 100_000
QUERIES = {
    "count, avg, max": "SELECT name, count(*) AS runs, avg(duration), max(duration) FROM bench"
    " GROUP BY name ORDER BY runs DESC LIMIT 20",
    "p95": "SELECT name, p95(duration) AS p FROM bench GROUP BY name ORDER BY p DESC LIMIT 20",
}


def _rss_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


class _Peak:
    """Peak memory of what runs between start and stop: RSS above the start, and tracemalloc."""

    def __enter__(self) -> _Peak:
        # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0 and later).
        Path("/proc/self/clear_refs").write_text("5")
        self.base_kb = _rss_kb("VmRSS")
        tracemalloc.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.traced_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        self.rss_mb = (_rss_kb("VmHWM") - self.base_kb) / 1024


def _views(groups: int) -> list[Any]:
    """Segments of one partition: every one of `groups` names EVENTS_PER_GROUP times, with a
    duration each, shuffled, in segments of SEGMENT_ROWS rows as storage seals them."""
    import numpy as np

    from flakehouse.events import values as v
    from flakehouse.storage.segment import ColumnView, SegmentView

    rng = np.random.default_rng(15)
    names = np.array([f"com.acme.Suite{i % 997}.test_case_{i:07d}" for i in range(groups)])
    picks = rng.permutation(np.repeat(np.arange(groups), EVENTS_PER_GROUP))
    durations = rng.lognormal(0, 1, len(picks))
    views = []
    for start in range(0, len(picks), SEGMENT_ROWS):
        chunk = picks[start : start + SEGMENT_ROWS]
        used, codes = np.unique(chunk, return_inverse=True)
        dictionary = np.empty(len(used), dtype=object)
        dictionary[:] = names[used].tolist()
        rows = np.arange(len(chunk), dtype=np.uint32)
        views.append(
            SegmentView(
                row_count=len(chunk),
                min_ts=start,
                max_ts=start + len(chunk) - 1,
                timestamps=np.arange(start, start + len(chunk), dtype=np.int64),
                event_ids=np.arange(start, start + len(chunk), dtype=np.uint64),
                columns={
                    "name": {
                        v.STRING: ColumnView(
                            rows, codes=codes.astype(np.uint32), dictionary=dictionary
                        )
                    },
                    "duration": {
                        v.FLOAT: ColumnView(rows, values=durations[start : start + len(chunk)])
                    },
                },
            )
        )
    return views


def storage_side(groups: int, sql: str, out: str) -> dict[str, float]:
    """A storage node's fragment over the views of one partition; writes the partial to `out`
    as it would go on the wire."""
    from flakehouse.query.sql import plan_query
    from flakehouse.storage import fragment

    views = _views(groups)
    plan = plan_query(sql, now_us=0).plan
    with _Peak() as peak:
        partial = fragment.execute(plan, views)
        data = partial.SerializeToString()
    assert partial.group_columns.size == groups, partial.group_columns.size
    Path(out).write_bytes(data)
    return {
        "seconds": peak.seconds,
        "rss_mb": peak.rss_mb,
        "traced_mb": peak.traced_mb,
        "wire_mb": len(data) / 2**20,
    }


def query_side(groups: int, sql: str, partial_path: str, partials: int) -> dict[str, float]:
    """The query service's side: `partials` answers (the same groups in each) parsed from their
    bytes as they arrive, merged, and the answer built."""
    from flakehouse.common.v1 import plan_pb2
    from flakehouse.query.answer import to_response
    from flakehouse.query.merge import merge_partials
    from flakehouse.query.sql import plan_query

    planned = plan_query(sql, now_us=0)
    data = Path(partial_path).read_bytes()
    with _Peak() as peak:
        started = time.perf_counter()
        received = [plan_pb2.PartialResult.FromString(data) for _ in range(partials)]
        parsed = time.perf_counter()
        merged = merge_partials(planned, received)
        done_merge = time.perf_counter()
        response = to_response(planned, merged, columnar=True)
    assert merged.size == groups and len(response.column_values[0].types) == 20
    return {
        "seconds": peak.seconds,
        "parse_s": parsed - started,
        "merge_s": done_merge - parsed,
        "answer_s": peak.seconds - (done_merge - started),
        "rss_mb": peak.rss_mb,
        "traced_mb": peak.traced_mb,
    }


CASES = [(1_000_000, 2), (100_000, 8)]
"""(groups, partials): a million groups from two partitions; and the default max_groups from
the default 8 partitions of a dataset, every partition holding every group."""


def groups_memory(cases: list[tuple[int, int]] = CASES) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for groups, partials in cases:
            print(
                f"{groups:,} groups: {groups * EVENTS_PER_GROUP:,} events and {groups:,} names "
                f"per partition; the query service merges {partials} partials"
            )
            for label, sql in QUERIES.items():
                out = str(Path(tmp) / "partial.bin")
                store = in_process(storage_side, groups, sql, out)
                query = in_process(query_side, groups, sql, out, partials)
                print(f"  {label}: {sql}")
                print(
                    f"    storage fragment {store['seconds']:6.2f} s  peak RSS +"
                    f"{store['rss_mb']:5.0f} MB  tracemalloc {store['traced_mb']:5.0f} MB  "
                    f"{store['wire_mb']:.0f} MB on the wire"
                )
                print(
                    f"    query merge      {query['seconds']:6.2f} s  peak RSS +"
                    f"{query['rss_mb']:5.0f} MB  tracemalloc {query['traced_mb']:5.0f} MB  "
                    f"(parse {query['parse_s']:.2f} s, merge {query['merge_s']:.2f} s, answer "
                    f"{query['answer_s']:.2f} s)"
                )


if __name__ == "__main__":
    groups_memory()
