"""A link's connection to its source: the other cluster's ingest service, reached with the CA and
the read token the link holds (never this cluster's own). It gives the puller plain values; a
failed call comes out as the FlakehouseError it carries (status, message, retry delay)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc

from flakehouse.core.channel import CHANNEL_OPTIONS
from flakehouse.core.rpc_errors import error_from_rpc
from flakehouse.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from flakehouse.replication.v1 import replication_pb2


@dataclass(frozen=True)
class SourceRecord:
    partition: int
    offset: int
    end_offset: int
    origin: str
    via: tuple[str, ...]  # the clusters this copy passed through after its origin
    upload_id: str
    batch: bytes  # empty: a record that originates here or passed through here: not sent


CAUGHT_UP = None  # the source had nothing more when it last looked


@dataclass(frozen=True)
class SourceDataset:
    partitions: int
    generation: int  # its incarnation: offsets of one mean nothing in another


class SourceCluster:
    """One channel to the source's ingest service, for the life of one pull attempt."""

    def __init__(self, link: replication_pb2.LinkRecord, timeout_s: float) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=link.ca_pem or None)
        if link.token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(link.token)
            )
        self._channel = grpc.aio.secure_channel(
            link.source_address, credentials, options=CHANNEL_OPTIONS
        )
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def cluster_id(self) -> str:
        try:
            response = await self._stub.GetCluster(
                ingest_pb2.GetClusterRequest(), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return response.cluster_id

    async def dataset(self, name: str) -> SourceDataset:
        try:
            response = await self._stub.GetDataset(
                ingest_pb2.GetDatasetRequest(name=name), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        return SourceDataset(response.dataset.partitions, response.dataset.generation)

    async def changes(
        self,
        dataset: SourceDataset,
        name: str,
        from_offsets: Mapping[int, int],
        reader_cluster: str,
    ) -> AsyncIterator[SourceRecord | None]:
        """The source's records from `from_offsets`, and CAUGHT_UP whenever it had no more;
        read only as fast as the caller takes them (gRPC flow control). Ends with
        FailedPrecondition or NotFound once the dataset is no longer `dataset`'s generation."""
        call = self._stub.ReadChanges(
            ingest_pb2.ReadChangesRequest(
                dataset=name,
                from_offsets=dict(from_offsets),
                reader_cluster=reader_cluster,
                generation=dataset.generation,
            )
        )
        try:
            async for change in call:
                if change.caught_up:
                    yield CAUGHT_UP
                    continue
                yield SourceRecord(
                    change.partition,
                    change.offset,
                    change.end_offset,
                    change.origin,
                    tuple(change.via),
                    change.upload_id,
                    change.batch,
                )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    async def close(self) -> None:
        await self._channel.close(None)
