"""Topics: creation places each partition's replicas on live brokers; the placement persists.

A topic has P partitions numbered 0..P-1, each with R replicas on R distinct brokers (R = 1 is
the paper's topic: one copy). Creation reads the broker registry and gives partition p the
brokers at positions ``first + p, first + p + 1, ..., first + p + R - 1`` (mod the live
brokers, sorted as integers), ``first`` picked from the topic name so that many small topics
do not all start on broker 0. The first replica of each partition is its preferred leader, so
leaders spread round robin like the paper's single copies did. The placement never moves; who
leads a partition right now is its state (coordinator/partition_state.py).

Worked example, brokers [0, 1, 2], 4 partitions, R = 2, ``first`` = 1::

    partition 0: [1, 2]   1: [2, 0]   2: [0, 1]   3: [1, 2]

A placement written before replication (``{"partitions", "placement"}``) reads as R = 1.

Administration (``sluice topics alter|config|delete``): partitions are only ever added, placed
by the same rule continued (``place_added``), each new partition's state node created in the
transaction that writes the new count; a topic's own settings (coordinator/topic_config.py)
sit in the same node under ``config``; deletion removes the config node first (brokers watch
it and drop their logs), then the state nodes and every group's offsets for the topic.
"""
from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass, field, replace

from kazoo.client import KazooClient
from kazoo.exceptions import (BadVersionError, NodeExistsError, NoNodeError, NotEmptyError,
                               RolledBackError)

from coordinator import paths, topic_config
from coordinator.errors import InvalidArgument, SluiceError, UnknownTopicOrPartition
from coordinator.partition_state import PartitionState

log = logging.getLogger(__name__)


class TopicError(SluiceError):
    """A topic request refused; each subclass is one reason."""


class TopicExists(TopicError):
    """Creation: a topic of that name exists already."""


class NoLiveBrokers(TopicError):
    """Creation: no broker is registered to place the partitions on."""


class BadPartitionCount(TopicError, InvalidArgument):
    """Creation: a topic needs at least one partition."""


class BadReplicationFactor(TopicError, InvalidArgument):
    """Creation: more replicas than live brokers, or a min ISR outside 1..R."""


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
    """Which brokers hold each partition of a topic: ``replicas[p]``, preferred leader first;
    ``min_insync_replicas``: fewer in-sync replicas than this refuse acks=all produce;
    ``config``: the topic's own settings (coordinator/topic_config.py), by Kafka's names."""

    topic: str
    replicas: tuple[tuple[int, ...], ...]
    min_insync_replicas: int = 1
    config: dict = field(default_factory=dict, hash=False)

    @property
    def partitions(self) -> int:
        return len(self.replicas)

    @property
    def replication_factor(self) -> int:
        return len(self.replicas[0]) if self.replicas else 0

    @property
    def brokers(self) -> tuple[int, ...]:
        """Each partition's preferred leader (for R = 1, the one broker holding it)."""
        return tuple(replicas[0] for replicas in self.replicas)

    def hosted_by(self, broker_id: int) -> list[int]:
        """The partitions ``broker_id`` holds a replica of (the logs it opens)."""
        return [p for p, replicas in enumerate(self.replicas) if broker_id in replicas]

    def to_json(self) -> bytes:
        return json.dumps({"partitions": self.partitions,
                           "replicas": [list(r) for r in self.replicas],
                           "min_insync_replicas": self.min_insync_replicas,
                           "placement": list(self.brokers), "config": self.config}).encode()

    @classmethod
    def from_json(cls, topic: str, data: bytes) -> "Placement":
        value = json.loads(data)
        if "replicas" in value:
            replicas = tuple(tuple(int(b) for b in r) for r in value["replicas"])
        else:
            replicas = tuple((int(b),) for b in value["placement"])
        if len(replicas) != int(value["partitions"]) or not all(
                replicas and len(r) == len(replicas[0]) == len(set(r)) for r in replicas):
            raise CorruptPlacement(f"topic {topic}: placement does not cover its partitions "
                                   f"with distinct replicas")
        try:
            config = topic_config.checked(value.get("config") or {})
        except InvalidArgument as exc:
            raise CorruptPlacement(f"topic {topic}: {exc}") from None
        return cls(topic, replicas, int(value.get("min_insync_replicas", 1)), config)


