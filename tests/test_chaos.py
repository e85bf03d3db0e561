"""Chaos on the durable local cluster (issue 13): uploads and queries go on while a random
process of the cluster (ingest, query, quota, replication, a storage node, the broker or its
object store) is SIGKILLed every few seconds and restarted by `flakehouse up`'s supervisor.
Seeded: a seed gives the same victims at the same moments.

The checker records every upload (the events it holds, once acknowledged) and every answer:
- at the end, every acknowledged event is counted exactly once, per status;
- no answer counts more than was sent: acknowledged, or in flight when the answer came (Kafka
  holds an upload's events before ingest acknowledges it);
- an answer short of what was acknowledged before the query started is flagged partial, when
  the query passes the acknowledged uploads' offsets (`after`, what `flakehouse query --after`
  does: how a script that must see its own uploads asks);
- without them, an answer short of what was acknowledged more than FETCH_GAP_S before the query
  started is flagged partial or stale. An upload acknowledged a moment before is in Kafka but
  maybe not yet fetched by the replica, which cannot know of it (the ack-to-visible latency of
  `python -m benchmarks freshness`); how many answers were short by such uploads is printed.
It prints what it killed and what it saw."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.junitgen import report
from flakehouse.client import Client
from flakehouse.client.client import UploadResult, offsets_of
from flakehouse.core.errors import FlakehouseError
from tests.localcluster import RunningCluster, pid_alive

pytestmark = [pytest.mark.processes, pytest.mark.broker]
PARTITIONS = 4
CHAOS_S = 20.0
VICTIMS = (
    "ingest",
    "query",
    "quota",
    "replication",
    "storage-0",
    "storage-1",
    "broker",
    "objects",
)
STORAGE_ENV = {
    "FLAKEHOUSE_STORAGE_SEAL_ROWS": "2000",
    "FLAKEHOUSE_STORAGE_SEAL_AGE_S": "0.5",
    "FLAKEHOUSE_STORAGE_COMPACTION_INTERVAL_S": "2",
}
SQL = "SELECT count(*) FROM chaos"
FETCH_GAP_S = 5.0


@dataclass
class Ledger:
    """What was sent and acknowledged, under one lock: the checker's truth."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent_events: int = 0  # acknowledged or in flight
    acked: list[UploadResult] = field(default_factory=list)
    acked_events: int = 0
    # (time.monotonic() of the acknowledgement, events acknowledged by then), in order.
    acked_at: list[tuple[float, int]] = field(default_factory=list)
    by_status: Counter[str] = field(default_factory=Counter)
    upload_failures: int = 0


@dataclass
class Seen:
    answers: int = 0
    partial: int = 0
    stale: int = 0
    short_of_the_last_moment: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)


def feed(cluster: RunningCluster, seed: int, ledger: Ledger, stop: threading.Event) -> None:
    """Uploads reports one after the other; one that fails is sent again, same content, until
    acknowledged (its upload id comes from its content: storage drops what it already holds)."""
    client = Client.from_cluster_file(cluster.cluster_path, retries=2)
    try:
        for i in range(100_000):
            if stop.is_set():
                return
            data = report(seed * 100_000 + i, cases=300 + (i * 37) % 900)
            events = data.count(b"<testcase ")
            with ledger.lock:
                ledger.sent_events += events
            while True:
                try:
                    result = client.upload(data, dataset="chaos", filename=f"r{i}.xml")
                    break
                except FlakehouseError:
                    ledger.upload_failures += 1
                    time.sleep(0.2)
            assert result.events == events
            with ledger.lock:
                ledger.acked.append(result)
                ledger.acked_events += events
                ledger.acked_at.append((time.monotonic(), ledger.acked_events))
                ledger.by_status.update(result.by_status)
    finally:
        client.close()


