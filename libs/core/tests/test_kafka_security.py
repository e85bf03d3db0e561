"""Kafka SASL and TLS settings, for a managed Kafka: the combinations the settings refuse, and
what reaches aiokafka's producer, consumer and admin client. The embedded broker (tansu) has no
SASL or TLS listener, so no SASL exchange is tested here: the clients' configuration is, and
the TLS context in a handshake with an in-process TLS server."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pydantic_settings import SettingsConfigDict

from flakehouse.client.pki import LocalPki
from flakehouse.core.kafka import KafkaAdmin, KafkaConnection, make_consumer, make_producer
from flakehouse.core.settings import KafkaSettings, ServiceSettings, load_settings
from flakehouse.core.token_follower import TokenFollower
from tests import credentials

PREFIX = "FLAKEHOUSE_INGEST_"
PASSWORD = "correct horse battery staple"
BOOTSTRAP = "b-1.kafka.example.com:9096,b-2.kafka.example.com:9096"
Env = dict[str, str | None]  # variables without the prefix; None: unset


class ServiceLike(ServiceSettings, KafkaSettings):
    """Settings as a service has them, read from the ingest service's variables (the session
    sets its TLS ones)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX)


@dataclass(frozen=True)
class Files:
    password: Path
    ca: Path  # signed the broker's certificate and the client's
    broker_cert: Path
    broker_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # signed neither


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    directory = tmp_path_factory.mktemp("kafka-security")
    password = directory / "kafka-password"
    password.write_text(PASSWORD + "\n")
    pki = LocalPki(directory / "pki")
    ca = pki.ensure_ca()
    broker = pki.issue("broker", ["localhost"])
    client = pki.issue("flakehouse-client", ["client.flakehouse.test"])
    other_ca = LocalPki(directory / "other").ensure_ca()
    return Files(
        password, ca, broker.cert_file, broker.key_file, client.cert_file, client.key_file, other_ca
    )


def placeholders(files: Files) -> dict[str, str]:
    return {
        "{password}": str(files.password),
        "{ca}": str(files.ca),
        "{cert}": str(files.client_cert),
        "{key}": str(files.client_key),
        "{missing}": str(files.password.with_name("no-such-file")),
    }


def load(monkeypatch: pytest.MonkeyPatch, files: Files, env: Env) -> ServiceLike:
    """The settings a service would load from these variables (names without the prefix; None:
    unset), through load_settings: a refusal is the SystemExit an operator sees."""
    for name in [n for n in ServiceLike.model_fields if n.startswith("kafka_")]:
        monkeypatch.delenv(f"{PREFIX}{name.upper()}", raising=False)
    for name, value in env.items():
        if value is None:
            continue
        for placeholder, path in placeholders(files).items():
            value = value.replace(placeholder, path)
        monkeypatch.setenv(f"{PREFIX}{name}", value)
    return load_settings(ServiceLike)


SASL_SSL: Env = {
    "KAFKA_BOOTSTRAP": BOOTSTRAP,
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "flakehouse",
    "KAFKA_SASL_PASSWORD_FILE": "{password}",
}
SASL_SSL_FULL: Env = {
    **SASL_SSL,
    "KAFKA_CA_FILE": "{ca}",
    "KAFKA_CERT_FILE": "{cert}",
    "KAFKA_KEY_FILE": "{key}",
}


# --- the settings validator ---------------------------------------------------------------

