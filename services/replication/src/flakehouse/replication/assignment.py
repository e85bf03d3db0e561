"""Make-before-break: how one partition's replicas move from where they are toward where
rendezvous hashing wants them, one reconcile step at a time. Pure: the controller passes what
it knows (the current replicas, the target nodes, live nodes, what each node last reported).

A replica's state:

- bootstrapping: assigned, the node has not reported it yet, or is copying sealed segments
  from a peer;
- catching up: consuming Kafka, not yet at the partition's end;
- online: caught up; queries read it;
- draining: no longer wanted by the target placement, but kept (and read) until every target
  replica is online, so that a move never lowers the number of readable replicas.

Replicas on dead nodes are dropped at once: they cannot serve, and the target placement (which
only counts live nodes) already names their replacement. A node that comes back rejoins as any
new replica would, and resumes from its own data when it still has it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class State(Enum):
    BOOTSTRAPPING = "bootstrapping"
    CATCHING_UP = "catching up"
    ONLINE = "online"
    DRAINING = "draining"

    @property
    def serving(self) -> bool:
        """Whether queries read a replica in this state."""
        return self in (State.ONLINE, State.DRAINING)


@dataclass(frozen=True)
class Replica:
    node_id: str
    state: State


@dataclass(frozen=True)
class Report:
    """What a node last said about its replica of the partition."""

    state: State
    applied_offset: int = -1
    end_offset: int = -1
    bootstrap_bytes: int = 0
    # The dataset incarnation the node's replica holds.
    generation: int = 1

    @property
    def lag(self) -> int:
        """Records behind the partition's end; -1 when either end is unknown."""
        if self.applied_offset < 0 or self.end_offset < 0:
            return -1
        return max(0, self.end_offset - self.applied_offset)


def next_replicas(
    current: Sequence[Replica],
    target: Sequence[str],
    live: set[str],
    reports: Mapping[str, Report],
) -> list[Replica]:
    """One partition's replicas after one step: the target nodes (in their order) with the
    state their node reports, plus the current online replicas the target drops, kept as
    draining until every target replica is online. Serving replicas come first."""
    now_held = {r.node_id: r for r in current if r.node_id in live}
    wanted = [
        Replica(node_id, _state(reports.get(node_id), now_held.get(node_id)))
        for node_id in target
        if node_id in live
    ]
    leaving = [
        Replica(r.node_id, State.DRAINING)
        for node_id, r in now_held.items()
        if node_id not in target and r.state.serving
    ]
    if all(r.state is State.ONLINE for r in wanted) and len(wanted) >= len(target):
        leaving = []
    return ordered([*wanted, *leaving])


def _state(report: Report | None, held: Replica | None) -> State:
    """A target replica's state: as its node reports it; without a report yet (a restarted
    controller, a heartbeat to come) as it was, a draining replica wanted again being online."""
    if report is not None and report.state is not State.DRAINING:
        return report.state
    if held is None:
        return State.BOOTSTRAPPING
    return State.ONLINE if held.state is State.DRAINING else held.state


def ordered(replicas: Sequence[Replica]) -> list[Replica]:
    """Online first, then draining, then those not serving yet; stable within each."""
    rank = {State.ONLINE: 0, State.DRAINING: 1, State.CATCHING_UP: 2, State.BOOTSTRAPPING: 3}
    return sorted(replicas, key=lambda r: rank[r.state])


def serving_count(replicas: Sequence[Replica]) -> int:
    return sum(1 for r in replicas if r.state.serving)
