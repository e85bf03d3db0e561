"""Token secrets and the table every service checks them against (DESIGN.md §10).

A secret is 256 random bits; only its SHA-256 is ever stored, so the table (and the topic it
follows, `<prefix>.__tokens`) holds nothing a caller could present. A fast hash is enough: a
256-bit secret cannot be guessed, so there is nothing to slow down. Two principals come from
files rather than the topic: the services' own token (their identity when they call each other)
and the first admin token, which is how the first real tokens get created."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from pathlib import Path

from flakehouse.auth.v1 import tokens_pb2
from flakehouse.core.grants import Grant, Principal, Role

USE_SUFFIX = "#used"
"""The key `<name>#used` holds a token's last use (token names hold no `#`)."""
SECRET_PREFIX = "fh_"
SECRET_BYTES = 32
SERVICE_PRINCIPAL = "service"
ADMIN_PRINCIPAL = "admin"
ROLES = {
    tokens_pb2.ROLE_READ: Role.READ,
    tokens_pb2.ROLE_WRITE: Role.WRITE,
    tokens_pb2.ROLE_ADMIN: Role.ADMIN,
}
ROLE_ENUMS = {role: enum for enum, role in ROLES.items()}


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def read_secret(path: Path) -> str:
    """A token kept in a file (a Secret's key, `flakehouse up`'s token files): its one line."""
    secret = path.read_text().strip()
    if not secret or "\n" in secret:
        raise ValueError(f"{path}: expected one token on one line")
    return secret


def principal_of(record: tokens_pb2.TokenRecord) -> Principal:
    info = record.info
    grants = tuple(Grant(ROLES[g.role], g.pattern) for g in info.grants if g.role in ROLES)
    return Principal(info.name, grants, info.cluster_admin, token_hash=record.secret_sha256)


class TokenTable:
    """Principals by the hash of their secret: the services' and the first admin's from files,
    the others as the token topic says. Also when each token was last used here, which the
    service reports (used_since_report) for `flakehouse tokens list`."""

    def __init__(self, service_secret: str, admin_secret: str | None = None) -> None:
        self._static = {secret_hash(service_secret): Principal(SERVICE_PRINCIPAL, service=True)}
        if admin_secret:
            admin = Principal(ADMIN_PRINCIPAL, (Grant(Role.ADMIN, "*"),), cluster_admin=True)
            self._static[secret_hash(admin_secret)] = admin
        self._by_hash: dict[bytes, Principal] = {}
        self._records: dict[str, tokens_pb2.TokenRecord] = {}
        self._last_used: dict[str, int] = {}
        # The follower writes from the event loop; readers may be in other threads.
        self._lock = threading.Lock()
        self._used: dict[str, int] = {}

    def apply(self, name: str, record: tokens_pb2.TokenRecord | None) -> None:
        """A record of the token topic: a token created (or its last use), or revoked (None,
        a tombstone)."""
        with self._lock:
            old = self._records.pop(name, None)
            if old is not None:
                self._by_hash.pop(old.secret_sha256, None)
            if record is None:
                self._last_used.pop(name, None)
            else:
                self._records[name] = record
                self._by_hash[record.secret_sha256] = principal_of(record)

    def note_use(self, name: str, last_used_us: int | None) -> None:
        """A `<name>#used` record of the token topic (None: its tombstone)."""
        with self._lock:
            if last_used_us is None:
                self._last_used.pop(name, None)
            else:
                self._last_used[name] = max(last_used_us, self._last_used.get(name, 0))

    def principal(self, secret: str) -> Principal | None:
        digest = secret_hash(secret)
        with self._lock:
            caller = self._static.get(digest) or self._by_hash.get(digest)
            if caller is not None and caller.name in self._records:
                self._used[caller.name] = time.time_ns() // 1000
        return caller

    def record(self, name: str) -> tokens_pb2.TokenRecord | None:
        with self._lock:
            return self._records.get(name)

    def last_used_us(self, name: str) -> int:
        with self._lock:
            return self._last_used.get(name, 0)

    def infos(self) -> list[tokens_pb2.TokenInfo]:
        """Every live token, with its last use as the topic says."""
        with self._lock:
            infos = []
            for name in sorted(self._records):
                info = tokens_pb2.TokenInfo()
                info.CopyFrom(self._records[name].info)
                info.last_used_us = self._last_used.get(name, 0)
                infos.append(info)
            return infos

    def used_since_report(self) -> dict[str, int]:
        """Tokens used here since the last call, with when they were last used."""
        with self._lock:
            used, self._used = self._used, {}
        return used
