"""Pull throughput between two local clusters (issue 19): `flakehouse up` twice on this machine
(each with its own CA, tokens, broker and one storage node; both share this machine's cores),
A holding `events` events in 8 partitions, then a link on B pulling them.

Reported: the backlog pull (from the link's creation until B's link is caught up, and until
every event is queryable on B), in events per second; then, with the link caught up, a report
uploaded on A until it is queryable on B (median of a few), the delay a user sees."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.junitgen import report
from flakehouse.replication.v1 import replication_pb2
from tests.linked import DATASET, Site

CASES_PER_REPORT = 5000


def _count(site: Site) -> int:
    with site.client() as client:
        answer = client.query(f"SELECT count(*) FROM {DATASET}")
    return int(answer.rows[0][0]) if answer.rows and not answer.partial else -1


def pull(events: int, samples: int = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="flakehouse-links-") as tmp:
        root = Path(tmp)
        a = Site("a", root, partitions=8)
        b = Site("b", root, partitions=8)
        try:
            for site in (a, b):
                site.start()
            reports = max(1, events // CASES_PER_REPORT)
            a.upload(range(reports), cases=CASES_PER_REPORT)
            held = sum(a.sent.values())
            while _count(a) != held:
                time.sleep(0.2)
            started = time.perf_counter()
            b.pull_from(a)
            caught_up = queryable = None
            while queryable is None:
                if caught_up is None:
                    (link,) = b.link_statuses()
                    if link.state == replication_pb2.LINK_STATE_CAUGHT_UP:
                        caught_up = time.perf_counter() - started
                if _count(b) == held:
                    queryable = time.perf_counter() - started
                time.sleep(0.1)
            caught_up = caught_up or queryable
            print(f"link pull between two local clusters: {held:,} events in {reports} reports")
            print(
                f"  backlog: link caught up {caught_up:6.1f} s {held / caught_up:9,.0f} events/s;"
                f" all queryable on B {queryable:6.1f} s {held / queryable:9,.0f} events/s"
            )
            delays = []
            with a.client() as client:
                for seed in range(samples):
                    data = report(10_000 + seed, cases=200)
                    before = _count(b)
                    sent = time.perf_counter()
                    added = client.upload(data, dataset=DATASET, filename=f"live{seed}.xml").events
                    while _count(b) != before + added:
                        time.sleep(0.02)
                    delays.append(time.perf_counter() - sent)
            print(
                f"  live: a 200-test report uploaded on A is queryable on B in "
                f"{statistics.median(delays):.2f} s (median of {samples}; "
                f"{min(delays):.2f}-{max(delays):.2f} s)"
            )
        finally:
            for site in (a, b):
                site.stop()
