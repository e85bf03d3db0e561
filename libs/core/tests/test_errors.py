"""Errors name their gRPC status without importing grpc: every name must be a real status code,
or the interceptor would fail on the error instead of answering it."""

from __future__ import annotations

import grpc

from flakehouse.core.errors import ERRORS_BY_STATUS, FlakehouseError
from flakehouse.core.interceptor import status_of


def test_every_error_names_a_grpc_status_and_maps_back_to_itself() -> None:
    assert len(ERRORS_BY_STATUS) == len(FlakehouseError.__subclasses__())
    for name, error in ERRORS_BY_STATUS.items():
        code = status_of(error("message"))
        assert code.name == name == error.status
        assert code is not grpc.StatusCode.OK
    assert status_of(ValueError("not ours")) is grpc.StatusCode.INTERNAL
