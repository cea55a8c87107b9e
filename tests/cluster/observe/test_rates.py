"""Rates of counters between samples (pure)."""
from cluster.observe.rates import rate


def test_rate_skips_first_sample_and_counter_resets():
    assert rate(None, 10, 1.0) is None
    assert rate(10, 40, 2.0) == 15.0
    assert rate(40, 5, 1.0) is None
