"""The at-risk countdown and retention's holds: pure, the modules' worked examples and edges."""
from __future__ import annotations

import doctest

import pytest

from broker import backlog, retention
from broker.retention import Decision, decide
from coordinator import backlog_protection
from coordinator.backlog_protection import Protection
from coordinator.errors import InvalidArgument

LOG = [(0, 100, 5_000.0), (100, 100, 7_000.0), (200, 100, 9_000.0), (300, 50, 9_500.0)]
HOUR_MS = 3_600_000


@pytest.mark.parametrize("module", [backlog, retention, backlog_protection])
def test_the_worked_examples(module):
    assert doctest.testmod(module).failed == 0


def test_time_countdown_takes_the_newest_segment_up_to_the_offset():
    # segment 0 younger than segment 1: segment 1 goes only once segment 0 is old too
    segments = [(0, 100, 8_000.0), (100, 100, 7_000.0), (200, 100, 9_000.0)]
    assert backlog.seconds_left(segments, 150, 10_000.0, HOUR_MS) == 1_600.0


def test_below_the_log_start_is_lost_already_and_the_active_segment_is_safe():
    assert backlog.seconds_left(LOG, -1, 10_000.0, HOUR_MS) == 0.0
    assert backlog.seconds_left(LOG, 10_000, 10_000.0, HOUR_MS) is None
    assert backlog.seconds_left([], 0, 10_000.0, HOUR_MS) is None


def test_size_countdown():
    day = 24 * HOUR_MS
    assert backlog.seconds_left(LOG, 150, 10_000.0, day, retention_bytes=200) == 0.0  # past it
    # nothing written since the segment was sealed: no growth, no estimate by size
    still = [(0, 100, 5_000.0), (100, 0, 10_000.0)]
    assert backlog.seconds_left(still, 50, 10_000.0, day, retention_bytes=1000) == 81_400.0


def test_at_risk_is_within_min_seconds():
    assert backlog.at_risk(60.0, 60) and not backlog.at_risk(60.1, 60)


OLD = [(0, 100, 1.0), (100, 100, 1.0), (200, 100, 1.0), (300, 100, 1.0)]   # all expired


def test_holds_keep_from_the_committed_segment_and_the_lowest_hold_wins():
    assert decide(OLD, 100.0, 1000) == Decision(3, 3, ())
    assert decide(OLD, 100.0, 1000, holds=[(250, 10**9)]) == Decision(2, 3, (2,))
    assert decide(OLD, 100.0, 1000, holds=[(250, 10**9), (120, 10**9)]).delete == 1
    assert decide(OLD, 100.0, 1000, holds=[(350, 10**9)]) == Decision(3, 3, (None,))  # active
    assert decide(OLD, 100.0, 1000, holds=[(0, 10**9)]).held == 3


def test_a_cap_lets_the_oldest_held_segments_go():
    d = decide(OLD, 100.0, 1000, holds=[(0, 150)])
    assert (d.delete, d.forced(0), d.held) == (2, 2, 1)
    d = decide(OLD, 100.0, 1000, holds=[(0, 0)])
    assert (d.delete, d.forced(0)) == (3, 3)
    # a capped hold and an uncapped one: the uncapped keeps everything, nothing is forced
    d = decide(OLD, 100.0, 1000, holds=[(0, 0), (0, 10**9)])
    assert (d.delete, d.forced(0), d.forced(1)) == (0, 0, 0)


def test_segments_to_delete_is_decide_without_holds():
    assert retention.segments_to_delete(OLD, 100.0, 1000) == 3


def test_protection_is_checked():
    assert Protection("hold").max_hold_bytes == backlog_protection.DEFAULT_MAX_HOLD_BYTES
    for bad in ({"policy": "hold", "min_seconds": -1}, {"policy": "hold", "max_hold_bytes": True},
                {"policy": "hold", "extra": 1}, "hold"):
        with pytest.raises(InvalidArgument):
            Protection.checked(bad)
    assert backlog_protection.parse(b'{"a": {"policy": "warn"}, "b": {"policy": "x"}}') == {
        "a": Protection("warn")}
    assert backlog_protection.parse(b"not json") == {}
