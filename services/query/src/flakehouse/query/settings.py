"""Query settings: FLAKEHOUSE_QUERY_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import ServiceSettings


class QuerySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_QUERY_")

    replication_address: str = Field(..., description="host:port of the replication service.")
    quota_address: str = Field(
        "", description="host:port of the quota service; empty: no limits apply."
    )
    default_timeout_ms: int = Field(4000, gt=0, description="Deadline of a query by default.")
    max_timeout_ms: int = Field(60000, gt=0, description="Longest deadline a query may ask for.")
    max_replica_lag: int = Field(
        1000,
        ge=0,
        description="Records a partition's first replica may lag before the next is asked "
        "instead; 0: no limit.",
    )
    hedge_after_ms: int = Field(
        400,
        gt=0,
        description="Least time before a partition's next replica is asked too; also slower "
        "than twice the median of the partitions answered (fanout.py).",
    )
