"""cluster.json: where every service of a local cluster listens. Written by `flakehouse up`, read
by every client command."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flakehouse.core.errors import FlakehouseError

DEFAULT_DIR = Path(".flakehouse")
DEFAULT_PATH = DEFAULT_DIR / "cluster.json"
SERVICES = ("ingest", "query", "replication", "quota")
CA_FILE_ENV = "FLAKEHOUSE_CA_FILE"
"""The cluster CA for clients given no --ca and no cluster file that names one."""
TOKEN_ENV = "FLAKEHOUSE_TOKEN"
"""The token of clients given no --token: before the cluster file's token_file."""


def cluster_token(cluster_path: Path, token_file: str) -> str:
    """The token a cluster file names, read only when it is that cluster's own: a file under the
    cluster file's directory, owned by this user and readable by nobody else (as ssh treats a
    key). A cluster file found in a checkout must not make the CLI send some other file of the
    user's as a token to the addresses it names."""
    path = Path(token_file)
    home = cluster_path.resolve().parent
    try:
        info = path.stat()
        inside = path.resolve().is_relative_to(home)
    except OSError as exc:
        raise FlakehouseError(f"{cluster_path} names token_file {path}: {exc.strerror}") from None
    if not inside or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise FlakehouseError(
            f"{cluster_path} names token_file {path}, which is not a private file of that "
            f"cluster (it must be under {home}, yours, mode 0600): pass --token or set "
            "FLAKEHOUSE_TOKEN instead"
        )
    lines = path.read_text().split()
    if len(lines) != 1:
        raise FlakehouseError(f"{path}: expected one token on one line")
    return lines[0]


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
    # Where the console (the web page and the JSON API) answers, and its metrics endpoint.
    console_url: str = ""
    console_metrics: str = ""

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
            console_url=raw.get("console_url", ""),
            console_metrics=raw.get("console_metrics", ""),
        )
