"""Ingest settings: FLAKEHOUSE_INGEST_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class IngestSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_INGEST_")

    default_partitions: int = Field(8, ge=1, le=1024, description="Partitions of a new dataset.")
    max_upload_bytes: int = Field(4 * 1024**3, gt=0, description="Largest accepted file.")
    max_files_request_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        le=48 * 1024 * 1024,  # under gRPC's message limit, with room for the rest of the call
        description="Most bytes of files in one UploadFiles call (a batch of small files).",
    )
    max_concurrent_uploads: int = Field(
        16, ge=1, description="Uploads received, parsed and produced at once."
    )
    admission_wait_s: float = Field(
        2.0, ge=0, description="How long an upload waits for a free slot before RESOURCE_EXHAUSTED."
    )
    spool_dir: str | None = Field(
        None,
        description="Where uploads are spooled; default: tmp. Resumable uploads keep their bytes "
        "in its `resumable` directory between streams: put it on a volume that outlives the "
        "process.",
    )
    resume_ttl_s: float = Field(
        3600.0, gt=0, description="How long a resumable upload's bytes wait for its next stream."
    )
    receive_idle_s: float = Field(
        120.0, gt=0, description="An upload stream that sends nothing for this long is dropped."
    )
    parse_workers: int = Field(
        2, ge=0, description="Worker processes that parse uploads; 0: a thread in the service."
    )
    parse_in_parts_bytes: int = Field(
        32 * 1024 * 1024,
        gt=0,
        description="A JSON lines upload this large is parsed in parts, one per parse worker.",
    )
    quota_address: str = Field("", description="host:port of the quota service; empty: none.")
    max_change_streams: int = Field(
        16,
        ge=1,
        description="ReadChanges streams (other clusters' links pulling) served at once; more "
        "are told to retry later.",
    )
    produce_timeout_s: float = Field(
        15.0, gt=0, description="Longest wait for Kafka to acknowledge an upload's records."
    )
