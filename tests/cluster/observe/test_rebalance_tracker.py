"""RebalanceTracker on its docstring's worked example and its edge cases (pure, no cluster)."""
from cluster.observe.rebalance_tracker import RebalanceTracker

P0, P1 = ("t", 0), ("t", 1)


def test_rebalance_tracker_follows_the_docstring_example():
    tracker = RebalanceTracker()
    assert tracker.observe(0, {"a"}, {P0: "a", P1: "a"}, {P0: "a", P1: "a"}) == "settled"
    assert tracker.rebalances == 0
    assert tracker.observe(1, {"a", "b"}, {P0: "a", P1: "a"}, {P0: "a", P1: "b"}) == "rebalancing"
    assert tracker.observe(2, {"a", "b"}, {P0: "a"}, {P0: "a", P1: "b"}) == "rebalancing"
    assert tracker.as_dict(2.5)["rebalancing_for_s"] == 1.5
    assert tracker.observe(3, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds, tracker.seconds_total) == (1, 2.0, 2.0)
    assert tracker.observe(4, {"b"}, {P0: "a", P1: "b"}, {P0: "b", P1: "b"}) == "rebalancing"
    assert tracker.observe(9, {"b"}, {P0: "b", P1: "b"}, {P0: "b", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds, tracker.seconds_total) == (2, 5.0, 7.0)


def test_rebalance_inside_one_interval_counts_with_zero_duration():
    tracker = RebalanceTracker()
    tracker.observe(0, {"a"}, {P0: "a", P1: "a"}, {P0: "a", P1: "a"})
    assert tracker.observe(1, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds) == (1, 0.0)
    assert tracker.observe(2, {"a", "b"}, {P0: "a", P1: "b"}, {P0: "a", P1: "b"}) == "settled"
    assert tracker.rebalances == 1


def test_rebalance_tracker_empty_group_and_first_join():
    tracker = RebalanceTracker()
    assert tracker.observe(0, set(), {}, {}) == "empty"
    assert tracker.observe(1, {"a"}, {}, {P0: "a"}) == "rebalancing"
    assert tracker.observe(2, set(), {}, {}) == "empty"   # the unfinished one is dropped
    assert tracker.rebalances == 0
    assert tracker.observe(3, {"a"}, {}, {P0: "a"}) == "rebalancing"
    assert tracker.observe(5, {"a"}, {P0: "a"}, {P0: "a"}) == "settled"
    assert (tracker.rebalances, tracker.last_seconds) == (1, 2.0)


def test_unknown_state_that_is_not_settled_starts_a_rebalance():
    tracker = RebalanceTracker()
    assert tracker.observe(0, {"a", "b"}, {P0: "a"}, {P0: "a", P1: "b"}) == "rebalancing"
