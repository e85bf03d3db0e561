"""The options of every gRPC channel and server, the services' and the client's alike. Plain
values, no grpc import: the CLI imports them before it knows whether it will make a call."""

from __future__ import annotations

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # A peer that restarts is back within seconds: reconnect within a second of it, rather
    # than after gRPC's default backoff (up to 120 s), during which calls fail at once.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Long-lived streams (WatchPlacement, WatchLimits) must notice a peer whose machine died
    # without closing the connection: ping after 10 s without traffic, give up after 5 s more,
    # and reconnect. Pings on an idle stream are allowed on both sides (the server's default
    # would count them as abuse and close the connection).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    # What gRPC core enforces today for an unanswered ping (keepalive_timeout_ms alone is not
    # applied by every version).
    ("grpc.http2.ping_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
]
