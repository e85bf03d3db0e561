"""Storage settings: FLAKEHOUSE_STORAGE_*."""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class StorageSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_STORAGE_")

    node_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9._-]{1,63}$")
    zone: str = Field(
        "", description="Failure domain, so replicas of a partition avoid sharing one."
    )
    data_dir: Path = Field(Path("data"), description="Where the RocksDB database lives.")
    replication_address: str = Field(..., description="host:port of the replication service.")
    quota_address: str = Field("", description="host:port of the quota service; empty: none.")
    advertised_address: str = Field(
        "", description="Address peers and the query service use; default host:port."
    )
    seal_rows: int = Field(100_000, ge=1, description="Seal the open segment at this many rows.")
    seal_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="... or at this size.")
    seal_age_s: float = Field(10.0, gt=0, description="... or when it is this old.")
    dedupe_window: int = Field(
        500_000, ge=0, description="Event ids per partition remembered to drop duplicates."
    )
    compaction_interval_s: float = Field(
        30.0, gt=0, description="How often runs of small sealed segments are merged."
    )
    compaction_min_segments: int = Field(
        4, ge=2, description="Merge a run of small segments once it has this many."
    )
    cache_bytes: int = Field(
        1 << 30,
        ge=16 << 20,
        description="Decoded columns kept in memory for queries; size it to the columns "
        "queries read (about 50 bytes per event held for the usual ones).",
    )
    bootstrap_timeout_s: float = Field(
        300.0, gt=0, description="Longest copy of one partition's segments from a peer."
    )
    usage_interval_s: float = Field(10.0, gt=0, description="How often usage goes to quota.")