def place(topic: str, partitions: int, live_brokers: list[int], replication_factor: int = 1,
          min_insync_replicas: int = 1) -> Placement:
    """Replicas over the live brokers, sorted as integers (pure; the module's example)."""
    if partitions < 1:
        raise BadPartitionCount(f"a topic needs at least 1 partition, not {partitions}")
    if not live_brokers:
        raise NoLiveBrokers("no live brokers to place the topic on")
    brokers = sorted(live_brokers)
    if not 1 <= replication_factor <= len(brokers):
        raise BadReplicationFactor(f"a replication factor of {replication_factor} needs that "
                                   f"many live brokers; {len(brokers)} are registered")
    if not 1 <= min_insync_replicas <= replication_factor:
        raise BadReplicationFactor(f"min_insync_replicas must be 1..{replication_factor} (the "
                                   f"replication factor), not {min_insync_replicas}")
    first = zlib.crc32(topic.encode()) % len(brokers)
    return Placement(topic, tuple(
        tuple(brokers[(first + p + k) % len(brokers)] for k in range(replication_factor))
        for p in range(partitions)), min_insync_replicas)


def live_brokers(client: KazooClient) -> list[int]:
    try:
        return sorted(int(child) for child in client.get_children(paths.BROKER_IDS))
    except NoNodeError:
        return []


def create(client: KazooClient, topic: str, partitions: int,
           replication_factor: int | None = None, min_insync_replicas: int = 1,
           config: dict | None = None) -> Placement:
    """Create a topic with its partitions' initial states, in one transaction; raises
    TopicExists, or the reason it cannot be placed. ``replication_factor`` None: the cluster's
    default (``/config/cluster``, see ``cluster_defaults``), else 1. ``config``: the topic's own
    settings from the start (coordinator/topic_config.py)."""
    paths.check_name("topic", topic)
    if replication_factor is None:
        replication_factor = cluster_defaults(client).get("default_replication_factor", 1)
    placement = place(topic, partitions, live_brokers(client), replication_factor,
                      min_insync_replicas)
    if config:
        placement = replace(placement, config=topic_config.checked(config))
    for path in (paths.TOPIC_CONFIG, paths.partitions_root(topic)):
        client.ensure_path(path)
    transaction = client.transaction()
    transaction.create(paths.topic_config(topic), placement.to_json())
    for partition, replicas in enumerate(placement.replicas):
        transaction.create(paths.partition_state_parent(topic, partition))
        transaction.create(paths.partition_state(topic, partition),
                           PartitionState.initial(replicas).to_json())
    results = transaction.commit()
    if any(isinstance(r, NodeExistsError) for r in results):
        raise TopicExists(f"topic {topic} already exists")
    failed = next((r for r in results if isinstance(r, Exception)), None)
    if failed is not None:
        raise failed
    return placement


def cluster_defaults(client: KazooClient) -> dict:
    """The cluster's topic defaults (``{"default_replication_factor": R}``; {} when unset)."""
    try:
        data, _ = client.get(paths.CLUSTER_CONFIG)
    except NoNodeError:
        return {}
    return json.loads(data)


def set_cluster_defaults(client: KazooClient, defaults: dict) -> None:
    """Write the cluster's topic defaults (the supervisor: ``cluster up --replication-factor``)."""
    data = json.dumps(defaults).encode()
    try:
        client.set(paths.CLUSTER_CONFIG, data)
    except NoNodeError:
        client.create(paths.CLUSTER_CONFIG, data, makepath=True)


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


class PartitionsOnlyGrow(TopicError, InvalidArgument):
    """Alter: a topic's partition count can only go up (its data is addressed by partition)."""


class ConfigChanged(TopicError):
    """Alter or config: someone else changed the topic's config node meanwhile; not retried
    blindly, because their change might conflict: run the command again."""


def place_added(placement: Placement, partitions: int, live: list[int]) -> Placement:
    """``placement`` grown to ``partitions``: the old partitions keep their replicas, the new
    ones are placed with the topic's R by ``place``'s rule over the brokers live now (pure).

    >>> old = place("t", 2, [0, 1, 2], 2)
    >>> old.replicas, place_added(old, 4, [0, 1, 2]).replicas[2:]
    (((2, 0), (0, 1)), ((1, 2), (2, 0)))
    """
    if partitions <= placement.partitions:
        raise PartitionsOnlyGrow(f"topic {placement.topic} has {placement.partitions} "
                                 f"partition(s); it can only grow, not go to {partitions}")
    grown = place(placement.topic, partitions, live, placement.replication_factor,
                  placement.min_insync_replicas)
    return replace(placement, replicas=placement.replicas + grown.replicas[placement.partitions:])


