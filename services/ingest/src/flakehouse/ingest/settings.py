"""Ingest settings: FLAKEHOUSE_INGEST_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class IngestSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_INGEST_")

    default_partitions: int = Field(8, ge=1, le=1024, description="Partitions of a new dataset.")
    max_upload_bytes: int = Field(512 * 1024 * 1024, gt=0, description="Largest accepted file.")
    max_concurrent_uploads: int = Field(4, ge=1, description="Uploads parsed/produced at once.")
    spool_memory_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="Upload bytes kept in memory before spilling to disk."
    )
    quota_address: str = Field("", description="host:port of the quota service; empty: none.")
    produce_timeout_s: float = Field(30.0, gt=0)
