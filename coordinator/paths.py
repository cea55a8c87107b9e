"""Every ZooKeeper path sluice uses, in one place.

| path                                             | kind       | value                                   |
| ------------------------------------------------ | ---------- | --------------------------------------- |
| /brokers/ids/<broker>                            | ephemeral  | {"endpoint", "host", "port", "pid"}     |
| /brokers/topics/<topic>/<broker>                 | ephemeral  | [partitions it holds a replica of]      |
| /brokers/topics/<topic>/partitions/<p>/state     | persistent | {"leader", "leader_epoch", "isr", ...}  |
| /brokers/topics/<topic>/partitions/<p>/unclean   | persistent | {"count", "elected", ...}               |
| /config/topics/<topic>                           | persistent | {"partitions", "replicas": [[b..]..],   |
|                                                  |            |  "min_insync_replicas", "placement",    |
|                                                  |            |  "config": {"retention.ms": ..}}        |
| /config/cluster                                  | persistent | {"default_replication_factor": R}       |
| /config/backlog/<topic>                          | persistent | {group: {"policy", "min_seconds",       |
|                                                  |            |  "max_hold_bytes"}} (backlog_protection)|
| /controller                                      | ephemeral  | {"broker": id, "epoch": n}              |
| /controller_epoch                                | persistent | n, one more at every new controller     |
| /consumers/<group>/ids/<consumer>                | ephemeral  | {"topics": [...], ...}                  |
| /consumers/<group>/owners/<topic>/<partition>    | ephemeral  | the owning consumer's id                |
| /consumers/<group>/offsets/<topic>/<partition>   | persistent | the committed offset (decimal text)     |
| /consumers/<group>/data_loss/<topic>/<partition> | persistent | {"committed", "log_start", ...}         |
| /consumers/<group>/kafka_members/<member>        | ephemeral  | {"client_id", "host", "generation", ...}|
| /consumers/<group>/offset_store                  | persistent | "zookeeper" or "log": where its offsets |
|                                                  |            | live (coordinator/offset_store_choice)  |
| /kafka/producer_id_block                         | persistent | the first Kafka producer id not taken   |
| /security/acls                                   | persistent | a change count (coordinator/acl_store)  |
| /security/acls/<principal>                       | persistent | [{"operation", "pattern", "name"}, ...] |
| /security/server_key                             | persistent | the brokers' CURVE public key (Z85)     |
| /security/allowed/<name>                         | persistent | an allowed client's public key (Z85)    |
| /security/sasl_users                             | persistent | a change count (coordinator/sasl_users) |
| /security/sasl_users/<user>                      | persistent | a SCRAM credential: salt, iterations,   |
|                                                  |            | StoredKey, ServerKey (no password)      |

The first two and the three /consumers paths before data_loss are Kafka 0.7's layout. /config/topics is sluice's: the paper
creates a topic's partitions implicitly on every broker, while sluice numbers a topic's
partitions 0..P-1 across the cluster, so the placement chosen at creation must outlive any one
broker's session; data_loss notes a committed offset that retention overtook, so the loss stays
visible after the consumer moved on; kafka_members lists the members of a Kafka client's group,
written by the group's coordinator broker (broker/kafka/group_apis.py) apart from the native
members' ids, so that native members never count them in their own rebalances. The partition state, /controller and /controller_epoch are
Kafka 0.8's (replication, coordinator/partition_state.py); the unclean node is sluice's: the
controller counts the unclean elections of a partition there, so the loss stays visible
(coordinator/controller.py); ``partitions`` is the one child of
/brokers/topics/<topic> that is not a broker id, and readers of the broker children skip it.
/config/backlog is sluice's: backlog protections (coordinator/backlog_protection.py), one node
per protected topic so that a broker watches one node per topic.
Partitions are always integers in code and decimal names in ZooKeeper.
"""
from __future__ import annotations

from coordinator.errors import InvalidArgument

