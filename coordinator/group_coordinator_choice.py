"""Which broker coordinates a Kafka client's consumer group: one answer every broker agrees on.

Kafka maps a group to a partition of its ``__consumer_offsets`` topic and lets that partition's
leader coordinate it. sluice keeps offsets in ZooKeeper and has no such topic, so it maps the
group straight to a live broker (``/brokers/ids``) by rendezvous hashing: every live broker
gets a score from a hash of (group, broker id) and the highest score coordinates. Any broker
computes the same answer from the same live set (FindCoordinator answers it; the others answer
NOT_COORDINATOR), and when a broker comes or goes only the groups it coordinates (or comes to
coordinate) move; every other group keeps its coordinator and its members are not disturbed.
While the brokers' views of the live set differ (a watch not yet delivered), a client may be
sent back and forth with NOT_COORDINATOR until they agree, which Kafka clients retry.

>>> coordinator_of("clicks", [0, 1, 2])
2
>>> coordinator_of("clicks", [0, 1])     # broker 2 gone: the group moves
0
>>> moved = [g for g in (f"g{i}" for i in range(300))
...          if coordinator_of(g, [0, 1, 2]) != coordinator_of(g, [0, 1, 2, 3])]
>>> all(coordinator_of(g, [0, 1, 2, 3]) == 3 for g in moved)
True
>>> coordinator_of("clicks", []) is None
True
"""
from __future__ import annotations

import hashlib
from typing import Iterable


def score(group: str, broker_id: int) -> int:
    """A stable pseudo-random score of a broker for a group (the same in every process)."""
    digest = hashlib.blake2b(f"{group}\0{int(broker_id)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def coordinator_of(group: str, live_brokers: Iterable[int]) -> int | None:
    """The live broker that coordinates ``group``; None when no broker is live."""
    return max(live_brokers, key=lambda b: (score(group, b), -b), default=None)
