"""The leader's ISR writes to ZooKeeper, on a thread of their own, off the request loop.

An ISR change (broker/replica_manager.py ``_write_isr``) is a registration check and a
conditional write of the partition's state node: two ZooKeeper round trips, and kazoo waits
for them without a timeout of its own, up to two thirds of the session timeout when the
connection stops answering. Made on the loop, they held every produce, fetch and replica
fetch of the broker that long. Here the loop only ``submit``s the write (one in flight per
partition) and goes on; this thread makes the calls and queues an ``Outcome``, which the loop
collects in ``ReplicaManager.maintain`` and applies only if the replica is still at the epoch
and version the write was decided on (``isr.outcome_applies``): meanwhile the loop may have
read a newer state (another leader, another ISR), and an older write's result must not
overwrite it. Until an outcome is applied the high watermark keeps using the ISR held, so a
shrink still counts only once it is written (the Jepsen case stays closed).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from kazoo.client import KazooClient

from coordinator import partition_state, paths
from coordinator.partition_state import PartitionState, StaleState

logger = logging.getLogger(__name__)

WRITTEN, STALE, REREGISTERED, FAILED = "written", "stale", "reregistered", "failed"


@dataclass(frozen=True, slots=True)
class Write:
    """One ISR write as decided on the loop: the state to write on ``version``, and the
    leadership it was decided in (``epoch``, and ``written``: the state node's mzxid as read,
    to compare with this broker's registration)."""

    key: tuple[str, int]
    state: PartitionState
    version: int
    epoch: int
    written: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a ``Write``: ``kind`` one of WRITTEN (``version`` the new one), STALE
    (the node moved: read it again), REREGISTERED (this broker registered since its
    leadership was written: ``registered`` is the new czxid) or FAILED (``error``)."""

    write: Write
    kind: str
    version: int = -1
    registered: int | None = None
    error: Exception | None = None


class IsrWriter:
    """A daemon thread making the ``Write``s it is given, in order, and queueing their
    ``Outcome``s for ``collect``."""

    def __init__(self, zk: KazooClient, broker_id: int, outside_errors: tuple):
        self.zk = zk
        self.broker_id = broker_id
        self._outside_errors = outside_errors
        self._writes: queue.Queue = queue.Queue()
        self._outcomes: queue.Queue = queue.Queue()
        # partition -> the ISR its write in flight proposes (the loop's thread only)
        self.in_flight: dict[tuple[str, int], tuple[int, ...]] = {}
        self._thread = threading.Thread(target=self._run, name=f"isr-writer-{broker_id}",
                                        daemon=True)
        self._thread.start()

    def submit(self, write: Write) -> bool:
        """Queue ``write`` unless its partition has one in flight already (False then)."""
        if write.key in self.in_flight:
            return False
        self.in_flight[write.key] = tuple(write.state.isr)
        self._writes.put(write)
        return True

    def collect(self) -> list[Outcome]:
        """The outcomes that arrived since the last call (the loop's thread)."""
        done = []
        while True:
            try:
                outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return done
            self.in_flight.pop(outcome.write.key, None)
            done.append(outcome)

    def close(self, timeout: float = 1.0) -> None:
        """Stop after the write in hand. A write stuck on a silent ZooKeeper is not waited
        for past ``timeout``: its outcome no longer matters, and the broker's close stops the
        client next, which fails the call and ends the (daemon) thread."""
        self._writes.put(None)
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while True:
            write = self._writes.get()
            if write is None:
                return
            self._outcomes.put(self._make(write))

    def _make(self, write: Write) -> Outcome:
        topic, partition = write.key
        try:
            registration = self.zk.exists(paths.broker(self.broker_id))
            if (registration is not None and write.written is not None
                    and registration.czxid > write.written):
                return Outcome(write, REREGISTERED, registered=registration.czxid)
            version = partition_state.write(self.zk, topic, partition, write.state,
                                            write.version)
        except StaleState:
            return Outcome(write, STALE)
        except self._outside_errors as exc:
            return Outcome(write, FAILED, error=exc)
        return Outcome(write, WRITTEN, version=version)
