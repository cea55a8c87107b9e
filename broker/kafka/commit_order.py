"""The order in which OffsetCommits of one group and partition are written: the order they came.

A Kafka OffsetCommit's offset is resolved to a message boundary before it is written
(broker/kafka/boundaries.py): at once in this broker's log when it leads the partition, after
one or two round trips when another broker does. So a newer commit can be resolved before an
older one of the same group and partition (the leadership moved to this broker between them,
or the older one's lookup took two trips); written as they resolve, the older offset would
overwrite the newer one and the group's committed offset would go backwards.

So per (group, topic, partition) the commits are queued as they come, and a commit writes its
offset only when it is first in the queue; it leaves when its write ended (stored or failed)
or its resolution failed (nothing to write, nothing to hold up). ZooKeeper then sees the
writes of a partition one after the other, in arrival order: the last to come is the one kept,
as with Kafka's coordinator, which appends commits in arrival order.

    >>> order = CommitOrder()
    >>> key = ("g", "t", 0)
    >>> order.join(key, "older"); order.join(key, "newer")
    >>> order.first(key, "newer")          # resolved first, it still waits
    False
    >>> order.leave(key, "older"); order.first(key, "newer")
    True
    >>> order.leave(key, "newer"); len(order)
    0
"""
from __future__ import annotations

from collections import deque


class CommitOrder:
    """The pending commits of each (group, topic, partition), oldest first."""

    def __init__(self):
        self._queues: dict[tuple[str, str, int], deque] = {}

    def __len__(self) -> int:
        return len(self._queues)

    def join(self, key: tuple[str, str, int], commit) -> None:
        self._queues.setdefault(key, deque()).append(commit)

    def first(self, key: tuple[str, str, int], commit) -> bool:
        """Whether ``commit`` may write ``key`` now: no older commit of it is pending."""
        queue = self._queues.get(key)
        return bool(queue) and queue[0] is commit

    def leave(self, key: tuple[str, str, int], commit) -> None:
        """``commit`` is done with ``key`` (from anywhere in the queue: one whose resolution
        failed leaves before older ones)."""
        queue = self._queues[key]
        queue.remove(commit)
        if not queue:
            del self._queues[key]
