"""What a token may do (DESIGN.md §10): grants of `read`, `write` or `admin` on a dataset, a name
pattern (`team-*`) or every dataset (`*`), and `cluster-admin` for quotas, tokens, links and
placement. Roles include the ones below them: admin can write, write can read. Services have
their own principal, which no user token can be. Plain values: no gRPC, no Kafka."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum

DATASET_PATTERN = re.compile(r"^(\*|[a-z0-9][a-z0-9_-]{0,62}\*?)$")
CLUSTER_ADMIN = "cluster-admin"


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclass(frozen=True)
class Grant:
    role: Role
    pattern: str
    """A dataset name, a prefix followed by `*`, or `*` for every dataset."""

    def covers(self, dataset: str) -> bool:
        if self.pattern.endswith("*"):
            return dataset.startswith(self.pattern[:-1])
        return dataset == self.pattern

    def __str__(self) -> str:
        return f"{self.role.name.lower()}:{self.pattern}"


@dataclass(frozen=True)
class Principal:
    name: str
    grants: tuple[Grant, ...] = ()
    cluster_admin: bool = False
    service: bool = False
    """The services' own identity: the only principal that may call node RPCs."""
    token_hash: bytes = field(default=b"", repr=False, compare=False)

    def may(self, role: Role, dataset: str) -> bool:
        return self.service or any(g.role >= role and g.covers(dataset) for g in self.grants)

    def readable(self, datasets: list[str]) -> list[str]:
        return [d for d in datasets if self.may(Role.READ, d)]


def parse_grant(text: str) -> Grant | None:
    """`ROLE:DATASET` (a grant) or `cluster-admin` (None: not a dataset grant); ValueError for
    anything else, saying what is expected."""
    if text == CLUSTER_ADMIN:
        return None
    role, sep, pattern = text.partition(":")
    roles = {r.name.lower(): r for r in Role}
    if not sep or role not in roles or not DATASET_PATTERN.fullmatch(pattern):
        raise ValueError(
            f"invalid grant {text!r}: expected ROLE:DATASET with ROLE read, write or admin and "
            "DATASET a name, a prefix ending in * (team-*) or *; or cluster-admin"
        )
    return Grant(roles[role], pattern)


def describe(principal: Principal) -> str:
    """The grants as `flakehouse tokens list` and errors show them."""
    parts = [str(g) for g in principal.grants]
    if principal.cluster_admin:
        parts.append(CLUSTER_ADMIN)
    return ", ".join(parts) or "nothing"
