"""Make-before-break, one partition at a time."""

from __future__ import annotations

import random

from flakehouse.replication.assignment import (
    Replica,
    Report,
    State,
    next_replicas,
    serving_count,
)

ONLINE, DRAINING = State.ONLINE, State.DRAINING
BOOT, CATCHING_UP = State.BOOTSTRAPPING, State.CATCHING_UP


def r(node_id: str, state: State) -> Replica:
    return Replica(node_id, state)


def test_a_move_keeps_the_old_replica_until_the_new_one_is_online() -> None:
    current = [r("a", ONLINE), r("b", ONLINE)]
    live = {"a", "b", "c"}
    step = next_replicas(current, ["a", "c"], live, {"a": Report(ONLINE)})
    assert step == [r("a", ONLINE), r("b", DRAINING), r("c", BOOT)]
    reports = {"a": Report(ONLINE), "c": Report(CATCHING_UP, 10, 90)}
    step = next_replicas(step, ["a", "c"], live, reports)
    assert step == [r("a", ONLINE), r("b", DRAINING), r("c", CATCHING_UP)]
    reports["c"] = Report(ONLINE, 90, 90)
    assert next_replicas(step, ["a", "c"], live, reports) == [r("a", ONLINE), r("c", ONLINE)]


def test_a_dead_node_is_dropped_at_once_and_its_replacement_bootstraps() -> None:
    current = [r("a", ONLINE), r("b", ONLINE)]
    step = next_replicas(current, ["a", "c"], {"a", "c"}, {"a": Report(ONLINE)})
    assert step == [r("a", ONLINE), r("c", BOOT)]


def test_a_restarted_node_serves_again_only_once_caught_up() -> None:
    current = [r("a", ONLINE), r("b", ONLINE)]
    reports = {"a": Report(ONLINE), "b": Report(CATCHING_UP, 5, 50)}
    step = next_replicas(current, ["a", "b"], {"a", "b"}, reports)
    assert step == [r("a", ONLINE), r("b", CATCHING_UP)]


def test_a_replica_that_never_served_is_not_kept_as_draining() -> None:
    current = [r("a", ONLINE), r("c", BOOT)]
    step = next_replicas(current, ["a", "d"], {"a", "c", "d"}, {"a": Report(ONLINE)})
    assert step == [r("a", ONLINE), r("d", BOOT)]


def test_serving_replicas_come_first() -> None:
    current = [r("a", ONLINE), r("b", ONLINE)]
    reports = {"a": Report(CATCHING_UP), "c": Report(ONLINE)}
    step = next_replicas(current, ["a", "c"], {"a", "b", "c"}, reports)
    assert step == [r("c", ONLINE), r("b", DRAINING), r("a", CATCHING_UP)]


def test_random_moves_never_lower_the_serving_count() -> None:
    """Whatever the targets and the order in which replicas come online, a step that kills no
    node never serves fewer replicas than before (while the target is not all online yet)."""
    rng = random.Random(7)
    nodes = [f"n{i}" for i in range(6)]
    live = set(nodes)
    replicas = [r("n0", ONLINE), r("n1", ONLINE)]
    for _ in range(2000):
        if rng.random() < 0.2:
            target = rng.sample(nodes, 2)
        else:
            target = [x.node_id for x in replicas if x.state is not DRAINING][:2] or ["n0", "n1"]
        # A serving replica's node says it is online; the others come online at random.
        reports = {
            x.node_id: Report(ONLINE if x.state.serving else rng.choice([ONLINE, CATCHING_UP]))
            for x in replicas
        }
        before = serving_count(replicas)
        after = next_replicas(replicas, target, live, reports)
        assert serving_count(after) >= min(before, 2), (replicas, target, after)
        assert len({x.node_id for x in after}) == len(after)
        replicas = after


def test_without_reports_a_restored_placement_keeps_its_states() -> None:
    """A restarted controller has no heartbeats yet: nothing changes state or moves."""
    current = [r("a", ONLINE), r("b", CATCHING_UP)]
    assert next_replicas(current, ["a", "b"], {"a", "b"}, {}) == current
    draining_back = [r("a", ONLINE), r("b", DRAINING)]
    assert next_replicas(draining_back, ["b", "a"], {"a", "b"}, {}) == [
        r("b", ONLINE),
        r("a", ONLINE),
    ]


def test_a_leaving_node_stays_dead_despite_its_heartbeats_until_it_registers() -> None:
    from flakehouse.replication.membership import Membership

    members = Membership(node_timeout_s=10)
    members.register("a", "x:1", "", now=0)
    members.expire("a")
    assert not members.alive("a", now=1)
    assert members.heartbeat("a", {}, now=2)  # a pod shutting down still heartbeats
    assert not members.alive("a", now=2)
    members.register("a", "x:1", "", now=3)  # a new process under the same name
    assert members.alive("a", now=3)