def ask(cluster: RunningCluster, ledger: Ledger, seen: Seen, stop: threading.Event) -> None:
    client = Client.from_cluster_file(cluster.cluster_path, retries=0)
    try:
        with_after = False
        while not stop.is_set():
            with_after = not with_after
            with ledger.lock:
                acked_before = ledger.acked_events
                settled = time.monotonic() - FETCH_GAP_S
                acked_settled = max((n for t, n in ledger.acked_at if t < settled), default=0)
                after = offsets_of(ledger.acked) if with_after else None
            try:
                answer = client.query(SQL, timeout_ms=3000, after=after)
            except FlakehouseError as exc:
                seen.errors[type(exc).__name__] += 1
                time.sleep(0.1)
                continue
            with ledger.lock:
                sent_by_now = ledger.sent_events
            count = int(answer.rows[0][0]) if answer.rows else 0
            seen.answers += 1
            seen.partial += answer.partial
            seen.stale += answer.stale
            if count > sent_by_now:
                seen.violations.append(f"counted {count}, only {sent_by_now} were sent")
            flagged = answer.partial or (answer.stale and not with_after)
            if count < acked_before and not flagged:
                if with_after:
                    seen.violations.append(
                        f"counted {count} < {acked_before} acknowledged, and not flagged partial"
                    )
                elif count < acked_settled:
                    seen.violations.append(
                        f"counted {count} < {acked_settled} acknowledged {FETCH_GAP_S} s before, "
                        "and flagged neither partial nor stale"
                    )
                else:
                    seen.short_of_the_last_moment += 1
            time.sleep(0.05)
    finally:
        client.close()


def kill_and_wait_restart(cluster: RunningCluster, victim: str) -> float:
    """SIGKILLs the victim and waits until the supervisor runs a new one; returns the wait."""
    pid = cluster.info()["processes"][victim]
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    while True:
        now = cluster.info()["processes"].get(victim, 0)
        if now and now != pid and pid_alive(now):
            return time.monotonic() - started
        assert time.monotonic() - started < 60, f"{victim} was not restarted"
        time.sleep(0.05)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chaos_loses_nothing_doubles_nothing_and_never_hides_a_short_answer(
    tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    cluster = RunningCluster(
        tmp_path / "cluster", storage_nodes=2, partitions=PARTITIONS, env=STORAGE_ENV
    )
    ledger, seen, stop = Ledger(), Seen(), threading.Event()
    failures: list[BaseException] = []

    def run(target: object, *args: object) -> threading.Thread:
        def guarded() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=guarded)
        thread.start()
        return thread

    try:
        cluster.wait_ready()
        feeder = run(feed, cluster, seed, ledger, stop)
        asker = run(ask, cluster, ledger, seen, stop)
        kills: list[str] = []
        deadline = time.monotonic() + CHAOS_S
        while time.monotonic() < deadline and not failures:
            time.sleep(rng.uniform(1.5, 3.5))
            victim = rng.choice(VICTIMS)
            waited = kill_and_wait_restart(cluster, victim)
            kills.append(f"{victim} (back in {waited:.1f} s)")
        stop.set()
        feeder.join(180)
        asker.join(60)
        assert not failures, failures

        settle = time.monotonic() + 180
        client = Client.from_cluster_file(cluster.cluster_path)
        try:
            while True:
                by_status = client.query("SELECT status, count(*) FROM chaos GROUP BY status")
                counted = {row[0]: row[1] for row in by_status.rows}
                if not by_status.partial and counted == dict(ledger.by_status):
                    break
                assert time.monotonic() < settle, (
                    f"counted {counted} (partial: {by_status.partial}), "
                    f"acknowledged {dict(ledger.by_status)}"
                )
                time.sleep(0.5)
        finally:
            client.close()
        print(
            f"\nseed {seed}: killed {len(kills)}: {', '.join(kills)}\n"
            f"  uploads acknowledged {len(ledger.acked)} ({ledger.acked_events} events), "
            f"{ledger.upload_failures} attempts failed and were sent again\n"
            f"  answers {seen.answers}: partial {seen.partial}, stale {seen.stale}, "
            f"short of uploads acknowledged in the last {FETCH_GAP_S} s (without --after) "
            f"{seen.short_of_the_last_moment}; "
            f"query errors {dict(seen.errors)}\n"
            f"  at the end: every acknowledged event counted once: {dict(ledger.by_status)}"
        )
        assert not seen.violations, seen.violations[:10]
        assert len(kills) >= 5 and ledger.acked_events > 10_000 and seen.answers > 20
    finally:
        stop.set()
        cluster.stop()
