"""A partition's state: who leads it, in which leader epoch, and which replicas are in sync.

One persistent node per partition, ``/brokers/topics/<topic>/partitions/<p>/state``, as Kafka
0.8 keeps it::

    {"leader": 2, "leader_epoch": 7, "isr": [2, 0], "controller_epoch": 3}

``leader`` is -1 while no replica may lead (every in-sync replica is down and unclean election
is off). Only two kinds of writer change it, and only by a conditional write on the version they
read (ZooKeeper's ``set(path, data, version)``): the controller, when it elects a leader (the
epoch goes up by one), and the partition's leader, when it shrinks or expands the ISR (the
epoch stays). A stale writer, a leader that was replaced while it was paused, say, fails with
``StaleState``: that failure is the fence, and the writer must read the state again and obey it.

Topics are created with their state nodes (coordinator/topics.py, one transaction). A topic
created before replication has none: ``read`` then answers None, and a reader takes
``PartitionState.initial(placement.replicas[p])`` (its one broker leading, epoch 0), with
version NOT_WRITTEN, so that a conditional write creates the node.

    state, version = read(client, "clicks", 3)
    write(client, "clicks", 3, state.with_isr((2,)), version)     # raises StaleState if moved
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from kazoo.client import KazooClient, TransactionRequest
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, RolledBackError

from coordinator import paths
from coordinator.errors import SluiceError

NO_LEADER = -1
NOT_WRITTEN = -1     # the version of a state that has no node yet


class StaleState(SluiceError):
    """A conditional write found the state changed since it was read: read it again."""

    retriable = True


class FencedWriter(StaleState):
    """The writer's own claim (a controller's ``/controller_epoch`` version) moved on: another
    controller was elected since, and this one must stop writing, not read and retry."""

    retriable = False


@dataclass(frozen=True)
class PartitionState:
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int = 0

    @property
    def has_leader(self) -> bool:
        return self.leader != NO_LEADER

    def with_isr(self, isr) -> "PartitionState":
        """The same leadership with another ISR (the leader's shrink or expand)."""
        return replace(self, isr=tuple(sorted(set(isr), key=list(isr).index)))

    def elected(self, leader: int, isr, controller_epoch: int) -> "PartitionState":
        """A new leadership, one epoch on (the controller's election)."""
        return PartitionState(leader, self.leader_epoch + 1, tuple(isr), controller_epoch)

    def to_json(self) -> bytes:
        return json.dumps({"leader": self.leader, "leader_epoch": self.leader_epoch,
                           "isr": list(self.isr), "controller_epoch": self.controller_epoch}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "PartitionState":
        value = json.loads(data)
        return cls(int(value["leader"]), int(value["leader_epoch"]),
                   tuple(int(b) for b in value["isr"]), int(value.get("controller_epoch", 0)))

    @classmethod
    def initial(cls, replicas) -> "PartitionState":
        """A new partition: its preferred replica leads, every replica is in sync (all empty)."""
        return cls(replicas[0], 0, tuple(replicas), 0)


def read(client: KazooClient, topic: str, partition: int) -> tuple[PartitionState, int] | None:
    """The state and its node's version; None when the partition has no state node."""
    try:
        data, stat = client.get(paths.partition_state(topic, partition))
    except NoNodeError:
        return None
    return PartitionState.from_json(data), stat.version


def read_with_zxid(client: KazooClient, topic: str,
                   partition: int) -> tuple[PartitionState, int, int] | None:
    """``read``, with the zxid of the node's last write (its ``mzxid``): a broker registration
    created later (a greater ``czxid``) was not there when this state was decided."""
    try:
        data, stat = client.get(paths.partition_state(topic, partition))
    except NoNodeError:
        return None
    return PartitionState.from_json(data), stat.version, stat.mzxid


class RegistrationsChanged(StaleState):
    """A ``checks`` node moved since the writer read it (a broker registered since the
    controller looked at the registry): look again, then decide."""


def write(client: KazooClient, topic: str, partition: int, state: PartitionState,
          version: int, fence: tuple[str, int] | None = None,
          checks: Sequence[tuple[str, int]] = (),
          also: Callable[[TransactionRequest], None] | None = None) -> int:
    """Write ``state`` if the node is still at ``version`` (NOT_WRITTEN: if there is none);
    return the new version. Raises StaleState when someone wrote in between.

    ``fence`` = (path, version): write only while that node is at that version too, in one
    transaction (the controller passes ``/controller_epoch`` and the version it set), else
    raise FencedWriter: a controller replaced while it was paused cannot write what it
    decided before. ``checks``: more (path, version) pairs the decision was made on (the
    controller passes ``/brokers/ids``, whose version every registration moves), else
    RegistrationsChanged. ``also(transaction)`` adds operations that must commit with the
    state or not at all (the controller's unclean count); one of them failing raises
    StaleState (read again: someone wrote meanwhile)."""
    path = paths.partition_state(topic, partition)
    stale = StaleState(f"the state of {topic}/{partition} changed since version {version} "
                       "was read")
    if fence is None and not checks and also is None:
        try:
            if version == NOT_WRITTEN:
                client.create(path, state.to_json(), makepath=True)
                return 0
            return client.set(path, state.to_json(), version=version).version
        except (BadVersionError, NodeExistsError):
            raise stale from None
    if version == NOT_WRITTEN:
        client.ensure_path(paths.partition_state_parent(topic, partition))
    transaction = client.transaction()
    guards = ([fence] if fence is not None else []) + list(checks)
    for guard_path, guard_version in guards:
        transaction.check(guard_path, guard_version)
    if version == NOT_WRITTEN:
        transaction.create(path, state.to_json())
    else:
        transaction.set_data(path, state.to_json(), version=version)
    if also is not None:
        also(transaction)
    results = transaction.commit()
    failed = [(n, r) for n, r in enumerate(results)
              if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
    if not failed:
        written = results[len(guards)]
        return 0 if version == NOT_WRITTEN else written.version
    index, error = failed[0]
    if fence is not None and index == 0:
        raise FencedWriter(f"{fence[0]} is no longer at version {fence[1]}: another controller "
                           f"was elected; not writing {topic}/{partition}")
    if index < len(guards):
        raise RegistrationsChanged(f"{guards[index][0]} moved on from version "
                                   f"{guards[index][1]}; not writing {topic}/{partition}")
    if isinstance(error, (BadVersionError, NodeExistsError, NoNodeError)):
        raise stale
    raise error
