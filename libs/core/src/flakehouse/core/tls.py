"""TLS for every gRPC port and every call between services (DESIGN.md §10): a service serves only
over TLS, with the certificate and key its settings name, and verifies the services it calls
against the cluster CA. There is no plaintext mode.

The server re-reads its certificate and key when their files change (checked at each new
connection's handshake), so a certificate renewed in place (cert-manager rewriting a mounted
Secret, `flakehouse up` at its next start) takes effect without a restart."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from flakehouse.core.channel import CHANNEL_OPTIONS
from flakehouse.core.tokens import read_secret

if TYPE_CHECKING:  # clients import this module: no settings machinery for them
    from flakehouse.core.settings import ServiceSettings

log = logging.getLogger(__name__)


class CertificateFiles:
    """A certificate chain and its key on disk, read again when either file changes."""

    def __init__(self, cert_file: str | Path, key_file: str | Path) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._lock = threading.Lock()
        self._stamp = self._stamp_now()
        self._pair = self._read()

    def server_credentials(self) -> grpc.ServerCredentials:
        initial = grpc.ssl_server_certificate_configuration([self._pair])
        # grpc-stubs type the fetcher without its documented None ("no change").
        fetch = self._changed_configuration
        return grpc.dynamic_ssl_server_credentials(initial, fetch)  # type: ignore[arg-type]

    def _changed_configuration(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration when the files changed,
        else None (keep the current one). A half-written or unreadable pair keeps the old."""
        with self._lock:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return None
            try:
                pair = self._read()
            except OSError as exc:
                log.warning("TLS certificate not reloaded", extra={"error": str(exc)})
                return None
            self._stamp, self._pair = stamp, pair
            log.info("TLS certificate reloaded", extra={"cert_file": str(self.cert_file)})
            return grpc.ssl_server_certificate_configuration([pair])

    def _stamp_now(self) -> tuple[float, float]:
        try:
            return (os.stat(self.cert_file).st_mtime, os.stat(self.key_file).st_mtime)
        except OSError:
            return (0.0, 0.0)

    def _read(self) -> tuple[bytes, bytes]:
        key, chain = self.key_file.read_bytes(), self.cert_file.read_bytes()
        if b"PRIVATE KEY" not in key or b"CERTIFICATE" not in chain:
            raise OSError(f"{self.cert_file} / {self.key_file}: not a PEM certificate and key")
        return key, chain


def channel_credentials(ca_file: str | Path | None) -> grpc.ChannelCredentials:
    """Verifies servers against the CA in ca_file, or the system's roots without one."""
    roots = Path(ca_file).read_bytes() if ca_file else None
    return grpc.ssl_channel_credentials(root_certificates=roots)


def service_channel(address: str, settings: ServiceSettings) -> grpc.aio.Channel:
    """A channel from one service to another: the peer verified against the cluster CA, and
    every call carrying the services' own token (never a user's)."""
    credentials = grpc.composite_channel_credentials(
        channel_credentials(settings.tls_ca_file),
        grpc.access_token_call_credentials(read_secret(settings.service_token_file)),
    )
    return grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
