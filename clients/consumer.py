"""Consumer: a member of a consumer group, reading the partitions the rebalance gives it.

Delivery is at-least-once. With auto-commit (``auto_commit_ms``, default 1000) a message counts
as processed once the application comes back for the next one (the next ``poll()``, or the next
step of the iterator), and processed offsets are committed every ``auto_commit_ms`` and before
any partition is given up. With ``auto_commit_ms=None`` only ``commit()`` marks messages
processed (everything returned so far): the application calls it once its output is durable,
and a partition given up in between is committed only that far, never further. A consumer killed
without warning is replaced after its ZooKeeper session times out, and its successor resumes
from the last commit, so duplicates are bounded by the commit interval.

Rebalancing is ``cooperative`` by default: a change moves only the partitions that must move,
and the rest are consumed throughout; ``rebalance="eager"`` is the paper's protocol (everyone
releases everything). With an ``instance_id`` the consumer is a static member: restarted within
``session_timeout_ms`` it gets its partitions back and nobody else's assignment changes. A
handler that does not come back within ``max_poll_interval_ms`` makes the consumer give its
partitions up; it rejoins on its next poll.

A new group starts at ``start`` ("earliest" or "latest"). A committed offset that retention has
already deleted is a data-loss event: it is logged, counted (``data_loss_events``), noted in
ZooKeeper for ``sluice groups describe``, and the position is reset by ``start``.

    c = Consumer(["clicks"], group="loaders")
    for m in c:
        load(m.value)
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

from kazoo.exceptions import KazooException

from broker import protocol
from broker.message import Message
from clients.brokers import BrokerPool
from clients.fetcher import Fetcher
from coordinator.group import GroupMember
from coordinator.offsets import OffsetStore
from coordinator.rebalance import RetryPolicy

log = logging.getLogger("sluice.consumer")
TP = tuple[str, int]
_STARTS = {"earliest": protocol.EARLIEST, "latest": protocol.LATEST}


class Consumer:
    def __init__(self, topics: list[str], group: str, zookeeper: str | None = None,
                 auto_commit_ms: int | None = 1000, start: str = "earliest",
                 consumer_id: str | None = None, rebalance_max_tries: int = 4,
                 rebalance_backoff_ms: int = 2000, session_timeout_ms: int = 6000,
                 max_bytes: int = 1 << 20, max_wait_ms: int = 500,
                 request_timeout_ms: int = 5000, data_dir=None, rebalance: str = "cooperative",
                 instance_id: str | None = None, max_poll_interval_ms: int | None = 300_000):
        if isinstance(topics, str):
            topics = [topics]
        _check_arguments(topics, group, start, auto_commit_ms, rebalance, instance_id,
                         rebalance_max_tries=rebalance_max_tries,
                         rebalance_backoff_ms=rebalance_backoff_ms,
                         session_timeout_ms=session_timeout_ms, max_bytes=max_bytes,
                         max_wait_ms=max_wait_ms, request_timeout_ms=request_timeout_ms,
                         max_poll_interval_ms=max_poll_interval_ms)
        self.topics = list(topics)
        self.group = group
        self.start = start
        self.auto_commit_s = None if auto_commit_ms is None else auto_commit_ms / 1000
        self.max_wait_ms = max_wait_ms
        self.data_loss_events = 0
        self.commit_failures = 0
        self.messages = 0
        self._pool = BrokerPool(zookeeper, data_dir, request_timeout_ms,
                                session_timeout_ms=session_timeout_ms)
        try:
            for topic in self.topics:
                self._pool.partitions(topic)
        except Exception:
            self._pool.close()
            raise
        self._fetcher = Fetcher(self._pool, max_bytes, 1, max_wait_ms, request_timeout_ms)
        self.offsets = OffsetStore(self._pool.zk, group)
        self._lock = threading.RLock()
        self._positions: dict[TP, int | None] = {}
        self._returned: dict[TP, int] = {}
        self._processed: dict[TP, int] = {}
        self._last_batch: list[Message] = []
        self._next_commit = time.monotonic() + (self.auto_commit_s or 0)
        self._closed = False
        self.member = GroupMember(
            self._pool.zk, group, self.topics, consumer_id,
            RetryPolicy(rebalance_max_tries, rebalance_backoff_ms / 1000),
            on_revoke=self._on_revoke, on_assign=self._on_assign, on_lost=self._on_lost,
            protocol=rebalance, instance_id=instance_id,
            max_poll_interval_s=None if max_poll_interval_ms is None else max_poll_interval_ms / 1000)
        try:
            self.member.start()
        except Exception:
            self._pool.close()
            raise

    # --- public ----------------------------------------------------------------------------

    @property
    def consumer_id(self) -> str:
        return self.member.consumer_id

    def assignment(self) -> list[TP]:
        return sorted(self.member.owned)

    def poll(self, timeout_ms: float = 500) -> list[Message]:
        """Messages from owned partitions; with auto-commit, marks the previous poll's
        messages processed."""
        self.member.polled()
        if self.auto_commit_s is not None:
            self._mark_processed(self._last_batch)
        self._last_batch = []
        self._maybe_auto_commit()
        self._resolve_start_positions()
        with self._lock:
            positions = {tp: off for tp, off in self._positions.items() if off is not None}
        messages, errors = self._fetcher.poll(positions, timeout_ms)
        for tp, error in errors.items():
            self._on_fetch_error(tp, error)
        batch: list[Message] = []
        with self._lock:
            for tp, got in messages.items():
                if self._positions.get(tp) != got[0].offset:
                    continue
                self._positions[tp] = got[-1].next_offset
                self._returned[tp] = got[-1].next_offset
                batch.extend(got)
        self.messages += len(batch)
        self._last_batch = batch
        return batch

    def __iter__(self) -> Iterator[Message]:
        while not self._closed:
            batch = self.poll(self.max_wait_ms)
            self._last_batch = []
            for m in batch:
                yield m
                if self.auto_commit_s is not None:
                    self._mark_processed([m])

    def commit(self) -> int:
        """Commit everything returned so far (call after processing it); returns ZK writes."""
        with self._lock:
            for tp, offset in self._returned.items():
                if tp in self._positions:
                    self._processed[tp] = offset
        self._last_batch = []
        return self._commit()

    def abandon_from(self, m: Message) -> None:
        """The application stops before handling ``m``: it and the rest of the last batch stay
        unprocessed, so they are not committed and a successor handles them."""
        for index, held in enumerate(self._last_batch):
            if held is m:
                dropped = self._last_batch[index:]
                del self._last_batch[index:]
                break
        else:
            return
        with self._lock:
            for held in reversed(dropped):
                tp = (held.topic, held.partition)
                if tp in self._positions:
                    self._returned[tp] = held.offset

    def seek(self, partition: int, offset, topic: str | None = None) -> None:
        """Move an owned partition's position: 'earliest', 'latest' or a byte offset."""
        if topic is None:
            if len(self.topics) != 1:
                raise ValueError("seek needs topic= when consuming several topics")
            topic = self.topics[0]
        tp = (topic, partition)
        if tp not in self.member.owned:
            raise ValueError(f"{topic}/{partition} is not owned by this consumer")
        if isinstance(offset, str):
            if offset not in _STARTS:
                raise ValueError(f"offset must be 'earliest', 'latest' or >= 0, not {offset!r}")
            offset = self._offset_of(tp, _STARTS[offset])
        elif not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be 'earliest', 'latest' or >= 0, not {offset!r}")
        with self._lock:
            self._positions[tp] = offset
            self._returned[tp] = offset
            self._processed[tp] = offset
        self._last_batch = [m for m in self._last_batch if (m.topic, m.partition) != tp]
        self._fetcher.forget(tp)

    def close(self, leave_group: bool = True) -> None:
        """Commit what was returned, release partitions and leave the group at once.

        ``leave_group=False`` is for a static member whose process is about to exit: it commits
        but keeps its member and owner nodes (and the ZooKeeper session) so that, restarted
        within the session timeout, it takes its partitions straight back.
        """
        if self._closed:
            return
        self._closed = True
        if self.auto_commit_s is not None:
            self._mark_processed(self._last_batch)
        try:
            self.member.stop(leave=leave_group)
        finally:
            self._pool.close(keep_session=not leave_group)

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> dict:
        return {"consumer_id": self.consumer_id, "state": self.member.state.value,
                "owned": [f"{t}/{p}" for t, p in self.assignment()],
                "rebalances": self.member.rebalances, "conflicts": self.member.conflicts,
                "rebalance_failures": self.member.failures, "messages": self.messages,
                "left_for_slowness": self.member.left_for_slowness,
                "zk_offset_writes": self.offsets.writes,
                "commit_failures": self.commit_failures,
                "data_loss_events": self.data_loss_events,
                "fetches_expired": self._fetcher.expired,
                "replies_discarded": self._pool.discarded_replies}

    # --- positions and commits -------------------------------------------------------------

    def _mark_processed(self, batch: list[Message]) -> None:
        if not batch:
            return
        with self._lock:
            for m in batch:
                tp = (m.topic, m.partition)
                if tp in self._positions:
                    self._processed[tp] = m.next_offset

    def _maybe_auto_commit(self) -> None:
        if self.auto_commit_s is None or time.monotonic() < self._next_commit:
            return
        self._next_commit = time.monotonic() + self.auto_commit_s
        self._commit()

    def _commit(self) -> int:
        """Commit processed offsets of owned partitions; the lock keeps a revoke (and thus
        the release of ownership) from happening in the middle."""
        with self._lock:
            offsets = {tp: off for tp, off in self._processed.items() if tp in self._positions}
            return self._write_offsets(offsets)

    def _write_offsets(self, offsets: dict[TP, int]) -> int:
        """A commit ZooKeeper cannot take now (connection lost, session expired) is not fatal:
        the offsets stay uncommitted and the next commit tries again; at worst a successor
        replays them (at-least-once)."""
        try:
            return self.offsets.commit(offsets)
        except KazooException as exc:
            self.commit_failures += 1
            log.warning("group %s: commit deferred, ZooKeeper did not take it (%s)", self.group,
                        type(exc).__name__)
            return 0

    def _on_revoke(self, partitions: list[TP]) -> None:
        with self._lock:
            offsets = {tp: self._processed[tp] for tp in partitions if tp in self._processed}
            self._write_offsets(offsets)
            self._drop(partitions)

    def _on_lost(self, partitions: list[TP]) -> None:
        with self._lock:
            self._drop(partitions)

    def _drop(self, partitions: list[TP]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._returned.pop(tp, None)
            self._processed.pop(tp, None)
            self.offsets.forget(*tp)

    def _on_assign(self, partitions: list[TP]) -> None:
        """New partitions start unresolved; poll() reads their committed offsets (or applies
        ``start``), so a ZooKeeper hiccup here cannot leave an owned partition unread."""
        with self._lock:
            for tp in partitions:
                self._positions[tp] = None
                self._returned.pop(tp, None)
                self._processed.pop(tp, None)

    def _resolve_start_positions(self) -> None:
        with self._lock:
            unknown = [tp for tp, off in self._positions.items() if off is None]
        for tp in unknown:
            try:
                offset = self.offsets.fetch(*tp)
                if offset is None:
                    offset = self._offset_of(tp, _STARTS[self.start])
            except (protocol.BrokerUnavailable, protocol.RequestTimedOut, KazooException):
                continue
            with self._lock:
                if tp in self._positions and self._positions[tp] is None:
                    self._positions[tp] = offset
                    self._returned[tp] = offset
                    self._processed[tp] = offset

    def _offset_of(self, tp: TP, when: int) -> int:
        frames = self._pool.call(tp[0], tp[1],
                                 lambda corr: protocol.encode_offsets(corr, tp[0], tp[1], when))
        return protocol.decode_response(frames[0].buffer, protocol.OFFSETS_REPLY)[1][0]

    def _on_fetch_error(self, tp: TP, error: protocol.SluiceError) -> None:
        if isinstance(error, (protocol.BrokerUnavailable, protocol.RequestTimedOut,
                              protocol.UnknownTopicOrPartition)):
            return
        with self._lock:
            position = self._positions.get(tp)
        if position is None:
            return
        if isinstance(error, protocol.OffsetOutOfRange):
            try:
                earliest = self._offset_of(tp, protocol.EARLIEST)
            except (protocol.BrokerUnavailable, protocol.RequestTimedOut):
                return
            if position < earliest:
                self.data_loss_events += 1
                log.error("DATA LOSS: group %s's position %d in %s/%d was deleted by retention "
                          "(log now starts at %d, %d bytes never consumed); resetting to %s",
                          self.group, position, tp[0], tp[1], earliest, earliest - position,
                          self.start)
                try:
                    self.offsets.record_data_loss(tp[0], tp[1], position, earliest)
                except KazooException:
                    log.warning("could not note the data loss in ZooKeeper; it is logged here")
        else:
            log.error("fetch of %s/%d at %d failed: %s; resetting to %s", tp[0], tp[1],
                      position, error, self.start)
        try:
            reset = self._offset_of(tp, _STARTS[self.start])
        except (protocol.BrokerUnavailable, protocol.RequestTimedOut):
            return
        with self._lock:
            if self._positions.get(tp) == position:
                self._positions[tp] = reset
                self._returned[tp] = reset
                self._processed[tp] = reset


def _check_arguments(topics, group, start, auto_commit_ms, rebalance, instance_id,
                     **positive) -> None:
    """Every argument checked before anything connects, each with a line a person can act on."""
    from coordinator import paths
    from coordinator.group import PROTOCOLS
    if not isinstance(topics, (list, tuple)) or not all(isinstance(t, str) for t in topics):
        raise TypeError(f"topics must be a list of topic names, not {topics!r}")
    if not topics:
        raise ValueError("a consumer needs at least one topic")
    for topic in topics:
        paths.check_name("topic", topic)
    if not isinstance(group, str):
        raise TypeError(f"group must be a group name (str), not {group!r}")
    paths.check_name("group", group)
    if instance_id is not None:
        if not isinstance(instance_id, str):
            raise TypeError(f"instance_id must be a str, not {instance_id!r}")
        paths.check_name("instance id", instance_id)
    if start not in _STARTS:
        raise ValueError(f"start must be 'earliest' or 'latest', not {start!r}")
    if rebalance not in PROTOCOLS:
        raise ValueError(f"rebalance must be one of {', '.join(PROTOCOLS)}, not {rebalance!r}")
    if auto_commit_ms is not None and (not isinstance(auto_commit_ms, (int, float))
                                       or auto_commit_ms <= 0):
        raise ValueError("auto_commit_ms must be positive, or None for manual commits")
    for name, value in positive.items():
        if value is None and name == "max_poll_interval_ms":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a positive number, not {value!r}")
