"""Clusters linked to each other for the cross-cluster tests (issue 19): each is a real
`flakehouse up` with its own CA and tokens, so that a link authenticates to its source as any
other cluster's would: the source's CA and a read token made on the source."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.junitgen import report
from flakehouse.client import Client
from flakehouse.client.cluster import ClusterFile, cluster_token
from flakehouse.replication.v1 import replication_pb2
from tests.localcluster import RunningCluster
from tests.support import eventually

DATASET = "ci"


class Site:
    """One cluster, its name in the test, and the events sent to it directly, by status."""

    def __init__(
        self,
        name: str,
        root: Path,
        partitions: int,
        ephemeral: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._options: dict[str, Any] = {
            "storage_nodes": 1,
            "partitions": partitions,
            "ephemeral": ephemeral,
            "session_secrets": False,
            "env": env,
        }
        # Its own directory: RunningCluster writes its output beside the data directory.
        (root / name).mkdir(parents=True, exist_ok=True)
        self.cluster = RunningCluster(root / name / "cluster", **self._options)
        self.sent: Counter[str] = Counter()
        self.read_token_file = root / f"{name}-read.token"

    def start(self) -> None:
        self.cluster.wait_ready()
        self.cli("datasets", "create", DATASET, "--retention", "400d")
        created = self.cli(
            "tokens", "create", "--name", "links", "--grant", f"read:{DATASET}", "--format", "json"
        )
        self.read_token_file.write_text(json.loads(created.stdout)["token"] + "\n")

    def cli(self, *args: str, check: bool = True) -> Any:
        return self.cluster.cli(*args, "--cluster", str(self.cluster.cluster_path), check=check)

    @property
    def ingest_address(self) -> str:
        return str(self.cluster.info()["services"]["ingest"]["grpc"])

    @property
    def ca_file(self) -> Path:
        return self.cluster.data_dir / "secrets" / "ca.pem"

    def pull_from(self, source: Site, name: str | None = None) -> None:
        """A link on this cluster pulling the dataset from `source`."""
        self.cli(
            "links",
            "add",
            name or f"from-{source.name}",
            "--from",
            source.ingest_address,
            "--dataset",
            DATASET,
            "--token-file",
            str(source.read_token_file),
            "--ca",
            str(source.ca_file),
        )

    def client(self) -> Client:
        """A client of this cluster as its admin (its own token, not the test session's)."""
        path = self.cluster.cluster_path
        admin = cluster_token(path, ClusterFile.read(path).token_file)
        return Client.from_cluster_file(path, token=admin)

    def link_statuses(self) -> list[replication_pb2.LinkStatus]:
        """The links, straight from the replication service (quicker than the CLI)."""
        with self.client() as client:
            return list(client.list_links().links)

    def upload(self, seeds: range, cases: int = 300) -> None:
        client = self.client()
        try:
            for seed in seeds:
                data = report(seed, cases=cases + seed % 5 * 50)
                result = client.upload(data, dataset=DATASET, filename=f"r{seed}.xml")
                self.sent.update(result.by_status)
        finally:
            client.close()

    def counts(self) -> dict[str, int]:
        answer = self.cluster.query_json(
            f"SELECT status, count(*) FROM {DATASET} GROUP BY status ORDER BY status"
        )
        assert not answer["partial"], answer
        return {status: count for status, count in answer["rows"]}

    def links(self) -> list[dict[str, Any]]:
        listed = self.cli("links", "list", "--format", "json")
        return list(json.loads(listed.stdout)["links"])

    def stop(self) -> None:
        self.cluster.stop()

    def restart(self) -> None:
        """The same cluster again (its data directory and ports), after stop()."""
        self.cluster = RunningCluster(
            self.cluster.data_dir, port_base=self.cluster.port_base, **self._options
        )
        self.cluster.wait_ready()


def union(*sites: Site) -> dict[str, int]:
    total: Counter[str] = Counter()
    for site in sites:
        total.update(site.sent)
    return dict(total)


def converge(sites: list[Site], timeout_s: float = 120) -> dict[str, int]:
    """Waits until every site holds exactly the union of what was sent to all of them, with
    every link caught up, and returns it."""
    expected = union(*sites)

    def converged() -> bool:
        for site in sites:
            assert site.counts() == expected, (site.name, site.counts(), expected)
            states = {link["name"]: link["state"] for link in site.links()}
            assert all(state == "caught-up" for state in states.values()), (site.name, states)
        return True

    eventually(converged, f"every site holding the union {expected}", timeout_s, interval_s=1)
    return expected
