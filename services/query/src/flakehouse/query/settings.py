"""Query settings: FLAKEHOUSE_QUERY_*."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings
from flakehouse.query.sql.planner import DEFAULT_RAW_LIMIT


class QuerySettings(ServiceSettings, KafkaSettings):
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
    max_groups: int = Field(
        100_000,
        ge=0,
        le=2**32 - 1,
        description="Most groups an aggregate query may hold, in each storage node's fragment "
        "and in the merge; past it the query fails with RESOURCE_EXHAUSTED. 0: no limit. "
        "Measured (docs/benchmarks.md): at 100,000 groups from 8 partitions the merge peaks "
        "at 0.2 GB (counts) to 0.5 GB (percentiles); a million groups from 2 partitions at "
        "1 to 2 GB, past the chart's 1 GiB for a query pod.",
    )
    max_answer_rows: int = Field(
        100_000,
        ge=0,
        description="Most rows an answer may return (after HAVING and LIMIT); past it the query "
        f"fails with RESOURCE_EXHAUSTED. 0: no limit; else at least {DEFAULT_RAW_LIMIT}, the "
        "default LIMIT of raw rows.",
    )

    @model_validator(mode="after")
    def _answer_rows_hold_the_default_limit(self) -> QuerySettings:
        if 0 < self.max_answer_rows < DEFAULT_RAW_LIMIT:
            raise ValueError(
                f"max_answer_rows ({self.max_answer_rows}) is less than {DEFAULT_RAW_LIMIT}, the "
                "default LIMIT of raw rows (0: no limit)"
            )
        return self
