"""LogOffsetStore: a group's committed offsets in ``__consumer_offsets``, and ``open_store``.

The log store of coordinator/offset_store_choice.py, in OffsetStore's shape (commit, fetch,
committed, changed, forget; data-loss notes stay in ZooKeeper, inherited): a commit is one
OFFSET_COMMIT request to the leader of the group's partition of ``__consumer_offsets``, answered
once every in-sync replica has it (acks=all); a fetch is one OFFSET_FETCH to that leader, which
answers from memory (broker/committed_offsets.py). ZooKeeper sees no offset write.

A request the leader cannot take now (NOT_COORDINATOR while leadership moves or the topic's
logs open, a timeout, no leader) is retried within ``retry_s`` and then raised, retriable:
the consumer keeps its offsets uncommitted and tries at its next commit, as it does when
ZooKeeper refuses one.
"""
from __future__ import annotations

import logging
import time

from broker import protocol
from clients.brokers import BrokerPool
from coordinator import offset_store_choice as choice, topics
from coordinator.offsets import OffsetStore

log = logging.getLogger(__name__)
TP = tuple[str, int]
RETRY_S = 5.0
BACKOFF_S = 0.05


class LogOffsetStore(OffsetStore):
    store = choice.LOG

    def __init__(self, pool: BrokerPool, group: str, retry_s: float = RETRY_S):
        super().__init__(pool.zk, group)
        self.pool = pool
        self.retry_s = retry_s
        self._partition: int | None = None

    def partition(self, create: bool = True) -> int | None:
        """The group's partition of ``__consumer_offsets``; the topic is created by the first
        write (``create``), a read before it finds None: nothing is committed yet."""
        if self._partition is None:
            if create:
                placement = choice.ensure_offsets_topic(self.client)
            else:
                try:
                    placement = topics.get(self.client, choice.OFFSETS_TOPIC)
                except topics.UnknownTopic:
                    return None
            self._partition = choice.offsets_partition(self.group, placement.partitions)
        return self._partition

    def commit(self, offsets: dict[TP, int]) -> int:
        """Append the offsets that moved (one request, acks=all); how many were written."""
        with self._lock:
            moved = {tp: off for tp, off in offsets.items() if self._last.get(tp) != off}
        if not moved:
            return 0
        self._write(moved)
        with self._lock:
            self._last.update(moved)
            self.writes += len(moved)
        return len(moved)

    def fetch(self, topic: str, partition: int) -> int | None:
        found = self._read([(topic, partition)])
        offset = found.get((topic, partition))
        if offset is not None:
            with self._lock:
                self._last[(topic, partition)] = offset
        return offset

    def committed(self, topic: str) -> dict[int, int]:
        return {p: offset for (t, p), offset in self.all_committed().items() if t == topic}

    def all_committed(self) -> dict[TP, int]:
        return self._read([])

    def remove(self, partitions) -> int:
        """Tombstone the commits of ``partitions``; how many there were."""
        there = self._read(list(partitions))
        if there:
            self._write({tp: -1 for tp in there})
        for tp in partitions:
            self.forget(*tp)
        return len(there)

    def _write(self, offsets: dict[TP, int]) -> None:
        group = self.group
        self._call(lambda corr: protocol.encode_offset_commit(corr, group, offsets),
                   protocol.PRODUCE_REPLY)

    def _read(self, partitions: list[TP]) -> dict[TP, int]:
        if self.partition(create=False) is None:
            return {}
        group = self.group
        frames = self._call(lambda corr: protocol.encode_offset_fetch(corr, group, partitions))
        entries = protocol.decode_committed(frames[1].buffer if len(frames) > 1 else b"")
        return {(topic, p): offset for topic, p, offset, _ in entries}

    def _call(self, header_for, fields=None) -> list:
        """One request to the offsets partition's leader, its answer checked (``fields``: the
        reply's, zeroed in an error answer), retried while the error is retriable and
        ``retry_s`` lasts."""
        topic, partition = choice.OFFSETS_TOPIC, self.partition()
        deadline = time.monotonic() + self.retry_s
        backoff = BACKOFF_S
        while True:
            try:
                frames = self.pool.call(topic, partition, header_for)
                protocol.decode_response(frames[0].buffer, fields)
                return frames
            except protocol.SluiceError as exc:
                if not exc.retriable or time.monotonic() + backoff > deadline:
                    raise
                self.pool.leader_failed(topic, partition, None, exc)
                log.debug("group %s: offsets request retried (%s)", self.group, exc)
            time.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


def open_store(pool: BrokerPool, group: str, default: str = choice.DEFAULT_STORE,
               record: bool = True, retry_s: float = RETRY_S) -> OffsetStore:
    """The group's store: recorded at its creation (``record``: the group's first member or
    commit), else as ``choose`` reads it now (readers that must not create a group)."""
    found = (choice.settle(pool.zk, group, default) if record
             else choice.store_of(pool.zk, group, default))
    if found == choice.LOG:
        return LogOffsetStore(pool, group, retry_s)
    return OffsetStore(pool.zk, group)
