"""Flakehouse benchmarks: `make bench` (python -m benchmarks)."""
