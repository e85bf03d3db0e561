"""The free-port check as `flakehouse up` uses it: a port held only by connections in TIME-WAIT
(a server stopped a moment ago) is free to listen on again; a listening port is not."""

from __future__ import annotations

import socket

import pytest

from flakehouse.core.net import port_is_free

HOST = "127.0.0.1"


def test_a_port_in_time_wait_is_free_and_a_listening_one_is_not() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((HOST, 0))
    server.listen()
    port = server.getsockname()[1]
    assert not port_is_free(HOST, port)

    client = socket.create_connection((HOST, port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the port goes to TIME-WAIT
    client.close()
    server.close()

    # A bind without SO_REUSEADDR is refused: the TIME-WAIT connection is there.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain, pytest.raises(OSError):
        plain.bind((HOST, port))
    assert port_is_free(HOST, port)
