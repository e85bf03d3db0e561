"""Settings common to every service, parsed once at start from FLAKEHOUSE_<SERVICE>_* variables."""

from __future__ import annotations

from typing import TypeVar

from pydantic import Field, FilePath, ValidationError, model_validator
from pydantic_settings import BaseSettings

S = TypeVar("S", bound="ServiceSettings")


class ServiceSettings(BaseSettings):
    """Each service subclasses this with `model_config = SettingsConfigDict(env_prefix=...)`."""

    host: str = Field("127.0.0.1", description="Address the gRPC server binds to.")
    port: int = Field(0, ge=0, le=65535, description="gRPC port; 0 picks a free one.")
    metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus endpoint.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port; 0 picks one.")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    shutdown_grace_s: float = Field(5.0, ge=0, description="Time given to in-flight calls.")
    # TLS is not optional (DESIGN.md §10): a service without its certificate does not start.
    tls_cert_file: FilePath = Field(
        description="This service's certificate chain (PEM); gRPC is served over TLS only."
    )
    tls_key_file: FilePath = Field(description="The private key of tls_cert_file (PEM).")
    tls_ca_file: FilePath = Field(
        description="The cluster CA (PEM): the services this one calls are verified against it."
    )
    service_token_file: FilePath = Field(
        description="The services' own token (one line): what this service presents when it "
        "calls another, and the only credential node RPCs accept."
    )
    admin_token_file: FilePath | None = Field(
        None,
        description="The first admin token (one line): cluster-admin and admin on every "
        "dataset, how the first tokens are created. Unset: none.",
    )


class KafkaSettings(BaseSettings):
    """Mixed into the settings of services that talk to Kafka."""

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic_prefix: str = Field(
        "flakehouse", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="Prefix of every topic."
    )
    topic_replication_factor: int = Field(
        1, ge=1, le=16, description="Kafka replicas of each topic this service creates."
    )
    topic_min_insync_replicas: int = Field(
        1,
        ge=1,
        le=16,
        description="min.insync.replicas of each topic this service creates (acks=all writes "
        "need this many in-sync replicas).",
    )

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) is more than "
                f"topic_replication_factor ({self.topic_replication_factor})"
            )
        return self


def load_settings(cls: type[S]) -> S:
    """Parses settings or exits with a message that names each bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{prefix}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise SystemExit(f"error: bad settings: {problems}") from None
