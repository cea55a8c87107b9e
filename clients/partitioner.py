"""Choosing a partition for a message: at random, or by a stable hash of its key.

The paper's producer picks a random partition, or one from a key so that all of one user's
events stay in order on one partition. The hash is CRC32 (unsigned, the same in every process
and every run), not Python's salted ``hash()`` and never negative, unlike 0.7's ``hashCode % n``.
Random is "sticky" per batch, as later Kafka's default: the producer keeps one random partition
until that partition's batch is sent, so batches fill instead of scattering. It picks among the
partitions whose broker is registered right now, so unkeyed traffic flows around a broker that
is down (a keyed message keeps its partition: its order matters more than its timing).
"""
from __future__ import annotations

import random
import zlib

from coordinator.errors import InvalidArgument


def hash_partition(key: bytes, partitions: int) -> int:
    """The partition for a key: the same key always lands on the same partition."""
    return zlib.crc32(key) % partitions


class RandomPartitioner:
    """Random partition per batch (sticky); a keyed message goes by its key's hash.

    The sticky choice is kept with the ``available`` tuple it was checked against, and checked
    again only when another tuple comes (the producer keeps one per topic until the cluster
    view changes): a membership test per message costs as much as the partition count."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._uniform = self._rng.random      # C: choice() and randrange() are two Python calls
        self._sticky: dict[str, tuple[int, tuple[int, ...] | None]] = {}

    def __call__(self, topic: str, key: bytes | None, partitions: int,
                 available: tuple[int, ...] | None = None) -> int:
        """``available``: the partitions with a live broker (None or empty: all of them)."""
        if key is not None:
            return hash_partition(key, partitions)
        sticky = self._sticky.get(topic)
        if sticky is not None and sticky[1] is available and sticky[0] < partitions:
            return sticky[0]
        if sticky is None or sticky[0] >= partitions or (available and sticky[0] not in available):
            # a batch-1 producer picks per message; int(random() * n) is biased by < n / 2**53
            partition = (available[int(self._uniform() * len(available))] if available
                         else int(self._uniform() * partitions))
        else:
            partition = sticky[0]
        self._sticky[topic] = (partition, available)
        return partition

    def batch_sent(self, topic: str, partition: int) -> None:
        sticky = self._sticky.get(topic)
        if sticky is not None and sticky[0] == partition:
            del self._sticky[topic]


def make(partitioner) -> RandomPartitioner:
    """``"random"`` (keyed messages still go by key hash), or any callable
    ``(topic, key, partitions) -> partition``."""
    if partitioner == "random":
        return RandomPartitioner()
    if callable(partitioner):
        return partitioner
    raise InvalidArgument(f"partitioner must be 'random' or a callable, not {partitioner!r}")