BROKER_IDS = "/brokers/ids"
BROKER_TOPICS = "/brokers/topics"
TOPIC_CONFIG = "/config/topics"
CLUSTER_CONFIG = "/config/cluster"
BACKLOG_PROTECTION = "/config/backlog"   # backlog protections by topic (backlog_protection.py)
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
CONSUMERS = "/consumers"
KAFKA_PRODUCER_ID_BLOCK = "/kafka/producer_id_block"   # the next free block of Kafka producer ids
ACLS = "/security/acls"     # authorization rules per principal (coordinator/acl_store.py)
SECURITY = "/security"
SERVER_KEY = "/security/server_key"     # the secured cluster's CURVE server public key
ALLOWED = "/security/allowed"           # the allow list: one child per allowed key's name
SASL_USERS = "/security/sasl_users"     # the Kafka listener's SASL users (coordinator/sasl_users.py)
PARTITIONS = "partitions"   # the child of /brokers/topics/<topic> that is not a broker id


def sasl_user(name: str) -> str:
    return f"{SASL_USERS}/{name}"


def allowed(name: str) -> str:
    return f"{ALLOWED}/{name}"


def broker(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def broker_topic(topic: str) -> str:
    return f"{BROKER_TOPICS}/{topic}"


def broker_topic_partitions(topic: str, broker_id: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/{broker_id}"


def topic_config(topic: str) -> str:
    return f"{TOPIC_CONFIG}/{topic}"


def backlog_protection(topic: str) -> str:
    return f"{BACKLOG_PROTECTION}/{topic}"


def partitions_root(topic: str) -> str:
    return f"{BROKER_TOPICS}/{topic}/{PARTITIONS}"


def partition_state_parent(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/{PARTITIONS}/{int(partition)}"


def partition_state(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/{PARTITIONS}/{int(partition)}/state"


def partition_unclean(topic: str, partition: int) -> str:
    return f"{BROKER_TOPICS}/{topic}/{PARTITIONS}/{int(partition)}/unclean"


def group(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}"


def consumer_ids(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/ids"


def consumer(group_id: str, consumer_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/ids/{consumer_id}"


def group_owners(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/owners"


def group_offsets(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/offsets"


def owners(group_id: str, topic: str) -> str:
    return f"{CONSUMERS}/{group_id}/owners/{topic}"


def owner(group_id: str, topic: str, partition: int) -> str:
    return f"{CONSUMERS}/{group_id}/owners/{topic}/{int(partition)}"


def offsets(group_id: str, topic: str) -> str:
    return f"{CONSUMERS}/{group_id}/offsets/{topic}"


def offset(group_id: str, topic: str, partition: int) -> str:
    return f"{CONSUMERS}/{group_id}/offsets/{topic}/{int(partition)}"


def offset_store(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/offset_store"


def kafka_members(group_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/kafka_members"


def kafka_member(group_id: str, member_id: str) -> str:
    return f"{CONSUMERS}/{group_id}/kafka_members/{member_id}"


def data_losses(group_id: str, topic: str) -> str:
    return f"{CONSUMERS}/{group_id}/data_loss/{topic}"


def data_loss(group_id: str, topic: str, partition: int) -> str:
    return f"{CONSUMERS}/{group_id}/data_loss/{topic}/{int(partition)}"


def acl(principal: str) -> str:
    return f"{ACLS}/{principal}"


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_name(kind: str, name: str) -> str:
    """Reject a topic or group name that cannot be one ZooKeeper path component, saying why.

    >>> check_name("topic", "clicks.v2")
    'clicks.v2'
    >>> check_name("topic", "..")
    Traceback (most recent call last):
    ...
    coordinator.errors.InvalidArgument: invalid topic name '..': '.' and '..' name a directory \
and its parent in a ZooKeeper path, so they cannot be a topic name
    >>> check_name("group", "a/b")
    Traceback (most recent call last):
    ...
    coordinator.errors.InvalidArgument: invalid group name 'a/b': '/' is not allowed; use 1-249 \
of the characters a-z A-Z 0-9 . _ -
    """
    if name in (".", ".."):
        raise InvalidArgument(f"invalid {kind} name {name!r}: '.' and '..' name a directory and "
                              f"its parent in a ZooKeeper path, so they cannot be a {kind} name")
    bad = "".join(dict.fromkeys(c for c in name if c not in _NAME_CHARS))
    if not name or len(name) > 249 or bad:
        why = ("it is empty" if not name else f"it has {len(name)} characters" if not bad
               else f"{' '.join(repr(c) for c in bad)} {'is' if len(bad) == 1 else 'are'} "
               f"not allowed")
        raise InvalidArgument(f"invalid {kind} name {name!r}: {why}; use 1-249 of the "
                              "characters a-z A-Z 0-9 . _ -")
    return name
