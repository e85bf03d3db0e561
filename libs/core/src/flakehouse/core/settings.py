"""Settings common to every service, parsed once at start from FLAKEHOUSE_<SERVICE>_* variables."""

from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import Field, FilePath, ValidationError, model_validator
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


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

    # A managed Kafka (DESIGN.md §10): kafka.KafkaConnection turns these into aiokafka's
    # arguments; the validator below refuses any of them that would go unused.
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT",
        description="How the clients reach Kafka: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT "
        "(SASL, no TLS: the credentials cross the network readable) or SASL_SSL (SASL over "
        "TLS, what managed Kafkas ask for).",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None,
        description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Required with a "
        "SASL security protocol, refused without one.",
    )
    kafka_sasl_username: str = Field(
        "", description="SASL user name. Required with a SASL security protocol."
    )
    kafka_sasl_password_file: FilePath | None = Field(
        None,
        description="A file holding the SASL password (one line; a Secret's key in "
        "Kubernetes), read when the Kafka clients are built; never the password itself. "
        "Required with a SASL security protocol.",
    )
    kafka_ca_file: FilePath | None = Field(
        None,
        description="CA certificates (PEM) the brokers' certificates are verified against, "
        "with SSL or SASL_SSL; unset: the system's trusted roots.",
    )
    kafka_cert_file: FilePath | None = Field(
        None,
        description="A client certificate chain (PEM) for brokers that ask for one (mutual "
        "TLS), with SSL or SASL_SSL; set kafka_key_file with it.",
    )
    kafka_key_file: FilePath | None = Field(
        None, description="The unencrypted private key (PEM) of kafka_cert_file."
    )

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> KafkaSettings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"topic_min_insync_replicas ({self.topic_min_insync_replicas}) is more than "
                f"topic_replication_factor ({self.topic_replication_factor})"
            )
        return self

    @model_validator(mode="after")
    def _kafka_security_complete(self) -> KafkaSettings:
        """Refuses each combination that would fail at the first connection or leave a
        setting unused, naming the variables it concerns."""

        def var(field: str) -> str:
            return env_name(self, field)

        protocol = self.kafka_security_protocol
        chosen = f"{var('kafka_security_protocol')}={protocol}"
        sasl = {
            "kafka_sasl_mechanism": self.kafka_sasl_mechanism,
            "kafka_sasl_username": self.kafka_sasl_username,
            "kafka_sasl_password_file": self.kafka_sasl_password_file,
        }
        tls = {
            "kafka_ca_file": self.kafka_ca_file,
            "kafka_cert_file": self.kafka_cert_file,
            "kafka_key_file": self.kafka_key_file,
        }
        if protocol in SASL_PROTOCOLS:
            missing = [var(field) for field, value in sasl.items() if not value]
            if missing:
                raise ValueError(
                    f"{chosen} needs {', '.join(missing)} (the mechanism: PLAIN, SCRAM-SHA-256 "
                    "or SCRAM-SHA-512; the password: a file holding it)"
                )
        elif unused := [var(field) for field, value in sasl.items() if value]:
            raise ValueError(
                f"{', '.join(unused)} set, but {chosen} uses no SASL: set "
                f"{var('kafka_security_protocol')} to SASL_SSL or SASL_PLAINTEXT, or unset them"
            )
        if protocol not in TLS_PROTOCOLS and (
            unused := [var(field) for field, value in tls.items() if value]
        ):
            raise ValueError(
                f"{', '.join(unused)} set, but {chosen} uses no TLS: set "
                f"{var('kafka_security_protocol')} to SSL or SASL_SSL, or unset them"
            )
        if (self.kafka_cert_file is None) != (self.kafka_key_file is None):
            given, lacking = (
                ("kafka_cert_file", "kafka_key_file")
                if self.kafka_key_file is None
                else ("kafka_key_file", "kafka_cert_file")
            )
            raise ValueError(
                f"{var(given)} is set without {var(lacking)}: a client certificate needs both"
            )
        return self


def env_name(settings: BaseSettings, field: str) -> str:
    """The variable a setting is read from, for messages: FLAKEHOUSE_INGEST_KAFKA_CA_FILE."""
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()


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
