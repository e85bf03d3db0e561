"""Console settings: FLAKEHOUSE_CONSOLE_*."""

from __future__ import annotations

from pydantic import Field, FilePath, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """The console holds no credential of its own: it calls query and ingest with the signed-in
    user's token, so a page shows what that token may read and nothing more."""

    model_config = SettingsConfigDict(env_prefix="FLAKEHOUSE_CONSOLE_")

    host: str = Field("127.0.0.1", description="Address the page and the JSON API bind to.")
    port: int = Field(0, ge=0, le=65535, description="HTTP(S) port; 0 picks a free one.")
    metrics_host: str = Field("127.0.0.1", description="Address of the Prometheus endpoint.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port; 0 picks one.")
    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    query_address: str = Field(description="host:port of the query service.")
    ingest_address: str = Field(
        "", description="host:port of the ingest service, for uploads from the browser."
    )
    tls_ca_file: FilePath = Field(
        description="The cluster CA (PEM) that query's and ingest's certificates are verified "
        "against."
    )
    tls_cert_file: FilePath | None = Field(
        None,
        description="A certificate chain (PEM) to serve HTTPS with; with tls_key_file. Unset: "
        "plain HTTP (behind an Ingress that terminates TLS, or on 127.0.0.1).",
    )
    tls_key_file: FilePath | None = Field(None, description="The private key of tls_cert_file.")
    cookie_secure: bool = Field(
        True,
        description="Mark the session cookie Secure (sent over HTTPS only). Only a console on "
        "127.0.0.1 over plain HTTP (`flakehouse up`) sets false.",
    )
    query_timeout_s: float = Field(
        60.0, gt=0, le=600, description="Deadline of a query asked from the page or the API."
    )
    session_max_age_s: int = Field(
        12 * 3600, gt=0, description="Lifetime of the sign-in cookie, in seconds."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> ConsoleSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both tls_cert_file and tls_key_file, or neither")
        return self

    @property
    def serves_https(self) -> bool:
        return self.tls_cert_file is not None