def _read(client: KazooClient, topic: str) -> tuple[Placement, int]:
    try:
        data, stat = client.get(paths.topic_config(topic))
    except NoNodeError:
        raise UnknownTopic(f"unknown topic {topic}") from None
    return Placement.from_json(topic, data), stat.version


def _commit(transaction, topic: str) -> None:
    results = transaction.commit()
    if any(isinstance(r, (BadVersionError, NoNodeError)) for r in results):
        raise ConfigChanged(f"topic {topic} changed (or went) while this command ran; "
                            f"look at it again and repeat the command")
    failed = next((r for r in results
                   if isinstance(r, Exception) and not isinstance(r, RolledBackError)), None)
    if failed is not None:
        raise failed


def add_partitions(client: KazooClient, topic: str, partitions: int) -> Placement:
    """Grow ``topic`` to ``partitions``: the new count and the new partitions' state nodes in
    one transaction, conditional on the config node's version."""
    placement, version = _read(client, topic)
    grown = place_added(placement, partitions, live_brokers(client))
    client.ensure_path(paths.partitions_root(topic))
    transaction = client.transaction()
    transaction.set_data(paths.topic_config(topic), grown.to_json(), version=version)
    for partition in range(placement.partitions, grown.partitions):
        transaction.create(paths.partition_state_parent(topic, partition))
        transaction.create(paths.partition_state(topic, partition),
                           PartitionState.initial(grown.replicas[partition]).to_json())
    _commit(transaction, topic)
    return grown


def configure(client: KazooClient, topic: str, settings: dict,
              removed: tuple[str, ...] = ()) -> Placement:
    """Set (``settings``, checked values by name) and remove (``removed``, back to the
    brokers' defaults) the topic's own settings; ``min.insync.replicas`` is the placement's
    field, 1..R (its removal sets it back to 1)."""
    placement, version = _read(client, topic)
    config = dict(placement.config)
    min_insync = placement.min_insync_replicas
    for name in removed:
        topic_config.check(name, 1 if name != topic_config.CLEANUP_POLICY else "delete")
        if name == topic_config.MIN_INSYNC:
            min_insync = 1
        config.pop(name, None)
    for name, value in settings.items():
        value = topic_config.check(name, value)
        if name == topic_config.MIN_INSYNC:
            min_insync = value
        else:
            config[name] = value
    if not 1 <= min_insync <= placement.replication_factor:
        raise BadReplicationFactor(f"min.insync.replicas must be 1..{placement.replication_factor} "
                                   f"(topic {topic}'s replication factor), not {min_insync}")
    changed = replace(placement, config=config, min_insync_replicas=min_insync)
    transaction = client.transaction()
    transaction.set_data(paths.topic_config(topic), changed.to_json(), version=version)
    _commit(transaction, topic)
    return changed


def delete(client: KazooClient, topic: str) -> list[str]:
    """Delete ``topic`` from ZooKeeper: its config node first (the brokers, watching it, close
    and remove the topic's logs and their announcements), then its partitions' state nodes,
    then every group's offsets and data-loss notes for it (owners are live members'
    ephemeral nodes: theirs to drop when their rebalance no longer finds the topic). Returns the groups
    whose offsets for the topic were deleted. Raises UnknownTopic."""
    paths.check_name("topic", topic)
    try:
        client.delete(paths.topic_config(topic))
    except NoNodeError:
        raise UnknownTopic(f"unknown topic {topic}") from None
    client.delete(paths.partitions_root(topic), recursive=True)
    try:
        announced = [c for c in client.get_children(paths.broker_topic(topic))
                     if c != paths.PARTITIONS]
    except NoNodeError:
        announced = []
    if not announced:
        _delete_if_empty(client, paths.broker_topic(topic))
    cleared = []
    try:
        groups = client.get_children(paths.CONSUMERS)
    except NoNodeError:
        groups = []
    for group in sorted(groups):
        if client.exists(paths.offsets(group, topic)):
            cleared.append(group)
        for path in (paths.offsets(group, topic), paths.data_losses(group, topic)):
            client.delete(path, recursive=True)
    client.delete(paths.backlog_protection(topic), recursive=True)
    log.info("deleted topic %s (offsets of %d group(s))", topic, len(cleared))
    return cleared


def _delete_if_empty(client: KazooClient, path: str) -> None:
    """Delete ``path`` unless a child appeared (a broker's announcement; it removes its own)."""
    try:
        client.delete(path)
    except (NoNodeError, NotEmptyError):
        pass
