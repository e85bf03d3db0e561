"""Replication settings: FLAKEHOUSE_REPLICATION_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class ReplicationSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_REPLICATION_")

    replication_factor: int = Field(2, ge=1, le=5)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    node_timeout_s: float = Field(10.0, gt=0, description="Silence after which a node is dead.")
    reconcile_interval_s: float = Field(1.0, gt=0, description="How often topics are rescanned.")
