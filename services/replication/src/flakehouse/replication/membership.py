"""Which storage nodes exist and which are alive, from registrations and heartbeats. Pure: time
is passed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from flakehouse.replication.assignment import Report


@dataclass
class Member:
    node_id: str
    address: str
    zone: str
    last_seen: float
    leaving: bool = False
    """Known to be going away (its pod is being deleted): dead whatever its heartbeats say."""
    replicas: dict[tuple[str, int], Report] = field(default_factory=dict)
    """(dataset, partition) → what the node said of its replica in its latest heartbeat."""


class Membership:
    def __init__(self, node_timeout_s: float) -> None:
        self.node_timeout_s = node_timeout_s
        self._members: dict[str, Member] = {}

    def register(self, node_id: str, address: str, zone: str, now: float) -> None:
        member = self._members.get(node_id)
        if member is None:
            self._members[node_id] = Member(node_id, address, zone, now)
        else:
            member.address, member.zone, member.last_seen = address, zone, now
            member.leaving = False

    def heartbeat(self, node_id: str, replicas: dict[tuple[str, int], Report], now: float) -> bool:
        """False when the node is unknown (the controller restarted): it must register again."""
        member = self._members.get(node_id)
        if member is None or not member.address:
            return False
        member.last_seen = now
        member.replicas = replicas
        return True

    def expire(self, node_id: str) -> None:
        """The node is gone (its pod is being deleted): dead from now on, until it registers
        again; heartbeats of a pod shutting down do not revive it."""
        member = self._members.get(node_id)
        if member is not None:
            member.leaving = True

    def alive(self, node_id: str, now: float) -> bool:
        member = self._members.get(node_id)
        return (
            member is not None
            and not member.leaving
            and now - member.last_seen <= self.node_timeout_s
        )

    def members(self) -> list[Member]:
        return sorted(self._members.values(), key=lambda m: m.node_id)

    def live_members(self, now: float) -> list[Member]:
        return [m for m in self.members() if self.alive(m.node_id, now)]
