"""What each RPC needs, in one table (DESIGN.md §10). The interceptor refuses an RPC that is not
in it, and a test checks that every RPC of every proto is. Node RPCs (storage, replication's
membership and placement, quota's leases and slots) are for the services alone; a user's token,
whatever it grants, never reaches them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from flakehouse.core.grants import Role


class Need(Enum):
    PUBLIC = "public"
    """Health and reflection: what probes and tools ask before they hold a token."""
    AUTHENTICATED = "authenticated"
    """Any valid token; the servicer narrows the answer to what it grants (a query's datasets,
    the datasets listed)."""
    DATASET = "dataset"
    """A role on the dataset named in the request."""
    CLUSTER_ADMIN = "cluster-admin"
    SERVICE = "service"


@dataclass(frozen=True)
class Rule:
    need: Need
    role: Role | None = None
    field: str = ""
    """For Need.DATASET: the request's field that names the dataset (dotted for a nested one:
    `header.dataset`, in the first message of a streamed request)."""
    services: bool = True
    """Whether the services' own identity passes too. Not for the tokens: a service holds no
    business minting them, so its credential, taken, cannot mint one either."""


PUBLIC = Rule(Need.PUBLIC)
AUTHENTICATED = Rule(Need.AUTHENTICATED)
CLUSTER_ADMIN = Rule(Need.CLUSTER_ADMIN)
SERVICE = Rule(Need.SERVICE)
CLUSTER_ADMIN_ONLY = Rule(Need.CLUSTER_ADMIN, services=False)


def dataset(role: Role, field: str) -> Rule:
    return Rule(Need.DATASET, role, field)


INGEST = "/flakehouse.ingest.v1.IngestService/"
QUERY = "/flakehouse.query.v1.QueryService/"
QUOTA = "/flakehouse.quota.v1.QuotaService/"
REPLICATION = "/flakehouse.replication.v1.ReplicationService/"
STORAGE = "/flakehouse.storage.v1.StorageService/"
TOKENS = "/flakehouse.auth.v1.TokenService/"

RULES: dict[str, Rule] = {
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.health.v1.Health/List": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    INGEST + "CreateDataset": dataset(Role.ADMIN, "name"),
    INGEST + "GetDataset": dataset(Role.READ, "name"),
    INGEST + "ListDatasets": AUTHENTICATED,
    INGEST + "GetCluster": AUTHENTICATED,
    INGEST + "ReadChanges": dataset(Role.READ, "dataset"),
    INGEST + "DeleteDataset": dataset(Role.ADMIN, "name"),
    INGEST + "Upload": dataset(Role.WRITE, "header.dataset"),
    INGEST + "UploadFiles": dataset(Role.WRITE, "dataset"),
    QUERY + "Query": AUTHENTICATED,
    QUERY + "ListDatasets": AUTHENTICATED,
    QUERY + "DescribeDataset": dataset(Role.READ, "dataset"),
    QUOTA + "GetQuota": dataset(Role.READ, "dataset"),
    QUOTA + "SetQuota": CLUSTER_ADMIN,
    QUOTA + "DeleteQuota": SERVICE,
    QUOTA + "AcquireLease": SERVICE,
    QUOTA + "AcquireQuerySlot": SERVICE,
    QUOTA + "ReleaseQuerySlot": SERVICE,
    QUOTA + "WatchLimits": SERVICE,
    QUOTA + "ReportUsage": SERVICE,
    QUOTA + "GetUsage": AUTHENTICATED,
    REPLICATION + "RegisterNode": SERVICE,
    REPLICATION + "Heartbeat": SERVICE,
    REPLICATION + "GetPlacement": SERVICE,
    REPLICATION + "WatchPlacement": SERVICE,
    REPLICATION + "GetReplicaStatus": CLUSTER_ADMIN,
    # A link holds a credential of another cluster: people only, never the services' token.
    REPLICATION + "AddLink": CLUSTER_ADMIN_ONLY,
    REPLICATION + "ListLinks": CLUSTER_ADMIN,
    REPLICATION + "RemoveLink": CLUSTER_ADMIN_ONLY,
    STORAGE + "ExecuteFragment": SERVICE,
    STORAGE + "DescribeFields": SERVICE,
    STORAGE + "GetPartitionStatus": SERVICE,
    STORAGE + "StreamSegments": SERVICE,
    TOKENS + "CreateToken": CLUSTER_ADMIN_ONLY,
    TOKENS + "ListTokens": CLUSTER_ADMIN_ONLY,
    TOKENS + "RevokeToken": CLUSTER_ADMIN_ONLY,
    TOKENS + "ReportTokenUse": SERVICE,
}
