"""The leader's ISR and high-watermark rules (broker/isr.py), without sockets."""
import doctest

from broker import isr
from broker.isr import Follower, high_watermark, to_expand, to_shrink


def test_the_worked_examples():
    assert doctest.testmod(isr).failed == 0


def test_a_follower_that_keeps_up_with_a_growing_log_stays_caught_up():
    f = Follower(log_end=0, caught_up_at=0.0)
    leader_end = 0
    for step in range(1, 20):
        fetch_at = leader_end          # it fetches where the leader was at its last fetch
        leader_end += 100              # producers keep the log growing meanwhile
        f.fetched(fetch_at, leader_end, now=float(step))
    assert f.caught_up_at == 18.0, "caught up as of its previous fetch, every time"
    assert to_shrink((0, 1), 0, {1: f}, now=19.0, lag_s=5.0) == []


def test_a_follower_stuck_behind_leaves_after_the_lag_time_only():
    f = Follower(log_end=0, caught_up_at=0.0)
    f.fetched(100, 100, now=1.0)
    for step in range(2, 10):
        f.fetched(100, 100 + step * 50, now=float(step))   # it never gets past 100
    assert f.caught_up_at == 1.0, "it last had everything as of its fetch at 1.0"
    assert to_shrink((0, 1), 0, {1: f}, now=11.0, lag_s=10.0) == []
    assert to_shrink((0, 1), 0, {1: f}, now=11.5, lag_s=10.0) == [1]


def test_a_stopped_follower_leaves_and_the_high_watermark_moves_on_without_it():
    fs = {1: Follower(400, caught_up_at=100.0), 2: Follower(120, caught_up_at=80.0)}
    assert high_watermark(400, {b: f.log_end for b, f in fs.items()}, (0, 1, 2), 0) == 120
    gone = to_shrink((0, 1, 2), 0, fs, now=95.0, lag_s=10.0)
    assert gone == [2]
    assert high_watermark(400, {b: f.log_end for b, f in fs.items()}, (0, 1), 0) == 400


def test_a_returning_follower_joins_once_it_reached_the_high_watermark():
    fs = {1: Follower(400, 0.0), 2: Follower(120, 0.0)}
    assert to_expand((0, 1), (0, 1, 2), 0, fs, hw=400) == []
    fs[2].fetched(400, 420, now=1.0)
    assert to_expand((0, 1), (0, 1, 2), 0, fs, hw=400) == [2]
    assert to_expand((0, 1), (0, 1, 2), 0, {1: fs[1]}, hw=400) == [], "never fetched: unknown"


def test_a_follower_fetching_below_the_end_it_had_reached_lost_data_and_leaves_at_once():
    f = Follower(log_end=0, caught_up_at=0.0)
    assert f.fetched(400, 400, now=1.0) is False
    assert f.fetched(0, 400, now=1.5) is True, "its disk was lost: it asks from the start"
    assert f.log_end == 0
    assert to_shrink((0, 1), 0, {1: f}, now=1.5, lag_s=10.0) == [1], "not after the lag time"
    f.fetched(400, 400, now=2.0)
    assert to_shrink((0, 1), 0, {1: f}, now=2.0, lag_s=10.0) == [], "caught up again"
