"""Per-second rates from successive samples of cumulative counters. Pure.

A counter that went down (a restarted broker, a replaced process) gives no rate for that
sample rather than a negative one::

    rate(None, 10, 1.0)   # None: the first sample
    rate(10, 40, 2.0)     # 15.0
    rate(40, 5, 1.0)      # None: the counter was reset
"""
from __future__ import annotations


def rate(previous: float | None, current: float | None, elapsed: float) -> float | None:
    """Per-second change of a counter; None for the first sample or after a reset. Pure."""
    if previous is None or current is None or elapsed <= 0 or current < previous:
        return None
    return (current - previous) / elapsed


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
