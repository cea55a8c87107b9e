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


def sticky_assign(partitions: list[int], members: list[str],
                  owners: dict[int, str]) -> dict[str, list[int]]:
    """One topic's balanced assignment that keeps every partition where it is unless balance
    needs it moved, and then moves the fewest (the cooperative planner, KIP-429's idea).

    Each member's quota is P div M, and the P mod M members that own the most now (ties: by
    member id) get one more, so as many partitions as possible stay put. A member over its
    quota gives up its highest partitions; partitions with no (live) owner go, lowest first,
    to the members under quota, in member order. The same inputs give the same answer on every
    member, and an assignment at its target is a fixed point.

    Worked example: partitions 0..5 owned by a (0, 1, 2) and b (3, 4, 5); c joins::

        quotas 2, 2, 2 -> a gives up 2, b gives up 5; c takes 2 and 5
        sticky_assign([0, 1, 2, 3, 4, 5], ["a", "b", "c"],
                      {0: "a", 1: "a", 2: "a", 3: "b", 4: "b", 5: "b"})
          == {"a": [0, 1], "b": [3, 4], "c": [2, 5]}      # 2 moves; range would move 3
    """
    ordered = sorted(int(p) for p in partitions)
    roster = sorted(members)
    if not roster:
        return {}
    kept: dict[str, list[int]] = {m: [] for m in roster}
    free = []
    for p in ordered:
        owner = owners.get(p)
        if owner in kept:
            kept[owner].append(p)
        else:
            free.append(p)
    n, extra = divmod(len(ordered), len(roster))
    by_holdings = sorted(roster, key=lambda m: (-len(kept[m]), m))
    quota = {m: n + (1 if i < extra else 0) for i, m in enumerate(by_holdings)}
    for m in roster:
        if len(kept[m]) > quota[m]:
            free.extend(kept[m][quota[m]:])
            kept[m] = kept[m][:quota[m]]
    free.sort()
    for m in roster:
        while len(kept[m]) < quota[m] and free:
            kept[m].append(free.pop(0))
        kept[m].sort()
    return kept


def sticky_assign_all(partitions: dict[str, list[int]], subscriptions: dict[str, list[str]],
                      owners: dict[str, dict[int, str]]) -> dict[str, list[tuple[str, int]]]:
    """``sticky_assign`` topic by topic among each topic's subscribers."""
    result: dict[str, list[tuple[str, int]]] = {member: [] for member in subscriptions}
    for topic in sorted(partitions):
        subscribers = [m for m, topics in subscriptions.items() if topic in topics]
        shares = sticky_assign(partitions[topic], subscribers, owners.get(topic, {}))
        for member, owned in shares.items():
            result[member].extend((topic, p) for p in owned)
    return result
