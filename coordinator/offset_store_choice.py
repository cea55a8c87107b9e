"""Where a consumer group's committed offsets live: the paper's ZooKeeper nodes, or the log.

Two stores, one shape (commit, fetch, committed; coordinator/offsets.py and
clients/log_offsets.py):

- ``zookeeper``: a persistent node per (group, topic, partition), as the paper keeps them. Every
  commit is a ZooKeeper write, and ZooKeeper is built for rare writes.
- ``log``: keyed messages in the internal topic ``__consumer_offsets`` (Kafka 0.9's design),
  one partition per group (``offsets_partition``); the leader of that partition serves the
  group's committed offsets from memory, rebuilt by replaying the partition
  (broker/committed_offsets.py).

A group's store is recorded once, when the group is created, in its node
``/consumers/<group>/offset_store`` ("zookeeper" or "log"); ``sluice groups migrate-offsets``
is the only writer that changes it. A group with no record that already has offset nodes in
ZooKeeper is a group from before the choice existed (or one only Kafka clients used) and keeps
ZooKeeper; any other new group gets the default, the log (``choose``, pure).

The topic is created on first use with ``OFFSETS_PARTITIONS`` partitions, the cluster's default
replication factor, ``cleanup.policy=compact`` (the cleaner keeps the last commit of each key)
and retention time and size set past any horizon (``OFFSETS_TOPIC_CONFIG``), so that until the
cleaner exists, retention never deletes a commit.
"""
from __future__ import annotations

import zlib

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError

from coordinator import paths, topics
from coordinator.errors import InvalidArgument

ZOOKEEPER, LOG = "zookeeper", "log"
STORES = (ZOOKEEPER, LOG)
DEFAULT_STORE = LOG
OFFSETS_TOPIC = "__consumer_offsets"
OFFSETS_PARTITIONS = 8
FOREVER = (1 << 63) - 1      # Kafka's Long.MAX_VALUE: retention that never comes
OFFSETS_TOPIC_CONFIG = {"cleanup.policy": "compact", "retention.ms": FOREVER,
                        "retention.bytes": FOREVER}


def check_store(store: str) -> str:
    if store not in STORES:
        raise InvalidArgument(f"offset_store must be one of {', '.join(STORES)}, not {store!r}")
    return store


def choose(recorded: str | None, has_zookeeper_offsets: bool,
           default: str = DEFAULT_STORE) -> str:
    """The store a group uses (pure).

    >>> choose("log", True), choose("zookeeper", False)      # a record wins
    ('log', 'zookeeper')
    >>> choose(None, True)            # offset nodes from before the choice: keep ZooKeeper
    'zookeeper'
    >>> choose(None, False), choose(None, False, default="zookeeper")     # a new group
    ('log', 'zookeeper')
    """
    if recorded is not None:
        return check_store(recorded)
    if has_zookeeper_offsets:
        return ZOOKEEPER
    return check_store(default)


def offsets_partition(group: str, partitions: int) -> int:
    """The partition of ``__consumer_offsets`` that holds ``group``'s commits: a stable hash
    (CRC-32 of the name, as the partitioner's, never Python's salted ``hash()``) mod the count.

    >>> offsets_partition("loaders", 8), offsets_partition("loaders", 8) == offsets_partition(
    ...     "loaders", 8)
    (0, True)
    """
    return zlib.crc32(group.encode()) % partitions


def recorded(client: KazooClient, group: str) -> str | None:
    try:
        data, _ = client.get(paths.offset_store(group))
    except NoNodeError:
        return None
    return check_store(data.decode())


def has_zookeeper_offsets(client: KazooClient, group: str) -> bool:
    try:
        return any(client.get_children(paths.offsets(group, topic))
                   for topic in client.get_children(paths.group_offsets(group)))
    except NoNodeError:
        return False


def store_of(client: KazooClient, group: str, default: str = DEFAULT_STORE) -> str:
    """The group's store as ``choose`` reads it now, recording nothing (readers: describe,
    the dashboards)."""
    return choose(recorded(client, group), has_zookeeper_offsets(client, group), default)


def settle(client: KazooClient, group: str, default: str = DEFAULT_STORE) -> str:
    """The group's store, recorded if it was not yet (a group's creation: the first member,
    the first commit); two creators racing agree on the first record written."""
    paths.check_name("group", group)
    found = recorded(client, group)
    if found is not None:
        return found
    store = choose(None, has_zookeeper_offsets(client, group), default)
    try:
        client.create(paths.offset_store(group), store.encode(), makepath=True)
    except NodeExistsError:
        return recorded(client, group) or store
    return store


def flip(client: KazooClient, group: str, store: str) -> None:
    """Record ``store`` as the group's (``groups migrate-offsets``, after the copy)."""
    data = check_store(store).encode()
    try:
        client.set(paths.offset_store(group), data)
    except NoNodeError:
        client.create(paths.offset_store(group), data, makepath=True)


def ensure_offsets_topic(client: KazooClient,
                         partitions: int = OFFSETS_PARTITIONS) -> topics.Placement:
    """``__consumer_offsets``' placement, the topic created first if it does not exist."""
    try:
        return topics.get(client, OFFSETS_TOPIC)
    except topics.UnknownTopic:
        pass
    try:
        return topics.create(client, OFFSETS_TOPIC, partitions, config=OFFSETS_TOPIC_CONFIG)
    except topics.TopicExists:
        return topics.get(client, OFFSETS_TOPIC)
