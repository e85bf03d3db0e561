"""Quota settings: FLAKEHOUSE_QUOTA_*."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flakehouse.core.settings import KafkaSettings, ServiceSettings


class QuotaSettings(ServiceSettings, KafkaSettings):
    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_QUOTA_")

    burst_s: float = Field(2.0, gt=0, description="Seconds of rate a bucket can save up.")
