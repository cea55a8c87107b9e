"""The range assignor and rebalance planning, on worked examples."""
import pytest

from coordinator.assignor import assign, range_assign
from coordinator.rebalance import RetryPolicy, Snapshot, changed, target


def test_docstring_example_two_consumers_two_topics():
    assert assign({"t0": [0, 1, 2], "t1": [0, 1]}, {"c1": ["t0", "t1"], "c2": ["t0", "t1"]}) == {
        "c1": [("t0", 0), ("t0", 1), ("t1", 0)], "c2": [("t0", 2), ("t1", 1)]}


def test_remainder_goes_to_the_first_consumers():
    # 10 partitions, 3 consumers: n = 3, extra = 1 -> 4, 3, 3 (the paper's formula would drop one)
    assert range_assign(list(range(10)), ["a", "b", "c"]) == {
        "a": [0, 1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]}


def test_partitions_sort_as_integers_not_text():
    shares = range_assign([10, 2, 1, 11], ["x", "y"])
    assert shares == {"x": [1, 2], "y": [10, 11]}


def test_more_consumers_than_partitions_leaves_some_idle():
    assert range_assign([0, 1], ["a", "b", "c"]) == {"a": [0], "b": [1], "c": []}


def test_every_partition_owned_exactly_once():
    for partitions in range(0, 30):
        for consumers in range(1, 9):
            shares = range_assign(list(range(partitions)), [f"c{i}" for i in range(consumers)])
            owned = sorted(p for share in shares.values() for p in share)
            assert owned == list(range(partitions))
            sizes = [len(s) for s in shares.values()]
            assert max(sizes) - min(sizes) <= 1


def test_only_subscribers_share_a_topic():
    assert assign({"a": [0, 1], "b": [0]}, {"c1": ["a"], "c2": ["a", "b"]}) == {
        "c1": [("a", 0)], "c2": [("a", 1), ("b", 0)]}


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
