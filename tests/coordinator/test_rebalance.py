"""Rebalance planning (coordinator.rebalance), on worked examples."""
import pytest

from coordinator.rebalance import RetryPolicy, Snapshot, changed, target


def test_snapshot_change_detection_ignores_order():
    one = Snapshot.of({"c2": ["t"], "c1": ["t"]}, {"t": [3, 1, 2]})
    two = Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [1, 2, 3]})
    assert not changed(one, two)
    assert changed(None, one)
    assert changed(one, Snapshot.of({"c1": ["t"]}, {"t": [1, 2, 3]}))
    assert changed(one, Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [1, 2]}))


def test_target_is_my_range_share():
    snap = Snapshot.of({"c1": ["t"], "c2": ["t"]}, {"t": [0, 1, 2]})
    assert target(snap, "c1") == [("t", 0), ("t", 1)]
    assert target(snap, "c2") == [("t", 2)]
    assert target(snap, "stranger") == []


def test_retry_policy_validates():
    with pytest.raises(ValueError):
        RetryPolicy(0, 1.0)
    assert RetryPolicy().max_tries == 4 and RetryPolicy().backoff_s == 2.0
