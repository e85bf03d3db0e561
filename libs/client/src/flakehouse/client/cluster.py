"""cluster.json: where every service of a local cluster listens. Written by `flakehouse up`, read
by every client command."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_DIR = Path(".flakehouse")
DEFAULT_PATH = DEFAULT_DIR / "cluster.json"
SERVICES = ("ingest", "query", "replication", "quota")
CA_FILE_ENV = "FLAKEHOUSE_CA_FILE"
"""The cluster CA for clients given no --ca and no cluster file that names one."""
TOKEN_ENV = "FLAKEHOUSE_TOKEN"
"""The token of clients given no --token: before the cluster file's token_file."""


@dataclass
class Endpoint:
    grpc: str
    metrics: str
    pid: int = 0


@dataclass
class StorageEndpoint(Endpoint):
    node_id: str = ""
    data_dir: str = ""


@dataclass
class ClusterFile:
    kafka: str
    services: dict[str, Endpoint]
    storage: list[StorageEndpoint] = field(default_factory=list)
    data_dir: str = ""
    # Whether the broker keeps its topics on disk (`flakehouse up --ephemeral`: in memory).
    durable: bool = True
    # Every process `flakehouse up` supervises (the object store and the broker too): name ->
    # pid, 0 while it is not running.
    processes: dict[str, int] = field(default_factory=dict)
    version: int = 1
    # The cluster CA (PEM): what clients verify the services' certificates against.
    ca_file: str = ""
    # A file holding the first admin token: what clients send when given no other.
    token_file: str = ""

    def address(self, service: str) -> str:
        if service not in self.services:
            raise KeyError(f"cluster file has no {service} service")
        return self.services[service].grpc

    def write(self, path: Path) -> None:
        """Atomically, so a reader never sees half a file."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> ClusterFile:
        raw = json.loads(path.read_text())
        return cls(
            kafka=raw["kafka"],
            services={name: Endpoint(**value) for name, value in raw["services"].items()},
            storage=[StorageEndpoint(**value) for value in raw.get("storage", [])],
            data_dir=raw.get("data_dir", ""),
            durable=raw.get("durable", True),
            processes=raw.get("processes", {}),
            version=raw.get("version", 1),
            ca_file=raw.get("ca_file", ""),
            token_file=raw.get("token_file", ""),
        )
