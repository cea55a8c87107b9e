"""The sampler's pure parts: a history point of a snapshot, and the assignment it expects a
settled group to show."""
from cluster.observe.sampler import point
from tests.cluster.observe.snapshots import snapshot


def test_history_point_carries_the_plotted_figures():
    p = point(snapshot())
    assert p["msgs_in"] == {"0": 5.0}
    assert p["lag"] == {"loaders clicks/0": 6}
    assert p["cpu"] == {"broker 0": 12.5, "worker 0": None}
    assert p["rss"]["broker 0"] == 50_000_000


def test_a_finished_rebalance_of_either_protocol_is_the_sticky_planners_fixed_point():
    """The sampler's ``expected``: what eager (range) and cooperative (sticky) settle on."""
    from coordinator import assignor
    partitions = {"t0": [0, 1, 2, 3, 4], "t1": [0, 1]}
    subscriptions = {"a": ["t0", "t1"], "b": ["t0", "t1"], "c": ["t0"]}
    ranged = assignor.assign(partitions, subscriptions)
    owners: dict = {}
    for member, tps in ranged.items():
        for topic, partition in tps:
            owners.setdefault(topic, {})[partition] = member
    assert assignor.sticky_assign_all(partitions, subscriptions, owners) == ranged
    # mid-rebalance (c holds nothing yet) is not a fixed point
    owners["t0"] = {0: "a", 1: "a", 2: "a", 3: "b", 4: "b"}
    assert assignor.sticky_assign_all(partitions, subscriptions, owners)["c"]
