"""Who leads a partition, and waiting for that to change: what the replication drills aim at.

A partition's leader, epoch and ISR are its state node's (coordinator/partition_state.py); the
node's mtime is when the last writer (the controller electing, or the leader changing the ISR)
wrote it, on ZooKeeper's clock, which on one host is this process's ``time.time()``::

    now = leadership(client, "drill", 3)            # Leadership(state, version, written_at)
    elected = wait_new_leader(client, "drill", 3, now.state.leader_epoch, timeout=30)
    elected.written_at                                # wall clock of the election's write

A broker's METADATA document (its partitions and counters, e.g. ``truncated_messages``) is
asked straight from its registered endpoint (``broker_document``).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import zmq
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from broker import protocol
from clients.connection import Connection
from cluster.drills.faults import FaultError
from coordinator import paths, topics
from coordinator.partition_state import NO_LEADER, PartitionState

POLL_S = 0.05


@dataclass(frozen=True)
class Leadership:
    partition: int
    state: PartitionState
    version: int
    written_at: float | None     # wall clock of the node's last write; None: no node (R = 1)


def leadership(client: KazooClient, topic: str, partition: int) -> Leadership:
    """The partition's state now (a topic without state nodes: its one broker leads)."""
    try:
        data, stat = client.get(paths.partition_state(topic, partition))
    except NoNodeError:
        replicas = topics.get(client, topic).replicas[partition]
        return Leadership(partition, PartitionState.initial(replicas), -1, None)
    return Leadership(partition, PartitionState.from_json(data), stat.version, stat.mtime / 1000)


def wait_for(client: KazooClient, topic: str, partition: int, predicate, timeout: float,
             what: str) -> Leadership:
    """The first state of the partition that satisfies ``predicate``; FaultError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        now = leadership(client, topic, partition)
        if predicate(now.state):
            return now
        if time.monotonic() >= deadline:
            raise FaultError(f"{topic}/{partition}: {what} not seen within {timeout:g} s "
                             f"(state: leader {now.state.leader}, epoch "
                             f"{now.state.leader_epoch}, isr {list(now.state.isr)})")
        time.sleep(POLL_S)


def wait_new_leader(client: KazooClient, topic: str, partition: int, epoch: int,
                    timeout: float, leader: int | None = None) -> Leadership:
    """Until a leader was elected in an epoch after ``epoch`` (and, given, it is ``leader``)."""
    return wait_for(client, topic, partition,
                    lambda s: s.leader_epoch > epoch and s.leader != NO_LEADER
                    and (leader is None or s.leader == leader), timeout,
                    f"a leader elected after epoch {epoch}"
                    + (f" (broker {leader})" if leader is not None else ""))


def wait_in_isr(client: KazooClient, topic: str, partitions, broker: int,
                timeout: float) -> float:
    """Until ``broker`` is in the ISR of every one of ``partitions``; the monotonic time."""
    deadline = time.monotonic() + timeout
    for partition in sorted(partitions):
        wait_for(client, topic, partition, lambda s: broker in s.isr,
                 max(0.1, deadline - time.monotonic()), f"broker {broker} in the ISR")
    return time.monotonic()


def wait_out_of_isr(client: KazooClient, topic: str, partitions, broker: int,
                    timeout: float) -> float:
    """Until ``broker`` has left the ISR of every one of ``partitions``; the monotonic time."""
    deadline = time.monotonic() + timeout
    for partition in sorted(partitions):
        wait_for(client, topic, partition, lambda s: broker not in s.isr,
                 max(0.1, deadline - time.monotonic()), f"broker {broker} out of the ISR")
    return time.monotonic()


def monotonic_of(wall: float) -> float:
    """A wall-clock time (a znode's mtime) on this process's monotonic clock."""
    return time.monotonic() - (time.time() - wall)


def endpoint(client: KazooClient, broker: int) -> str:
    data, _ = client.get(paths.broker(broker))
    return json.loads(data)["endpoint"]


def broker_document(client: KazooClient, broker: int, context: zmq.Context,
                    timeout_ms: int = 3000) -> dict:
    """The broker's METADATA document (its partitions, errors and counters)."""
    conn = Connection(context, endpoint(client, broker))
    try:
        frames = conn.call(protocol.encode_metadata, timeout_ms=timeout_ms)
        return json.loads(protocol.decode_metadata_response(frames[0].buffer)[1])
    finally:
        conn.socket.close(linger=0)


def unclean_elections(client: KazooClient, topic: str, partition: int) -> dict:
    """The controller's count of the partition's unclean elections ({} when none); FaultError
    when this tree's coordinator has no such count (the controller is not merged)."""
    path_of = getattr(paths, "partition_unclean", None)
    if path_of is None:
        raise FaultError("coordinator.paths has no partition_unclean: the controller that "
                         "counts unclean elections is not in this tree")
    try:
        data, _ = client.get(path_of(topic, partition))
    except NoNodeError:
        return {}
    return json.loads(data)
