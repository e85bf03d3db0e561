"""Quota settings: FLAKEHOUSE_QUOTA_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class QuotaSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_QUOTA_")

    burst_s: float = Field(2.0, gt=0, description="Seconds of rate a bucket can save up.")
    cutoff_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often stored-bytes floors are recomputed from the usage reports, and "
        "limits of deleted datasets forgotten.",
    )
    drop_grace_s: float = Field(
        10.0,
        ge=0,
        description="How long a new floor or a shorter retention is published before storage "
        "may delete what it hides: query processes learn it first.",
    )
    clock_skew_s: float = Field(
        60.0,
        ge=0,
        description="Margin for clocks in retention drops: storage deletes only events older "
        "than the retention plus this.",
    )
    query_slot_wait_ms: int = Field(
        500,
        ge=0,
        # Below the query service's 2 s timeout on AcquireQuerySlot, which would otherwise
        # run the query unchecked instead of refusing it.
        le=1_500,
        description="How long a query waits for a free slot before it is refused.",
    )
    usage_stale_s: float = Field(
        60.0,
        gt=0,
        description="A storage node's usage report older than this is forgotten (a few of "
        "storage's usage intervals).",
    )
