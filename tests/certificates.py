"""The test session's TLS: one CA and one certificate for 127.0.0.1/localhost, named to every
service through its settings' environment (FLAKEHOUSE_<SERVICE>_TLS_*) and to clients through
FLAKEHOUSE_CA_FILE, so that every service a test starts, in-process or as a process, serves TLS
as in production, and every client verifies it. A local cluster (`flakehouse up`) makes its own
CA, and its clients take it from its cluster file."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from flakehouse.client.cluster import CA_FILE_ENV
from flakehouse.client.pki import LocalPki

SERVICES = ("ingest", "query", "quota", "replication", "storage")
HOSTS = ("127.0.0.1", "localhost")


def install(directory: Path) -> None:
    """Creates the session's CA and certificate in `directory` and names them in the
    environment."""
    pki = LocalPki(directory)
    ca_file = pki.ensure_ca()
    pair = pki.issue("test-services", list(HOSTS))
    for service in SERVICES:
        prefix = f"FLAKEHOUSE_{service.upper()}_TLS_"
        os.environ[prefix + "CERT_FILE"] = str(pair.cert_file)
        os.environ[prefix + "KEY_FILE"] = str(pair.key_file)
        os.environ[prefix + "CA_FILE"] = str(ca_file)
    os.environ[CA_FILE_ENV] = str(ca_file)


def seed_local_cluster(data_dir: Path) -> None:
    """Gives a local cluster about to start in data_dir the session's CA: `flakehouse up`
    reuses a CA it finds and issues its services' certificates from it, so a test's channels
    (see channel()) trust every cluster of the session, and cluster.json names the same CA."""
    ca_file = Path(os.environ[CA_FILE_ENV])
    tls = data_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in ("ca.pem", "ca.key"):
        target = tls / name
        if not target.exists():
            target.write_bytes((ca_file.parent / name).read_bytes())
            target.chmod(0o600)


def ca_file() -> Path:
    return Path(os.environ[CA_FILE_ENV])


def tls_settings() -> dict[str, str]:
    """The TLS fields of a service's settings, for settings built without a prefix."""
    return {
        f"tls_{name}_file": os.environ[f"FLAKEHOUSE_INGEST_TLS_{name.upper()}_FILE"]
        for name in ("cert", "key", "ca")
    }


def server_credentials() -> grpc.ServerCredentials:
    """For a test's own gRPC server (a fake service)."""
    cert = Path(os.environ["FLAKEHOUSE_INGEST_TLS_CERT_FILE"]).read_bytes()
    key = Path(os.environ["FLAKEHOUSE_INGEST_TLS_KEY_FILE"]).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def channel_credentials() -> grpc.ChannelCredentials:
    """For a test's own channel to a service it started."""
    return grpc.ssl_channel_credentials(Path(os.environ[CA_FILE_ENV]).read_bytes())


def aio_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, channel_credentials())


def channel(address: str) -> grpc.Channel:
    return grpc.secure_channel(address, channel_credentials())
