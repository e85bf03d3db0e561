"""The local cluster's CA, its services' certificates and its tokens, in one directory: what
`flakehouse up` needs to run every service with TLS and tokens.

The CA lives 10 years and a service's certificate 1 year, both from 5 minutes back (clock skew
between peers). Each is reused across restarts and renewed once it expires within 30 days; a
service's certificate is also reissued when its hosts change or the current CA did not sign it, so
a renewed CA reissues them all. Keys are 0o600 in a 0o700 directory, certificates 0o644: nothing in
them is secret. Files are replaced atomically: a crash leaves the old file or the new, never half a
key, and a certificate left beside a key that is not its own is reissued."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from flakehouse.core.tokens import new_secret

CA_LIFETIME = timedelta(days=3650)
LEAF_LIFETIME = timedelta(days=365)
RENEW_WITHIN = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)

_SERVICE_NAME = re.compile(r"[a-z0-9-]{1,63}")
_CA_SUBJECT = x509.Name.from_rfc4514_string("CN=Flakehouse local CA,O=Flakehouse")
# Every service is both: a server to its callers and a client of the services it calls.
_SERVICE_USAGE = x509.ExtendedKeyUsage(
    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
)

_Key = ec.EllipticCurvePrivateKey
_Pair = tuple[x509.Certificate, _Key]


@dataclass(frozen=True)
class CertPair:
    """A service's certificate and private key, as PEM files for its TLS server credentials."""

    cert_file: Path
    key_file: Path


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LocalPki:
    """The CA and service certificates in `directory`; `now` (timezone-aware) is the clock that
    certificates start from and renewal is judged by."""

    def __init__(self, directory: Path, *, now: Callable[[], datetime] = _utc_now) -> None:
        self.directory = directory
        self._now = now

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def ensure_ca(self) -> Path:
        """The CA certificate's path, creating or renewing the CA first when it needs it."""
        self._current_ca()
        return self.ca_file

    def ensure_token(self, name: str) -> Path:
        """`directory/<name>.token`: a token's secret, created once (owner-only) and kept, so
        the services and clients that hold it keep working across restarts."""
        path = self.directory / f"{name}.token"
        if not path.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            self.directory.chmod(0o700)
            _write_atomically(path, (new_secret() + "\n").encode(), 0o600)
        return path

    def issue(self, name: str, hosts: Sequence[str]) -> CertPair:
        """Service `name`'s certificate for `hosts` (IP addresses or DNS names), reused when it
        still fits them and the current CA, else issued anew."""
        if not _SERVICE_NAME.fullmatch(name):
            raise ValueError(f"service name {name!r}: 1 to 63 characters of a-z, 0-9 and '-'")
        if not hosts:
            raise ValueError(f"service {name!r}: a certificate needs at least one host")
        wanted = [_general_name(host) for host in dict.fromkeys(hosts)]
        ca_cert, ca_key = self._current_ca()
        pair = CertPair(self.directory / f"{name}.pem", self.directory / f"{name}.key")
        existing = _lasting_pair(pair.cert_file, pair.key_file, self._now())
        if existing is not None and _issued_for(existing[0], ca_cert, wanted):
            return pair
        key = ec.generate_private_key(ec.SECP256R1())
        start = self._now()
        authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
        cert = (
            _builder(x509.Name.from_rfc4514_string(f"CN={name}"), key, start)
            .issuer_name(ca_cert.subject)
            .not_valid_after(start + LEAF_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
            .add_extension(_SERVICE_USAGE, critical=False)
            .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
            .add_extension(authority, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _save(pair.cert_file, pair.key_file, cert, key)
        return pair

    def _current_ca(self) -> _Pair:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.chmod(0o700)  # mkdir leaves an existing, perhaps looser, one as it was
        ca_key_file = self.directory / "ca.key"
        existing = _lasting_pair(self.ca_file, ca_key_file, self._now())
        if existing is not None:
            return existing
        key = ec.generate_private_key(ec.SECP256R1())
        start = self._now()
        cert = (
            _builder(_CA_SUBJECT, key, start)
            .issuer_name(_CA_SUBJECT)
            .not_valid_after(start + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        _save(self.ca_file, ca_key_file, cert, key)
        return cert, key


def _builder(subject: x509.Name, key: _Key, start: datetime) -> x509.CertificateBuilder:
    """What the CA and service certificates share: subject, key, serial and start."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    """KeyUsage with only the `allowed` flags set: its constructor wants all nine."""
    usages = ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment"]
    usages += ["key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"]
    return x509.KeyUsage(**{usage: allowed.get(usage, False) for usage in usages})


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _lasting_pair(cert_file: Path, key_file: Path, now: datetime) -> _Pair | None:
    """The pair in these files; None if either is missing or unreadable, if they do not match, or
    if the certificate expires within RENEW_WITHIN of `now`."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (FileNotFoundError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return (cert, key) if cert.not_valid_after_utc - now > RENEW_WITHIN else None


def _issued_for(
    cert: x509.Certificate, ca: x509.Certificate, hosts: list[x509.GeneralName]
) -> bool:
    """Whether `ca` signed `cert` (a renewed CA did not) for exactly `hosts`."""
    try:
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(names) == set(hosts)


def _save(cert_file: Path, key_file: Path, cert: x509.Certificate, key: _Key) -> None:
    pkcs8 = serialization.PrivateFormat.PKCS8
    pem = serialization.Encoding.PEM
    _write_atomically(key_file, key.private_bytes(pem, pkcs8, serialization.NoEncryption()), 0o600)
    _write_atomically(cert_file, cert.public_bytes(pem), 0o644)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` in one rename; the temporary file has `mode` from its creation
    (fchmod as well, since the umask may have narrowed a certificate's 0o644)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
