"""Ingest rates over a sliding minute."""

from __future__ import annotations

import pytest

from flakehouse.quota.rates import IngestRates


def test_rates_over_the_last_minute() -> None:
    rates = IngestRates(window_s=60)
    assert rates.rates("ci", now=0) == (0.0, 0.0)
    rates.record("ci", 600, 6000, now=0)
    rates.record("ci", 60, 600, now=30)
    rates.record("other", 1, 1, now=30)
    assert rates.rates("ci", now=30) == pytest.approx((11.0, 110.0))
    assert rates.rates("ci", now=60) == pytest.approx((1.0, 10.0))  # the first left the window
    assert rates.rates("ci", now=90) == (0.0, 0.0)
    assert rates.rates("other", now=89) == pytest.approx((1 / 60, 1 / 60))


def test_a_forgotten_dataset_has_no_rate() -> None:
    rates = IngestRates(window_s=60)
    rates.record("ci", 60, 600, now=0)
    rates.forget("ci")
    assert rates.rates("ci", now=1) == (0.0, 0.0)
