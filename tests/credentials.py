"""The test session's TLS and tokens: one CA, one certificate for 127.0.0.1/localhost, the
services' own token and a first admin token, named to every service through its settings'
environment (FLAKEHOUSE_<SERVICE>_TLS_*, _SERVICE_TOKEN_FILE, _ADMIN_TOKEN_FILE) and to
clients through FLAKEHOUSE_CA_FILE and FLAKEHOUSE_TOKEN (the admin's). So every service a test
starts, in-process or as a process, serves TLS and checks tokens as in production, and every
client verifies it and authenticates. A local cluster (`flakehouse up`) is seeded with the same
CA and tokens (seed_local_cluster), unless a test wants it to make its own."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from flakehouse.client.cluster import CA_FILE_ENV, TOKEN_ENV
from flakehouse.client.pki import LocalPki
from flakehouse.core.tokens import TokenTable, read_secret

SERVICES = ("ingest", "query", "quota", "replication", "storage")
HOSTS = ("127.0.0.1", "localhost")
SEEDED = ("ca.pem", "ca.key", "service.token", "admin.token")


def install(directory: Path) -> None:
    """Creates the session's CA, certificate and tokens in `directory` and names them in the
    environment."""
    pki = LocalPki(directory)
    ca_file = pki.ensure_ca()
    pair = pki.issue("test-services", list(HOSTS))
    service, admin = pki.ensure_token("service"), pki.ensure_token("admin")
    for name in SERVICES:
        prefix = f"FLAKEHOUSE_{name.upper()}_"
        os.environ[prefix + "TLS_CERT_FILE"] = str(pair.cert_file)
        os.environ[prefix + "TLS_KEY_FILE"] = str(pair.key_file)
        os.environ[prefix + "TLS_CA_FILE"] = str(ca_file)
        os.environ[prefix + "SERVICE_TOKEN_FILE"] = str(service)
        os.environ[prefix + "ADMIN_TOKEN_FILE"] = str(admin)
    os.environ[CA_FILE_ENV] = str(ca_file)
    os.environ[TOKEN_ENV] = read_secret(admin)


def _directory() -> Path:
    return Path(os.environ[CA_FILE_ENV]).parent


def seed_local_cluster(data_dir: Path) -> None:
    """Gives a local cluster about to start in data_dir the session's CA and tokens:
    `flakehouse up` keeps what it finds and issues its services' certificates from that CA, so
    a test's channels (see channel()) work with every cluster of the session."""
    secrets = data_dir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in SEEDED:
        target = secrets / name
        if not target.exists():
            target.write_bytes((_directory() / name).read_bytes())
            target.chmod(0o600)


def ca_file() -> Path:
    return Path(os.environ[CA_FILE_ENV])


def admin_token() -> str:
    return read_secret(_directory() / "admin.token")


def service_token() -> str:
    return read_secret(_directory() / "service.token")


def token_table() -> TokenTable:
    """What a test's own GrpcServer checks calls against: the session's two tokens."""
    return TokenTable(service_token(), admin_token())


def tls_settings() -> dict[str, str]:
    """The TLS and token fields of a service's settings, for settings built without a prefix."""
    return {
        field: os.environ[f"FLAKEHOUSE_INGEST_{field.upper()}"]
        for field in (
            "tls_cert_file",
            "tls_key_file",
            "tls_ca_file",
            "service_token_file",
            "admin_token_file",
        )
    }


def server_credentials() -> grpc.ServerCredentials:
    """For a test's own gRPC server (a fake service)."""
    cert = Path(os.environ["FLAKEHOUSE_INGEST_TLS_CERT_FILE"]).read_bytes()
    key = Path(os.environ["FLAKEHOUSE_INGEST_TLS_KEY_FILE"]).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def channel_credentials(bearer: bool = True) -> grpc.ChannelCredentials:
    """For a test's own channel to a service: the session's CA, and (unless `bearer` is False,
    for a test that sends its own header) the services' own token, what the services send each
    other, so node RPCs answer too."""
    tls = grpc.ssl_channel_credentials(ca_file().read_bytes())
    if not bearer:
        return tls
    return grpc.composite_channel_credentials(
        tls, grpc.access_token_call_credentials(service_token())
    )


def aio_channel(address: str, bearer: bool = True) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, channel_credentials(bearer))


def channel(address: str) -> grpc.Channel:
    return grpc.secure_channel(address, channel_credentials())