REFUSED = [
    pytest.param(
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE"],
        [],
        id="sasl-without-anything",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SASL_PASSWORD_FILE": None},
        ["KAFKA_SASL_PASSWORD_FILE"],
        ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME"],
        id="sasl-without-password-file",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": None},
        ["KAFKA_SASL_MECHANISM"],
        ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE"],
        id="sasl-without-mechanism",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SASL_USERNAME": None},
        ["KAFKA_SASL_USERNAME"],
        ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD_FILE"],
        id="sasl-without-username",
    ),
    pytest.param(
        {"KAFKA_SASL_MECHANISM": "PLAIN"},
        ["KAFKA_SASL_MECHANISM", "KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL"],
        [],
        id="mechanism-without-sasl",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_MECHANISM": None},
        ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD_FILE", "=SSL uses no SASL"],
        [],
        id="credentials-without-sasl",
    ),
    pytest.param(
        {"KAFKA_CA_FILE": "{ca}"},
        ["KAFKA_CA_FILE", "=PLAINTEXT uses no TLS"],
        [],
        id="ca-without-tls",
    ),
    pytest.param(
        {
            **SASL_SSL,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_CERT_FILE": "{cert}",
            "KAFKA_KEY_FILE": "{key}",
        },
        ["KAFKA_CERT_FILE", "KAFKA_KEY_FILE", "=SASL_PLAINTEXT uses no TLS"],
        [],
        id="client-certificate-without-tls",
    ),
    pytest.param(
        {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_CERT_FILE": "{cert}"},
        [f"KAFKA_CERT_FILE is set without {PREFIX}KAFKA_KEY_FILE"],
        [],
        id="certificate-without-key",
    ),
    pytest.param(
        {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_KEY_FILE": "{key}"},
        [f"KAFKA_KEY_FILE is set without {PREFIX}KAFKA_CERT_FILE"],
        [],
        id="key-without-certificate",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SASL_MECHANISM": "GSSAPI"},
        ["KAFKA_SASL_MECHANISM", "'SCRAM-SHA-512'"],
        [],
        id="unknown-mechanism",
    ),
    pytest.param(
        {"KAFKA_SECURITY_PROTOCOL": "TLS"},
        ["KAFKA_SECURITY_PROTOCOL", "'SASL_SSL'"],
        [],
        id="unknown-protocol",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SASL_PASSWORD_FILE": "{missing}"},
        ["KAFKA_SASL_PASSWORD_FILE"],
        [],
        id="password-file-missing",
    ),
]


@pytest.mark.parametrize(("env", "named", "not_named"), REFUSED)
def test_a_bad_combination_is_refused_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch,
    files: Files,
    env: Env,
    named: list[str],
    not_named: list[str],
) -> None:
    with pytest.raises(SystemExit) as refused:
        load(monkeypatch, files, env)
    message = str(refused.value)
    for text in named:  # a variable's name, with the prefix the service reads it with
        assert (PREFIX + text if text.startswith("KAFKA_") else text) in message
    for variable in not_named:
        assert f"{PREFIX}{variable}" not in message
    assert PASSWORD not in message


ACCEPTED = [
    pytest.param({}, id="plaintext-by-default"),
    pytest.param({"KAFKA_SECURITY_PROTOCOL": "SSL"}, id="tls-with-the-system-roots"),
    pytest.param(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_CA_FILE": "{ca}",
            "KAFKA_CERT_FILE": "{cert}",
            "KAFKA_KEY_FILE": "{key}",
        },
        id="mutual-tls",
    ),
    pytest.param(
        {**SASL_SSL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"},
        id="sasl-plaintext-plain",
    ),
    pytest.param({**SASL_SSL, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"}, id="sasl-ssl-scram-256"),
    pytest.param(SASL_SSL_FULL, id="sasl-ssl-scram-512-with-ca-and-client-certificate"),
]


@pytest.mark.parametrize("env", ACCEPTED)
async def test_a_good_combination_is_accepted_and_builds_a_connection(
    monkeypatch: pytest.MonkeyPatch, files: Files, env: Env
) -> None:
    settings = load(monkeypatch, files, env)
    protocol = env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT"
    assert settings.kafka_security_protocol == protocol
    kafka = KafkaConnection.from_settings(settings)
    assert kafka.security_protocol == protocol
    assert (kafka.ssl_context is not None) == protocol.endswith("SSL")
    expected_password = PASSWORD if protocol.startswith("SASL_") else None
    assert kafka.sasl_plain_password == expected_password
    producer = make_producer(kafka, "test")  # aiokafka's own checks of the combination
    await producer.stop()


# --- what reaches aiokafka ------------------------------------------------------------------


@pytest.fixture
async def sasl_ssl_clients(
    monkeypatch: pytest.MonkeyPatch, files: Files
) -> AsyncIterator[tuple[KafkaConnection, dict[str, Any]]]:
    """Every kind of client the services build, from SASL_SSL settings: each one's
    AIOKafkaClient (where aiokafka keeps the connection settings)."""
    settings = load(monkeypatch, files, SASL_SSL_FULL)
    kafka = KafkaConnection.from_settings(settings)
    producer = make_producer(kafka, "test-producer")
    consumer = make_consumer(kafka, "test-consumer")
    admin = KafkaAdmin.for_settings(settings, kafka, "test-admin")
    follower = TokenFollower(settings, kafka, "test-tokens", credentials.token_table())
    try:
        yield (
            kafka,
            {
                "producer": producer.client,
                "consumer": consumer._client,
                "admin": admin._admin._client,
                "token follower": follower._consumer._client,
            },
        )
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()
        await follower.stop()


async def test_every_client_built_from_sasl_ssl_settings_carries_them(
    sasl_ssl_clients: tuple[KafkaConnection, dict[str, Any]], files: Files
) -> None:
    kafka, clients = sasl_ssl_clients
    for name, client in clients.items():
        got = (
            client._bootstrap_servers,
            client._security_protocol,
            client._sasl_mechanism,
            client._sasl_plain_username,
            client._sasl_plain_password,
            client._ssl_context,
        )
        expected = (
            BOOTSTRAP,
            "SASL_SSL",
            "SCRAM-SHA-512",
            "flakehouse",
            PASSWORD,
            kafka.ssl_context,
        )
        assert got == expected, name
    context = kafka.ssl_context
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The CA of the settings, and only it: the system's roots are not trusted besides.
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    trusted = [int(str(cert["serialNumber"]), 16) for cert in context.get_ca_certs()]
    assert trusted == [ca.serial_number]


async def test_plaintext_settings_give_plaintext_clients() -> None:
    kafka = KafkaConnection.from_settings(KafkaSettings(kafka_bootstrap="127.0.0.1:9092"))
    assert kafka.client_kwargs() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }
    producer = make_producer(kafka, "test")
    try:
        assert producer.client._security_protocol == "PLAINTEXT"
        assert producer.client._sasl_plain_password is None
    finally:
        await producer.stop()


class TlsServer:
    """A TLS listener on loopback, as a broker for `localhost`, that requires a client
    certificate signed by the files' CA and reports the one each connection presented."""

    def __init__(self, files: Files) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca)
        self.context.load_cert_chain(files.broker_cert, files.broker_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.peers: asyncio.Queue[Any] = asyncio.Queue()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.peers.put(writer.get_extra_info("peercert"))
        writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_the_tls_context_verifies_the_broker_and_presents_the_client_certificate(
    monkeypatch: pytest.MonkeyPatch, files: Files
) -> None:
    server = TlsServer(files)
    async with server as port:
        env = {**SASL_SSL_FULL, "KAFKA_BOOTSTRAP": f"localhost:{port}"}
        kafka = KafkaConnection.from_settings(load(monkeypatch, files, env))
        # As aiokafka opens its connections: the broker's host name checked against its
        # certificate.
        _, writer = await asyncio.open_connection("localhost", port, ssl=kafka.ssl_context)
        peer = await asyncio.wait_for(server.peers.get(), 10)
        writer.close()
    assert dict(item[0] for item in peer["subject"])["commonName"] == "flakehouse-client"


async def test_a_broker_the_ca_file_did_not_sign_is_refused(
    monkeypatch: pytest.MonkeyPatch, files: Files
) -> None:
    async with TlsServer(files) as port:
        env = {**SASL_SSL_FULL, "KAFKA_CA_FILE": str(files.other_ca)}
        kafka = KafkaConnection.from_settings(load(monkeypatch, files, env))
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncio.open_connection("localhost", port, ssl=kafka.ssl_context)


# --- the password stays out of sight --------------------------------------------------------


async def test_the_password_is_in_no_repr_str_or_log(
    monkeypatch: pytest.MonkeyPatch, files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load(monkeypatch, files, SASL_SSL_FULL)
    kafka = KafkaConnection.from_settings(settings)
    producer = make_producer(kafka, "test")
    await producer.stop()
    assert kafka.sasl_plain_password == PASSWORD  # read, the line ending dropped
    shown = [repr(settings), str(settings), str(settings.model_dump()), repr(kafka), str(kafka)]
    shown += [repr(producer.client), caplog.text]
    for text in shown:
        assert PASSWORD not in text


@pytest.mark.parametrize(
    ("content", "password"),
    [("pw with spaces \n", "pw with spaces "), ("crlf\r\n", "crlf"), ("no-newline", "no-newline")],
)
def test_the_password_is_the_files_one_line(
    monkeypatch: pytest.MonkeyPatch, files: Files, tmp_path: Path, content: str, password: str
) -> None:
    path = tmp_path / "password"
    path.write_text(content, newline="")
    settings = load(monkeypatch, files, {**SASL_SSL, "KAFKA_SASL_PASSWORD_FILE": str(path)})
    assert KafkaConnection.from_settings(settings).sasl_plain_password == password


@pytest.mark.parametrize("content", ["", "\n", "first line\nsecond line\n"])
def test_an_unusable_password_file_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, files: Files, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "password"
    path.write_text(content)
    settings = load(monkeypatch, files, {**SASL_SSL, "KAFKA_SASL_PASSWORD_FILE": str(path)})
    with pytest.raises(ValueError, match=f"{PREFIX}KAFKA_SASL_PASSWORD_FILE") as refused:
        KafkaConnection.from_settings(settings)
    for line in content.splitlines():
        assert not line or line not in str(refused.value)


# --- no client outside the builders ----------------------------------------------------------


def source_lines() -> Iterator[tuple[str, int, str]]:
    root = Path(__file__).resolve().parents[3]
    for path in sorted([*root.glob("libs/*/src/**/*.py"), *root.glob("services/*/src/**/*.py")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            yield str(path.relative_to(root)), number, line


def test_the_services_build_kafka_clients_only_from_their_settings() -> None:
    """aiokafka clients are made only by make_producer, make_consumer and KafkaAdmin (in
    core/kafka.py), from a KafkaConnection, which the services get only from their settings:
    so no client of theirs misses the security settings."""
    direct = re.compile(
        r"\b(AIOKafkaProducer|AIOKafkaConsumer|AIOKafkaAdminClient|AIOKafkaClient)\("
    )
    by_hand = re.compile(r"\bKafkaConnection\(")  # instead of KafkaConnection.from_settings
    builders = "libs/core/src/flakehouse/core/kafka.py"
    lines = list(source_lines())
    assert any(path == builders for path, _, _ in lines)
    offences = [
        f"{path}:{number}: {line.strip()}"
        for path, number, line in lines
        if by_hand.search(line) or (direct.search(line) and path != builders)
    ]
    assert offences == []
