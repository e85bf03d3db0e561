"""Shared machinery of every Flakehouse service: settings, logging, errors, the gRPC server
bootstrap, Kafka helpers and the embedded broker."""
