"""Cross-cluster replication (issue 19) with real clusters: `flakehouse up` several times, each
with its own ports, data directory, CA and tokens, linked through `flakehouse links add` with a
read token of the source. Every cluster converges to exactly the union of what was ingested
anywhere, and stays there: nothing loops back, and an event that arrives by two paths counts
once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.linked import Site, converge

pytestmark = [pytest.mark.processes, pytest.mark.broker]


def test_two_sites_linked_both_ways_converge_to_the_union_and_stay(tmp_path: Path) -> None:
    # Different partition counts: where a record lands does not depend on the source's.
    a, b = Site("a", tmp_path, partitions=4), Site("b", tmp_path, partitions=3)
    try:
        for site in (a, b):
            site.start()
        a.upload(range(0, 6))
        b.upload(range(100, 104))
        b.pull_from(a)
        a.pull_from(b)
        expected = converge([a, b])
        # No loop: the records each side pulled back are its own, left out; nothing grows.
        pulled = {site.name: sum(x["events_pulled"] for x in site.links()) for site in (a, b)}
        time.sleep(3)
        assert a.counts() == b.counts() == expected
        assert {s.name: sum(x["events_pulled"] for x in s.links()) for s in (a, b)} == pulled
        assert pulled == {"a": sum(b.sent.values()), "b": sum(a.sent.values())}
        # Later reports on either side reach the other.
        a.upload(range(6, 8))
        b.upload(range(104, 105))
        converge([a, b])
        status = a.cli("status")
        assert "from-b" in status.stdout and "caught-up" in status.stdout
    finally:
        for site in (a, b):
            site.stop()


def test_a_ring_of_three_and_a_shortcut_count_every_event_once(tmp_path: Path) -> None:
    a, b, c = (Site(name, tmp_path, partitions=n) for name, n in (("a", 3), ("b", 2), ("c", 4)))
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
