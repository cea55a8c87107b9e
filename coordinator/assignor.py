"""The range assignor: the paper's Algorithm 1, as Kafka 0.7 coded it, as a pure function.

For each topic, sort its partitions (as integers) and the consumers subscribed to it (as
strings); with P partitions, C consumers, n = P div C and extra = P mod C, the consumer at
position i takes n partitions starting at n*i + min(i, extra), plus one more if i < extra.
(The paper's printed formula drops the remainder; 0.7's code and this one do not.)

Worked example: two consumers c1, c2; topic t0 with 3 partitions, t1 with 2::

    t0: n = 1, extra = 1 -> c1 takes 2 starting at 0: [0, 1]; c2 takes 1 starting at 2: [2]
    t1: n = 1, extra = 0 -> c1 takes [0]; c2 takes [1]
    assign({"t0": [0, 1, 2], "t1": [0, 1]}, {"c1": ["t0", "t1"], "c2": ["t0", "t1"]})
      == {"c1": [("t0", 0), ("t0", 1), ("t1", 0)], "c2": [("t0", 2), ("t1", 1)]}

Every consumer computes the same answer from the same registries, so no one hands out work.
"""
from __future__ import annotations


def range_assign(partitions: list[int], consumers: list[str]) -> dict[str, list[int]]:
    """One topic's partitions spread over consumers in contiguous ranges."""
    ordered = sorted(int(p) for p in partitions)
    members = sorted(consumers)
    if not members:
        return {}
    n, extra = divmod(len(ordered), len(members))
    result = {}
    for i, consumer in enumerate(members):
        start = n * i + min(i, extra)
        result[consumer] = ordered[start:start + n + (1 if i < extra else 0)]
    return result


def assign(partitions: dict[str, list[int]],
           subscriptions: dict[str, list[str]]) -> dict[str, list[tuple[str, int]]]:
    """Every consumer's (topic, partition) share, topic by topic, sorted."""
    result: dict[str, list[tuple[str, int]]] = {consumer: [] for consumer in subscriptions}
    for topic in sorted(partitions):
        subscribers = [c for c, topics in subscriptions.items() if topic in topics]
        for consumer, owned in range_assign(partitions[topic], subscribers).items():
            result[consumer].extend((topic, p) for p in owned)
    return result
