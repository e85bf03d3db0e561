"""Errors of the cluster as the CLI prints them: one line that says what to do, naming the option
that changes the outcome."""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from flakehouse.client import cli
from flakehouse.client.errortext import one_line
from flakehouse.client.pki import LocalPki
from flakehouse.core.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from flakehouse.query.v1 import query_pb2, query_pb2_grpc
from libs.client.tests.fake_servers import serving


class Slow(query_pb2_grpc.QueryServiceServicer):
    def Query(self, request: Any, context: Any) -> query_pb2.QueryResponse:
        time.sleep(2)
        return query_pb2.QueryResponse()


def test_a_deadline_names_the_option_that_raises_it(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(Slow(), query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        code = cli.main(["query", "--query", address, "--timeout", "0.3", "SELECT 1 FROM ci"])
    assert code == cli.EXIT_FAILED
    assert capsys.readouterr().err == (
        "error: no answer within 0.3 s: allow longer with --timeout SECONDS (e.g. --timeout 120)\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_server_says_where_it_looked_and_how_to_start_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flakehouse.client.client.time.sleep", lambda seconds: None)  # backoff
    port = free_port()
    assert cli.main(["query", "--query", f"127.0.0.1:{port}", "SELECT 1 FROM ci"]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot reach 127.0.0.1:{port} (connection refused): is the cluster up? Start "
        "one with `flakehouse up`, or point --cluster or --query at a running one\n"
    )
    assert cli.main(["usage", "--quota", f"127.0.0.1:{port}"]) == 1
    assert "or point --cluster or --quota at a running one\n" in capsys.readouterr().err


def args(**options: Any) -> argparse.Namespace:
    return argparse.Namespace(**options)


def test_an_unknown_host_is_unreachable_too() -> None:
    message = (
        "errors resolving nosuchhost.invalid:7602: [field:hostname lookup error:address lookup "
        "failed for nosuchhost.invalid:7602: Domain name not found]"
    )
    assert one_line(Unavailable(message), args(cluster="c.json", ingest=None)) == (
        "cannot reach nosuchhost.invalid:7602 (domain name not found): is the cluster up? Start "
        "one with `flakehouse up`, or point --cluster or --ingest at a running one"
    )


def test_refusals_after_the_clients_retries_say_what_to_do() -> None:
    busy = Unavailable("Kafka is unavailable (KafkaTimeoutError)", retry_after_ms=1000)
    assert one_line(busy, args()) == (
        "Kafka is unavailable (KafkaTimeoutError): the cluster cannot answer for now; try again "
        "in a moment (`flakehouse status` shows what is down)"
    )
    rate = ResourceExhausted(
        "dataset 'ci' is over its ingest rate; retry in 200 ms", retry_after_ms=200
    )
    assert one_line(rate, args()) == (
        "dataset 'ci' is over its ingest rate: try again later, or raise the dataset's limit "
        "(`flakehouse quota set`)"
    )


def test_every_error_is_one_line() -> None:
    error = InvalidArgument("unknown field statuz\n  SELECT statuz FROM ci\n         ^")
    assert one_line(error, args()) == "unknown field statuz; SELECT statuz FROM ci; ^"
    # A limit without a retry delay is the server's own advice, untouched.
    limit = ResourceExhausted("the query holds more than 10 groups (max_groups); narrow it")
    assert one_line(limit, args()) == limit.message
    # Without a --timeout to name, a deadline keeps its message.
    assert one_line(DeadlineExceeded("Deadline Exceeded"), args()) == "Deadline Exceeded"


def test_a_certificate_from_another_ca_says_which_ca_to_pass_and_is_not_retried(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    slept: list[float] = []
    monkeypatch.setattr("flakehouse.client.client.time.sleep", slept.append)
    other_ca = LocalPki(tmp_path / "other").ensure_ca()
    with serving(Slow(), query_pb2_grpc.add_QueryServiceServicer_to_server) as address:
        argv = ["query", "--query", address, "--ca", str(other_ca), "SELECT 1 FROM ci"]
        assert cli.main(argv) == cli.EXIT_FAILED
        assert capsys.readouterr().err == (
            f"error: cannot verify {address}: its certificate is not signed by the CA this "
            "command trusts: pass the cluster's CA with --ca FILE or FLAKEHOUSE_CA_FILE (a local "
            "cluster's cluster.json names it as ca_file)\n"
        )
        assert slept == []  # the same call would fail the same way


@pytest.mark.parametrize(
    ("grpc_says", "advice"),
    [
        (
            "ipv4:127.0.0.1:7602: Custom verification check failed with error: UNAUTHENTICATED: "
            "Hostname Verification Check failed.",
            "its certificate does not name the host dialled",
        ),
        (
            "ipv4:127.0.0.1:7602: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
            "error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
            "it does not speak TLS",
        ),
    ],
)
def test_other_tls_failures_say_what_is_wrong(grpc_says: str, advice: str) -> None:
    message = f"failed to connect to all addresses; last error: UNKNOWN: {grpc_says}"
    line = one_line(Unavailable(message), args(query="127.0.0.1:7602"))
    assert line.startswith(f"cannot verify 127.0.0.1:7602: {advice}")
