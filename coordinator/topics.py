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
from coordinator.errors import SluiceError


class TopicError(SluiceError):
    """A topic request a person got wrong (exists already, unknown, no brokers, bad count)."""


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
            raise TopicError(f"topic {topic}: placement does not cover its partitions")
        return cls(topic, brokers)


def place(topic: str, partitions: int, live_brokers: list[int]) -> Placement:
    """Round-robin placement over the live brokers, sorted as integers (pure)."""
    if partitions < 1:
        raise TopicError(f"a topic needs at least 1 partition, not {partitions}")
    if not live_brokers:
        raise TopicError("no live brokers to place the topic on")
    brokers = sorted(live_brokers)
    first = zlib.crc32(topic.encode()) % len(brokers)
    return Placement(topic, tuple(brokers[(first + p) % len(brokers)] for p in range(partitions)))


def live_brokers(client: KazooClient) -> list[int]:
    try:
        return sorted(int(child) for child in client.get_children(paths.BROKER_IDS))
    except NoNodeError:
        return []


def create(client: KazooClient, topic: str, partitions: int) -> Placement:
    """Create a topic; raises TopicError if it exists or cannot be placed."""
    paths.check_name("topic", topic)
    placement = place(topic, partitions, live_brokers(client))
    client.ensure_path(paths.TOPIC_CONFIG)
    try:
        client.create(paths.topic_config(topic), placement.to_json())
    except NodeExistsError:
        raise TopicError(f"topic {topic} already exists") from None
    return placement


def get(client: KazooClient, topic: str) -> Placement:
    try:
        data, _ = client.get(paths.topic_config(topic))
    except NoNodeError:
        raise TopicError(f"unknown topic {topic}") from None
    return Placement.from_json(topic, data)


def names(client: KazooClient) -> list[str]:
    try:
        return sorted(client.get_children(paths.TOPIC_CONFIG))
    except NoNodeError:
        return []
