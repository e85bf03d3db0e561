"""A synchronous Python client for the Flakehouse services: uploads, SQL queries, datasets and
their limits and usage.

Errors come back as the same FlakehouseError subclasses the services raise (InvalidArgument,
NotFound, ResourceExhausted, Unavailable, ...), with the server's message."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

import grpc

from flakehouse.auth.v1 import tokens_pb2, tokens_pb2_grpc
from flakehouse.client.cluster import CA_FILE_ENV, TOKEN_ENV, ClusterFile, cluster_token
from flakehouse.client.errortext import tls_failure
from flakehouse.client.times import from_micros, query_zone
from flakehouse.client.uploads import UploadProgress, open_source, upload_resumably
from flakehouse.core.channel import CHANNEL_OPTIONS
from flakehouse.core.errors import (
    ERRORS_BY_STATUS,
    Cancelled,
    DeadlineExceeded,
    FlakehouseError,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from flakehouse.core.grants import parse_grant
from flakehouse.core.limit_rules import QUOTA_FIELDS
from flakehouse.core.rpc_errors import error_from_rpc
from flakehouse.core.tls import channel_credentials
from flakehouse.core.tokens import ROLE_ENUMS
from flakehouse.events.columns import ColumnError, from_value_column
from flakehouse.events.values import TIMESTAMP, TYPE_NAMES, Scalar, from_value
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from flakehouse.quota.v1 import quota_pb2, quota_pb2_grpc
from flakehouse.replication.v1 import replication_pb2, replication_pb2_grpc

MAX_BACKOFF_S = 8.0
# How often a cancellable call looks whether it was cancelled.
CANCEL_POLL_S = 0.1
FORMATS = {
    None: ingest_pb2.UPLOAD_FORMAT_UNSPECIFIED,
    "junit": ingest_pb2.UPLOAD_FORMAT_JUNIT_XML,
    "json": ingest_pb2.UPLOAD_FORMAT_JSON_LINES,
}
FORMAT_NAMES = {
    ingest_pb2.UPLOAD_FORMAT_JUNIT_XML: "junit",
    ingest_pb2.UPLOAD_FORMAT_JSON_LINES: "json",
}
T = TypeVar("T")
Offsets = Mapping[str, Mapping[int, int]]
"""dataset → partition → the last offset written there."""


@dataclass
class UploadResult:
    upload_id: str
    dataset: str
    events: int
    by_status: dict[str, int]
    offsets: dict[int, int]
    dataset_created: bool
    format: str
    # Where the time went on the server: receive, parse, produce (seconds).
    seconds: dict[str, float] = field(default_factory=dict)
    # Bytes sent over every stream of the upload, and how many streams it took (more than one
    # when it resumed after a cut).
    sent_bytes: int = 0
    streams: int = 1


Cell = Scalar | datetime | None
"""A value in an answer: a time column's values are `datetime`s in the query's time zone (UTC
unless `time_zone`), or ints with `raw_times`."""


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Cell]]
    partial: bool
    missing_partitions: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    # How far behind the replicas that answered were (QueryResponse.freshness): the worst
    # `records_behind` and `behind_ms`, and `partitions`, one entry per partition answered.
    freshness: dict[str, Any] = field(default_factory=dict)
    # Raw rows without LIMIT: the query matched more rows than the default LIMIT answered.
    truncated: bool = False

    @property
    def stale(self) -> bool:
        return bool(self.freshness.get("records_behind") or self.freshness.get("behind_ms"))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "partial": self.partial,
            "missing_partitions": self.missing_partitions,
            "freshness": self.freshness,
            "truncated": self.truncated,
        }


def _rows(response: query_pb2.QueryResponse) -> list[list[Cell]]:
    """The answer's rows, from its columns when the service sent them so (`columnar`), else from
    its rows (DESCRIBE and EXPLAIN, or a service that predates columnar answers)."""
    if not response.column_values:
        return [[from_value(v) for v in row.values] for row in response.rows]
    if len(response.column_values) != len(response.columns):
        raise Internal(
            f"the answer has {len(response.column_values)} value columns"
            f" for {len(response.columns)} columns"
        )
    try:
        columns = [from_value_column(c) for c in response.column_values]
    except ColumnError as exc:
        raise Internal(f"the answer's columns do not hold their values: {exc}") from None
    if len({len(c) for c in columns}) > 1:
        raise Internal("the answer's columns have different lengths")
    return [list(row) for row in zip(*columns, strict=True)]


def _with_times(
    response: query_pb2.QueryResponse, rows: list[list[Cell]], zone: tzinfo
) -> list[list[Cell]]:
    """`rows`, changed in place: the ints of TIMESTAMP columns become datetimes in `zone`."""
    times = [i for i, column in enumerate(response.columns) if column.type == TIMESTAMP]
    for row in rows if times else ():
        for i in times:
            value = row[i]
            if type(value) is int:
                row[i] = from_micros(value, zone)
    return rows


def _freshness(freshness: query_pb2.Freshness) -> dict[str, Any]:
    return {
        "records_behind": freshness.records_behind,
        "behind_ms": freshness.behind_ms,
        "partitions": [
            {
                "partition": p.partition,
                "node_id": p.node_id,
                "records_behind": p.records_behind,
                "behind_ms": p.behind_ms,
            }
            for p in freshness.partitions
        ],
    }


class Client:
    def __init__(
        self,
        *,
        ingest: str | None = None,
        query: str | None = None,
        replication: str | None = None,
        quota: str | None = None,
        timeout_s: float = 60.0,
        retries: int = 6,
        ca_file: str | Path | None = None,
        token: str | None = None,
    ) -> None:
        """Every call goes over TLS: the services' certificates are verified against ca_file,
        else FLAKEHOUSE_CA_FILE, else the system's roots (a cluster whose certificates come
        from a public CA). Every call carries `token` (else FLAKEHOUSE_TOKEN) as a bearer
        token; without one the services answer UNAUTHENTICATED."""
        self._ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
        self._token = token or os.environ.get(TOKEN_ENV) or None
        self._addresses = {
            "ingest": ingest,
            "query": query,
            "replication": replication,
            "quota": quota,
        }
        self._channels: dict[str, grpc.Channel] = {}
        self._channels_lock = threading.Lock()
        self.timeout_s = timeout_s
        self.retries = retries

    @classmethod
    def from_cluster_file(cls, path: Path, **kwargs: Any) -> Client:
        cluster = ClusterFile.read(path)
        kwargs.setdefault("ca_file", cluster.ca_file or None)
        if not kwargs.get("token") and not os.environ.get(TOKEN_ENV) and cluster.token_file:
            kwargs["token"] = cluster_token(path, cluster.token_file)
        return cls(
            ingest=cluster.address("ingest"),
            query=cluster.address("query"),
            replication=cluster.address("replication"),
            quota=cluster.address("quota"),
            **kwargs,
        )

    def _channel(self, service: str) -> grpc.Channel:
        with self._channels_lock:  # threads share a client (the console's): one channel each
            return self._open_channel(service)

    def _open_channel(self, service: str) -> grpc.Channel:
        if service not in self._channels:
            address = self._addresses.get(service)
            if not address:
                raise Unavailable(f"no address for the {service} service")
            credentials = channel_credentials(self._ca_file)
            if self._token:
                bearer = grpc.access_token_call_credentials(self._token)
                credentials = grpc.composite_channel_credentials(credentials, bearer)
            self._channels[service] = grpc.secure_channel(
                address, credentials, options=CHANNEL_OPTIONS
            )
        return self._channels[service]

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self, fn: Callable[[], T], retries: int | None = None, retry_deadlines: bool = False
    ) -> T:
        """Calls once per attempt, retrying UNAVAILABLE, and RESOURCE_EXHAUSTED that comes with
        a retry delay, with backoff and jitter (or the server's retry delay). Only idempotent
        calls retry; others pass retries=0. RESOURCE_EXHAUSTED without a delay is a limit that
        the same request would hit again (a query past max_groups): it is not retried.
        DEADLINE_EXCEEDED is retried only for calls that ask (a query that took too long would
        take too long again)."""
        retries = self.retries if retries is None else retries
        for attempt in range(retries + 1):
            try:
                return fn()
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
                transient = (
                    (isinstance(error, Unavailable) and not tls_failure(error.message))
                    or (isinstance(error, ResourceExhausted) and error.retry_after_ms is not None)
                    or (retry_deadlines and isinstance(error, DeadlineExceeded))
                )
                if attempt == retries or not transient:
                    raise error from None
                # The server's delay when it gave one, else exponential backoff; jitter so
                # that many CI jobs retrying at once do not come back in step.
                base = min(MAX_BACKOFF_S, (error.retry_after_ms or 250 * 2**attempt) / 1000)
                time.sleep(base * (0.5 + random.random()))
        raise AssertionError("unreachable")

    # --- datasets ---------------------------------------------------------------------------

    def _ingest(self) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(self._channel("ingest"))

    def _quota(self) -> quota_pb2_grpc.QuotaServiceStub:
        return quota_pb2_grpc.QuotaServiceStub(self._channel("quota"))

    def create_dataset(
        self,
        name: str,
        partitions: int = 0,
        limits: quota_pb2.Quota | None = None,
        **limit_fields: float,
    ) -> ingest_pb2.CreateDatasetResponse:
        """Creates a dataset (partitions 0: the service's default) with its limits, given as a
        Quota, as keyword arguments named like Quota's fields (`retention_seconds=86400`), or
        both (the keywords win). Creating one that exists with the same partition count
        succeeds with `created` false and leaves its limits as they are. Retried: the name makes
        it idempotent."""
        request = ingest_pb2.CreateDatasetRequest(
            name=name, partitions=partitions, limits=quota_of(limits, **limit_fields)
        )
        stub = self._ingest()
        return self._call(lambda: stub.CreateDataset(request, timeout=self.timeout_s))

    def get_dataset(self, name: str) -> ingest_pb2.Dataset:
        stub, request = self._ingest(), ingest_pb2.GetDatasetRequest(name=name)
        return self._call(lambda: stub.GetDataset(request, timeout=self.timeout_s)).dataset

    def list_datasets(self) -> list[ingest_pb2.Dataset]:
        stub, request = self._ingest(), ingest_pb2.ListDatasetsRequest()
        return list(self._call(lambda: stub.ListDatasets(request, timeout=self.timeout_s)).datasets)

    def delete_dataset(self, name: str) -> ingest_pb2.Dataset:
        """Deletes a dataset, its data and its limits; answers the dataset as it was. Not
        retried: when a delete succeeded but its answer was lost, a second one would answer
        NOT_FOUND, hiding the success."""
        stub, request = self._ingest(), ingest_pb2.DeleteDatasetRequest(name=name)
        return self._call(
            lambda: stub.DeleteDataset(request, timeout=self.timeout_s), retries=0
        ).dataset

    # --- limits and usage -------------------------------------------------------------------

    def get_quota(self, dataset: str) -> quota_pb2.Quota:
        """The dataset's limits; 0 means unlimited."""
        stub, request = self._quota(), quota_pb2.GetQuotaRequest(dataset=dataset)
        return self._call(lambda: stub.GetQuota(request, timeout=self.timeout_s)).quota

    def set_quota(self, dataset: str, **changes: float) -> quota_pb2.Quota:
        """Changes the named limits only (e.g. `retention_seconds=86400`, 0 for unlimited) and
        answers every limit after the change. Retried: setting a value twice is setting it
        once."""
        if not changes:
            raise ValueError("set_quota needs at least one limit to change")
        quota = quota_of(None, **changes)
        quota.dataset = dataset
        request = quota_pb2.SetQuotaRequest(quota=quota)
        request.update_mask.paths.extend(sorted(changes))
        stub = self._quota()
        return self._call(lambda: stub.SetQuota(request, timeout=self.timeout_s)).quota

    # --- tokens (kept by the quota service) -------------------------------------------------

    def create_token(self, name: str, grants: Iterable[str]) -> tuple[tokens_pb2.TokenInfo, str]:
        """A new token and its secret, which nobody can see again. `grants`: ROLE:DATASET
        (read, write or admin; a name, a prefix ending in *, or *) or cluster-admin. Not
        retried: a second creation of the name is refused."""
        request = tokens_pb2.CreateTokenRequest(name=name)
        try:
            for text in grants:
                grant = parse_grant(text)
                if grant is None:
                    request.cluster_admin = True
                else:
                    request.grants.add(role=ROLE_ENUMS[grant.role], pattern=grant.pattern)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        stub = tokens_pb2_grpc.TokenServiceStub(self._channel("quota"))
        created = self._call(lambda: stub.CreateToken(request, timeout=self.timeout_s), retries=0)
        return created.token, created.secret

    def list_tokens(self) -> list[tokens_pb2.TokenInfo]:
        stub = tokens_pb2_grpc.TokenServiceStub(self._channel("quota"))
        request = tokens_pb2.ListTokensRequest()
        return list(self._call(lambda: stub.ListTokens(request, timeout=self.timeout_s)).tokens)

    def revoke_token(self, name: str) -> tokens_pb2.TokenInfo:
        stub = tokens_pb2_grpc.TokenServiceStub(self._channel("quota"))
        request = tokens_pb2.RevokeTokenRequest(name=name)
        return self._call(lambda: stub.RevokeToken(request, timeout=self.timeout_s)).token

    def usage(self, dataset: str | None = None) -> list[quota_pb2.DatasetUsage]:
        """What each dataset (or the one named) holds and ingests, its cutoff and its limits."""
        stub, request = self._quota(), quota_pb2.GetUsageRequest(dataset=dataset or "")
        return list(self._call(lambda: stub.GetUsage(request, timeout=self.timeout_s)).datasets)

    # --- uploads ----------------------------------------------------------------------------

    def upload(
        self,
        source: Path | bytes,
        *,
        dataset: str,
        labels: Mapping[str, str] | None = None,
        filename: str | None = None,
        upload_id: str = "",
        format: str | None = None,
        on_progress: Callable[[UploadProgress], None] | None = None,
    ) -> UploadResult:
        """Streams one file (or bytes) as one resumable upload: a stream cut in the middle (a
        dropped connection, an ingest restart, `timeout_s` without progress) continues where
        the server's bytes end. Safe to retry as a whole too: without an explicit upload_id the
        server derives one from the content, so a resent upload never counts twice."""
        header = ingest_pb2.UploadHeader(
            dataset=dataset,
            filename=filename or (str(source) if isinstance(source, Path) else "upload"),
            format=FORMATS[format],
            labels=dict(labels or {}),
            upload_id=upload_id,
        )
        result, stats = upload_resumably(
            ingest_pb2_grpc.IngestServiceStub(self._channel("ingest")),
            header,
            open_source(source),
            stall_s=self.timeout_s,
            retries=self.retries,
            error_from_rpc=error_from_rpc,
            on_progress=on_progress,
        )
        return _upload_result(result, sent_bytes=stats.sent_bytes, streams=stats.streams)

    def upload_files(
        self,
        files: Sequence[tuple[str, bytes]],
        *,
        dataset: str,
        labels: Mapping[str, str] | None = None,
        format: str | None = None,
    ) -> list[UploadResult | FlakehouseError]:
        """Several small files, (filename, content) each, in one call: each is its own upload
        with its own result, or its own error for a file that does not parse (which writes
        nothing of it; the others go in). For a CI job's many small reports: together at most
        FILES_CALL_BYTES of content; larger files go through `upload`. Retried as a whole when
        the call fails: each file's upload id comes from its content, so none counts twice."""
        request = ingest_pb2.UploadFilesRequest(
            dataset=dataset,
            format=FORMATS[format],
            labels=dict(labels or {}),
            files=[ingest_pb2.FileUpload(filename=name, content=data) for name, data in files],
        )
        stub = self._ingest()
        response = self._call(
            lambda: stub.UploadFiles(request, timeout=self.timeout_s), retry_deadlines=True
        )
        return [
            _upload_result(outcome.result, sent_bytes=len(file.content), streams=1)
            if outcome.HasField("result")
            else ERRORS_BY_STATUS.get(outcome.rejection.code, Internal)(outcome.rejection.message)
            for file, outcome in zip(request.files, response.outcomes, strict=True)
        ]

    # --- queries ----------------------------------------------------------------------------

    def query(
        self,
        sql: str,
        *,
        timeout_ms: int = 0,
        after: Offsets | None = None,
        raw_times: bool = False,
        time_zone: str = "",
        cancelled: threading.Event | None = None,
    ) -> QueryResult:
        """Runs a query. With `after` (dataset → partition → offset, e.g. `offsets_of(uploads)`),
        the replicas answer only once they applied those offsets: read-your-writes for a job
        that uploads and then asks. `time_zone` (an IANA name, `Europe/Paris`; default UTC) is
        the zone of date_trunc and time_bucket, and time columns come as aware `datetime`s in
        it, or with `raw_times` as int microseconds since the epoch (typed "int"). An unknown
        zone raises InvalidArgument before anything is sent. Setting `cancelled` (from another
        thread) cancels the call: the query service stops the query and this raises Cancelled."""
        try:
            zone = query_zone(time_zone)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        stub = query_pb2_grpc.QueryServiceStub(self._channel("query"))
        request = query_pb2.QueryRequest(
            sql=sql,
            timeout_ms=timeout_ms,
            columnar=True,
            raw_times=raw_times,
            time_zone=time_zone,
            after=[
                query_pb2.DatasetOffsets(dataset=dataset, offsets=dict(offsets))
                for dataset, offsets in sorted((after or {}).items())
            ],
        )
        if cancelled is None:
            response = self._call(lambda: stub.Query(request, timeout=self.timeout_s))
        else:
            response = self._call(
                lambda: _cancellable(stub.Query.future(request, timeout=self.timeout_s), cancelled)
            )
        return QueryResult(
            columns=[c.name for c in response.columns],
            types=[TYPE_NAMES.get(c.type, "mixed") for c in response.columns],
            rows=_with_times(response, _rows(response), zone),
            partial=response.partial,
            missing_partitions=[
                {"dataset": m.dataset, "partition": m.partition, "reason": m.reason}
                for m in response.missing_partitions
            ],
            freshness=_freshness(response.freshness),
            truncated=response.truncated,
            stats={
                "rows_scanned": response.stats.scan.rows_scanned,
                "rows_matched": response.stats.scan.rows_matched,
                "segments_skipped": response.stats.scan.segments_skipped,
                "partitions": response.stats.partitions,
                "elapsed_ms": response.stats.elapsed_ms,
                "hedged": response.stats.hedged,
            },
            nodes=[
                {
                    "node_id": n.node_id,
                    "partitions": list(n.partitions),
                    "elapsed_ms": n.elapsed_ms,
                    "rows_scanned": n.scan.rows_scanned,
                    "errors": list(n.errors),
                }
                for n in response.stats.nodes
            ],
        )

    def status(self) -> replication_pb2.GetReplicaStatusResponse:
        """Nodes, and every replica with its state and lag, from the replication controller."""
        stub = replication_pb2_grpc.ReplicationServiceStub(self._channel("replication"))
        request = replication_pb2.GetReplicaStatusRequest()
        return self._call(lambda: stub.GetReplicaStatus(request, timeout=self.timeout_s))

    def add_link(
        self,
        name: str,
        source: str,
        dataset: str,
        *,
        source_token: str = "",
        source_ca_pem: bytes = b"",
    ) -> replication_pb2.LinkStatus:
        """A link pulling `dataset` from the cluster whose ingest service is at `source`, with
        a read token of that cluster and the CA its certificate is verified against (empty: the
        system's roots). The replication service checks the source first. Not retried: a second
        add of the name is refused."""
        stub = replication_pb2_grpc.ReplicationServiceStub(self._channel("replication"))
        request = replication_pb2.AddLinkRequest(
            name=name,
            source_address=source,
            dataset=dataset,
            token=source_token,
            ca_pem=source_ca_pem,
        )
        return self._call(lambda: stub.AddLink(request, timeout=self.timeout_s), retries=0).link

    def list_links(self) -> replication_pb2.ListLinksResponse:
        stub = replication_pb2_grpc.ReplicationServiceStub(self._channel("replication"))
        request = replication_pb2.ListLinksRequest()
        return self._call(lambda: stub.ListLinks(request, timeout=self.timeout_s))

    def remove_link(self, name: str) -> None:
        stub = replication_pb2_grpc.ReplicationServiceStub(self._channel("replication"))
        request = replication_pb2.RemoveLinkRequest(name=name)
        self._call(lambda: stub.RemoveLink(request, timeout=self.timeout_s))

    def cluster_id(self) -> str:
        """The cluster's stable id (`fhc-…`), from the ingest service."""
        stub = self._ingest()
        request = ingest_pb2.GetClusterRequest()
        return self._call(lambda: stub.GetCluster(request, timeout=self.timeout_s)).cluster_id

    def readable_datasets(self) -> list[query_pb2.DatasetInfo]:
        """The datasets this client's token may read, from the query service."""
        stub = query_pb2_grpc.QueryServiceStub(self._channel("query"))
        request = query_pb2.ListDatasetsRequest()
        return list(self._call(lambda: stub.ListDatasets(request, timeout=self.timeout_s)).datasets)

    def describe(self, dataset: str) -> query_pb2.DescribeDatasetResponse:
        stub = query_pb2_grpc.QueryServiceStub(self._channel("query"))
        request = query_pb2.DescribeDatasetRequest(dataset=dataset)
        return self._call(lambda: stub.DescribeDataset(request, timeout=self.timeout_s))


def _cancellable(call: Any, cancelled: threading.Event) -> Any:
    """The result of a call future, cancelling the call once `cancelled` is set."""
    while True:
        try:
            return call.result(timeout=CANCEL_POLL_S)
        except grpc.FutureTimeoutError:
            if cancelled.is_set():
                call.cancel()
                raise Cancelled("the query was cancelled") from None


def offsets_of(
    uploads: Iterable[UploadResult], into: Offsets | None = None
) -> dict[str, dict[int, int]]:
    """The highest offset written per dataset and partition by some uploads (added to `into`):
    what a query passes as `after` to see them all."""
    offsets = {dataset: dict(parts) for dataset, parts in (into or {}).items()}
    for upload in uploads:
        parts = offsets.setdefault(upload.dataset, {})
        for partition, offset in upload.offsets.items():
            parts[partition] = max(parts.get(partition, -1), offset)
    return offsets


def quota_of(quota: quota_pb2.Quota | None = None, /, **fields: float) -> quota_pb2.Quota:
    """A copy of `quota` (or an empty one) with `fields` set; TypeError for a name that is not a
    limit."""
    unknown = sorted(set(fields) - set(QUOTA_FIELDS))
    if unknown:
        raise TypeError(f"not a limit: {', '.join(unknown)} (limits: {', '.join(QUOTA_FIELDS)})")
    result = quota_pb2.Quota()
    if quota is not None:
        result.CopyFrom(quota)
    for name, value in fields.items():
        setattr(result, name, value)
    return result


def _upload_result(
    result: ingest_pb2.UploadResult, *, sent_bytes: int, streams: int
) -> UploadResult:
    return UploadResult(
        upload_id=result.upload_id,
        dataset=result.dataset,
        events=result.events,
        by_status=dict(result.events_by_status),
        offsets={o.partition: o.offset for o in result.offsets},
        dataset_created=result.dataset_created,
        format=FORMAT_NAMES.get(result.format, "unknown"),
        seconds={
            "receive": result.receive_seconds,
            "parse": result.parse_seconds,
            "produce": result.produce_seconds,
        },
        sent_bytes=sent_bytes,
        streams=streams,
    )
