"""The local cluster's CA and service certificates: they verify, are reused across restarts as
they are, are renewed 30 days before they expire, keep their keys private, and carry a real gRPC
TLS handshake."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from flakehouse.client.pki import LocalPki

START = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
HOSTS = ["127.0.0.1", "localhost"]


def at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def files(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Each file's bytes and modification time: what a restart that reuses them leaves alone."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in directory.iterdir()}


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_the_ca_signs_a_service_certificate_for_exactly_its_hosts(tmp_path: Path) -> None:
    pki = LocalPki(tmp_path / "pki", now=at(START))
    ca = certificate(pki.ensure_ca())
    pair = pki.issue("ingest", ["127.0.0.1", "localhost", "::1"])
    leaf = certificate(pair.cert_file)

    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert ca.subject.rfc4514_string() == "CN=Flakehouse local CA,O=Flakehouse"
    ca_public_key = ca.public_key()
    assert isinstance(ca_public_key, ec.EllipticCurvePublicKey)
    assert ca_public_key.curve.name == "secp256r1"
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ca_key_id = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert ca.not_valid_before_utc == START - timedelta(minutes=5)
    assert ca.not_valid_after_utc == START + timedelta(days=3650)

    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ingest"
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert len(names) == 3
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    purposes = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(purposes) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    authority = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert authority.key_identifier == ca_key_id
    assert leaf.not_valid_before_utc == START - timedelta(minutes=5)
    assert leaf.not_valid_after_utc == START + timedelta(days=365)
    key = serialization.load_pem_private_key(pair.key_file.read_bytes(), password=None)
    assert key.public_key() == leaf.public_key()


def test_a_restart_reuses_the_files_as_they_are(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = LocalPki(directory, now=at(START)).issue("query", HOSTS)
    before = files(directory)
    # 31 days before the certificate expires: one day short of its renewal.
    later = LocalPki(directory, now=at(START + timedelta(days=334)))
    assert later.issue("query", [*reversed(HOSTS), "127.0.0.1"]) == first
    assert later.ensure_ca() == directory / "ca.pem"
    assert files(directory) == before


def test_other_hosts_get_a_new_certificate_from_the_same_ca(tmp_path: Path) -> None:
    pki = LocalPki(tmp_path / "pki", now=at(START))
    pair = pki.issue("query", HOSTS)
    ca_before, cert_before = pki.ca_file.read_bytes(), pair.cert_file.read_bytes()

    assert pki.issue("query", ["127.0.0.1", "query.local"]) == pair
    assert pki.ca_file.read_bytes() == ca_before
    assert pair.cert_file.read_bytes() != cert_before
    names = certificate(pair.cert_file).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(names.value) == {
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("query.local"),
    }


def test_a_certificate_within_30_days_of_expiry_is_renewed_and_the_ca_kept(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "pki"
    pair = LocalPki(directory, now=at(START)).issue("query", HOSTS)
    before = files(directory)

    renewal = START + timedelta(days=349)  # 11 months and 2 weeks: 16 days left
    assert LocalPki(directory, now=at(renewal)).issue("query", HOSTS) == pair
    after = files(directory)
    assert after["ca.pem"] == before["ca.pem"] and after["ca.key"] == before["ca.key"]
    assert after["query.pem"][0] != before["query.pem"][0]
    assert after["query.key"][0] != before["query.key"][0]
    renewed = certificate(pair.cert_file)
    renewed.verify_directly_issued_by(certificate(directory / "ca.pem"))
    assert renewed.not_valid_after_utc == renewal + timedelta(days=365)


def test_a_renewed_ca_takes_every_certificate_it_signed_with_it(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    old_ca = certificate(LocalPki(directory, now=at(START)).ensure_ca())
    # 50 days before the CA expires: still the old CA, and a certificate that it signs.
    LocalPki(directory, now=at(START + timedelta(days=3600))).issue("storage-1", HOSTS)
    assert certificate(directory / "ca.pem") == old_ca
    cert_before = (directory / "storage-1.pem").read_bytes()

    # 9 years and 11.5 months in: 15 days left on the CA. The month-old certificate would be
    # reused on its own terms; signed by the old CA, it is not.
    renewal = START + timedelta(days=3635)
    pki = LocalPki(directory, now=at(renewal))
    new_ca = certificate(pki.ensure_ca())
    assert new_ca != old_ca
    assert new_ca.not_valid_after_utc == renewal + timedelta(days=3650)
    pair = pki.issue("storage-1", HOSTS)
    assert pair.cert_file.read_bytes() != cert_before
    leaf = certificate(pair.cert_file)
    leaf.verify_directly_issued_by(new_ca)
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(old_ca)


def test_a_certificate_beside_a_key_that_is_not_its_own_is_reissued(tmp_path: Path) -> None:
    """What a crash between writing the key and the certificate would leave."""
    pki = LocalPki(tmp_path / "pki")
    pair = pki.issue("quota", HOSTS)
    stranger = LocalPki(tmp_path / "other").issue("quota", HOSTS)
    pair.key_file.write_bytes(stranger.key_file.read_bytes())

    pki.issue("quota", HOSTS)
    key = serialization.load_pem_private_key(pair.key_file.read_bytes(), password=None)
    assert key.public_key() == certificate(pair.cert_file).public_key()


def test_keys_are_private_and_a_looser_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    directory.mkdir()
    directory.chmod(0o755)

    pair = LocalPki(directory).issue("ingest", HOSTS)
    assert mode(directory) == 0o700
    assert mode(directory / "ca.key") == mode(pair.key_file) == 0o600
    assert mode(directory / "ca.pem") == mode(pair.cert_file) == 0o644
    assert sorted(path.name for path in directory.iterdir()) == [
        "ca.key",
        "ca.pem",
        "ingest.key",
        "ingest.pem",
    ]


def test_modes_are_exact_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        pair = LocalPki(tmp_path / "new" / "pki").issue("ingest", HOSTS)
    finally:
        os.umask(previous)
    assert mode(tmp_path / "new" / "pki") == 0o700
    assert mode(pair.key_file) == 0o600
    assert mode(pair.cert_file) == 0o644


@pytest.mark.parametrize("name", ["", "Ingest", "storage_1", "query.local", "../ca", "a" * 64])
def test_a_service_name_outside_a_z_0_9_and_dash_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="1 to 63 characters of a-z, 0-9 and '-'"):
        LocalPki(tmp_path / "pki").issue(name, HOSTS)
    assert not (tmp_path / "pki").exists()


def test_names_up_to_63_characters_are_accepted_and_a_host_is_required(tmp_path: Path) -> None:
    pki = LocalPki(tmp_path / "pki")
    assert pki.issue("a" * 63, HOSTS).cert_file.name == "a" * 63 + ".pem"
    with pytest.raises(ValueError, match="at least one host"):
        pki.issue("query", [])


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    """A gRPC server with the standard health service on a free loopback port, serving the
    certificate its PKI issued; yields its address and that PKI's CA."""
    pki = LocalPki(tmp_path / "pki")
    pair = pki.issue("query", HOSTS)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(pair.key_file.read_bytes(), pair.cert_file.read_bytes())]
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}", pki.ca_file.read_bytes()
    finally:
        server.stop(grace=None)


def health_check(channel: grpc.Channel) -> int:
    with channel:
        request = health_pb2.HealthCheckRequest()
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status)


def test_a_client_that_trusts_the_ca_completes_a_grpc_tls_handshake(
    tls_server: tuple[str, bytes],
) -> None:
    address, ca = tls_server
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca))
    assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING


def test_a_client_that_trusts_another_ca_is_refused(
    tls_server: tuple[str, bytes], tmp_path: Path
) -> None:
    address, _ = tls_server
    other_ca = LocalPki(tmp_path / "other").ensure_ca().read_bytes()
    channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=other_ca))
    with pytest.raises(grpc.RpcError) as refused:
        health_check(channel)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_is_refused(tls_server: tuple[str, bytes]) -> None:
    address, _ = tls_server
    with pytest.raises(grpc.RpcError) as refused:
        health_check(grpc.insecure_channel(address))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
