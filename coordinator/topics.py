"""Topics: creation places a topic's partitions on live brokers; the placement is persistent.

A topic has P partitions numbered 0..P-1. Creation reads the broker registry and places
partition p on the p-th live broker in round robin, starting at a broker picked from the topic
name so that many small topics do not all start on broker 0. The placement never moves: as in
the paper, a partition whose broker is down is unavailable until that broker returns.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from coordinator import paths
from coordinator.errors import InvalidArgument, SluiceError, UnknownTopicOrPartition


class TopicError(SluiceError):
    """A topic request refused; each subclass is one reason."""


class TopicExists(TopicError):
    """Creation: a topic of that name exists already."""


class NoLiveBrokers(TopicError):
    """Creation: no broker is registered to place the partitions on."""


class BadPartitionCount(TopicError, InvalidArgument):
    """Creation: a topic needs at least one partition."""


class CorruptPlacement(TopicError):
    """A placement node in ZooKeeper that does not describe its topic's partitions."""


class UnknownTopic(TopicError, UnknownTopicOrPartition):
    """No topic of that name in the cluster. Also the wire's UNKNOWN_TOPIC_OR_PARTITION, so
    that one ``except`` serves both, but not retriable: it exists only once someone creates
    it (a broker's answer, by contrast, may be about a partition it has not opened yet)."""

    retriable = False


class UnknownPartition(TopicError, UnknownTopicOrPartition):
    """The topic has no partition of that number (they are 0..P-1); not retriable."""

    retriable = False


def partition_error(topic: str, partitions: int, partition) -> UnknownPartition:
    """The error for ``partition`` outside the topic's 0..partitions-1."""
    return UnknownPartition(f"topic {topic} has partitions 0..{partitions - 1}, not {partition!r}")


@dataclass(frozen=True)
class Placement:
    """Which broker hosts each partition of a topic: ``brokers[p]`` hosts partition p."""

    topic: str
    brokers: tuple[int, ...]

    @property
    def partitions(self) -> int:
        return len(self.brokers)

    def hosted_by(self, broker_id: int) -> list[int]:
        return [p for p, b in enumerate(self.brokers) if b == broker_id]

    def to_json(self) -> bytes:
        return json.dumps({"partitions": self.partitions, "placement": list(self.brokers)}).encode()

    @classmethod
    def from_json(cls, topic: str, data: bytes) -> "Placement":
        value = json.loads(data)
        brokers = tuple(int(b) for b in value["placement"])
        if len(brokers) != int(value["partitions"]):
            raise CorruptPlacement(f"topic {topic}: placement does not cover its partitions")
        return cls(topic, brokers)


def place(topic: str, partitions: int, live_brokers: list[int]) -> Placement:
    """Round-robin placement over the live brokers, sorted as integers (pure)."""
    if partitions < 1:
        raise BadPartitionCount(f"a topic needs at least 1 partition, not {partitions}")
    if not live_brokers:
        raise NoLiveBrokers("no live brokers to place the topic on")
    brokers = sorted(live_brokers)
    first = zlib.crc32(topic.encode()) % len(brokers)
    return Placement(topic, tuple(brokers[(first + p) % len(brokers)] for p in range(partitions)))


def live_brokers(client: KazooClient) -> list[int]:
    try:
        return sorted(int(child) for child in client.get_children(paths.BROKER_IDS))
    except NoNodeError:
        return []


def create(client: KazooClient, topic: str, partitions: int) -> Placement:
    """Create a topic; raises TopicExists, or the reason it cannot be placed."""
    paths.check_name("topic", topic)
    placement = place(topic, partitions, live_brokers(client))
    client.ensure_path(paths.TOPIC_CONFIG)
    try:
        client.create(paths.topic_config(topic), placement.to_json())
    except NodeExistsError:
        raise TopicExists(f"topic {topic} already exists") from None
    return placement


def get(client: KazooClient, topic: str) -> Placement:
    try:
        data, _ = client.get(paths.topic_config(topic))
    except NoNodeError:
        raise UnknownTopic(f"unknown topic {topic}") from None
    return Placement.from_json(topic, data)


def names(client: KazooClient) -> list[str]:
    try:
        return sorted(client.get_children(paths.TOPIC_CONFIG))
    except NoNodeError:
        return []
