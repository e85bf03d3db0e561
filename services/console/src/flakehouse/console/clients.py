"""One flakehouse Client (its channels, TLS sessions and retries) per token in use, kept for
the next request of the same user instead of a handshake per request."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

from flakehouse.client.client import Client
from flakehouse.console.settings import ConsoleSettings

MAX_CLIENTS = 64
# A page's call is retried once on UNAVAILABLE: a person waiting prefers an error they can
# retry to a spinner.
RETRIES = 1
# After a call's deadline, before an evicted client's channels are closed.
CLOSE_GRACE_S = 5.0


class ClientPool:
    def __init__(self, settings: ConsoleSettings, size: int = MAX_CLIENTS) -> None:
        self._settings = settings
        self._size = size
        self._clients: OrderedDict[str, Client] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, token: str) -> Client:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            client = Client(
                query=self._settings.query_address,
                ingest=self._settings.ingest_address or None,
                ca_file=self._settings.tls_ca_file,
                token=token,
                timeout_s=self._settings.query_timeout_s,
                retries=RETRIES,
            )
            self._clients[key] = client
            while len(self._clients) > self._size:
                _, evicted = self._clients.popitem(last=False)
                self._close_later(evicted)
            return client

    def _close_later(self, client: Client) -> None:
        """Closes an evicted client once every call it may be making has ended (its deadline):
        closing a channel at once would cancel another request's query."""
        timer = threading.Timer(self._settings.query_timeout_s + CLOSE_GRACE_S, client.close)
        timer.daemon = True
        timer.start()

    def forget(self, token: str) -> None:
        """Drops a signed-out (or refused) token's client."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            client = self._clients.pop(key, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            client.close()
