"""Cross-cluster replication (issue 19) with real clusters: `flakehouse up` several times, each
with its own ports, data directory, CA and tokens, linked through `flakehouse links add` with a
read token of the source. Every cluster converges to exactly the union of what was ingested
anywhere, and stays there: nothing loops back, an event that arrives by two paths counts once,
and neither a puller killed mid-pull nor a source stopped for a while changes a count."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.linked import DATASET, Site, converge
from tests.support import eventually

pytestmark = [pytest.mark.processes, pytest.mark.broker]
# Storage that remembers no single event ids: copies of a record are dropped by its batch key
# alone, whatever the delay between them (services/storage, batch keys).
NO_WINDOW = {"FLAKEHOUSE_STORAGE_DEDUPE_WINDOW": "0"}


def test_two_sites_both_ways_through_a_killed_puller_and_a_stopped_source(tmp_path: Path) -> None:
    # Different partition counts: where a record lands does not depend on the source's.
    a = Site("a", tmp_path, partitions=4, ephemeral=False)
    b = Site("b", tmp_path, partitions=3, env=NO_WINDOW)
    try:
        for site in (a, b):
            site.start()
        a.upload(range(0, 40), cases=3000)  # ~130k events: a pull of many chunks
        b.upload(range(500, 504))
        # B's ingest limit holds its link back (and shows that a link respects it): the pull
        # takes seconds, and the kill comes in the middle of it.
        b.cli("quota", "set", DATASET, "--events-per-second", "20000")
        b.pull_from(a)
        a.pull_from(b)
        started = time.monotonic()

        def pulling() -> bool:
            (link,) = b.link_statuses()
            return link.events_pulled >= 20_000 and link.lag_records > 0

        eventually(pulling, "B's link in the middle of the pull", 60, interval_s=0.05)
        os.kill(b.cluster.info()["services"]["replication"]["pid"], signal.SIGKILL)
        # `flakehouse up` starts replication again; its link resumes from the checkpoint.
        expected = converge([a, b])
        assert time.monotonic() - started > sum(a.sent.values()) / 20_000 - 2  # limit kept
        b.cli("quota", "set", DATASET, "--events-per-second", "0")

        # No loop: what each side pulls back of its own is left out; nothing grows.
        (a_link,) = a.link_statuses()
        assert a_link.events_pulled == sum(b.sent.values())
        time.sleep(3)
        assert a.counts() == b.counts() == expected
        assert a.link_statuses()[0].events_pulled == a_link.events_pulled

        # The source away for a while: B's link fails, retries, and resumes where it was; a
        # report added on either side meanwhile reaches the other.
        a.stop()
        b.upload(range(504, 506))
        eventually(lambda: b.links()[0]["state"] == "failing", "B's link failing", 60)
        time.sleep(3)
        a.restart()
        a.upload(range(40, 42))
        converge([a, b])
        status = b.cli("status")
        assert "from-a" in status.stdout and "caught-up" in status.stdout
        assert "Connection refused" in b.links()[0]["last_error"]
    finally:
        for site in (a, b):
            site.stop()


def test_a_ring_of_three_and_a_shortcut_count_every_event_once(tmp_path: Path) -> None:
    a = Site("a", tmp_path, partitions=3)
    b = Site("b", tmp_path, partitions=2)
    c = Site("c", tmp_path, partitions=4, env=NO_WINDOW)
    sites = [a, b, c]
    try:
        for site in sites:
            site.start()
        a.upload(range(0, 4))
        b.upload(range(200, 203))
        c.upload(range(300, 302))
        # The ring A→B→C→A, and A→C besides: A's events reach C twice, through B and directly.
        b.pull_from(a)
        c.pull_from(b)
        a.pull_from(c)
        c.pull_from(a)
        converge(sites, timeout_s=180)
        c.upload(range(302, 303))
        converge(sites, timeout_s=180)
    finally:
        for site in sites:
            site.stop()
