"""Consumer: a member of a consumer group, reading the partitions the rebalance gives it.

Delivery is at-least-once, and "returned" is never taken for "processed":

- ``poll(timeout_ms)`` returns at most ``max_poll_records`` messages (default 500); the rest of
  a fetch stays buffered here and is returned by later polls (never fetched twice). The position
  moves past what was returned.
- Iteration (``for m in consumer``) hands out one message at a time from the same buffer.
- With auto-commit (``auto_commit_ms``, default 1000) the next ``poll()`` marks the previous
  poll's whole batch processed, and iteration marks a message processed when the next one is
  asked for. Processed offsets are written every ``auto_commit_ms`` (checked in poll and at each
  iteration step), before a partition is given up, and at ``close()``.
- ``commit()`` marks everything returned so far (poll batches, and iteration up to the current
  message) and writes it; ``commit(message)`` up to and including that message;
  ``commit({(topic, partition): offset})`` exactly that. Offsets past what was returned, and
  partitions this consumer does not own, are refused with InvalidArgument (a ValueError).
- With ``auto_commit_ms=None`` only ``commit(...)`` marks; a revoke and ``close()`` write only
  that.
- ``close()`` writes what is processed, never the unreached rest of a batch: a poll() caller that
  stops at message 3 of 100 gets nothing of that batch committed unless it said so; an iterating
  caller that raises in the loop body gets everything before the current message.
- ``before_commit`` (a callable) runs before every offsets write, after the marks to write were
  read, so that output is durable before its offsets (a group worker passes its handler's
  ``flush``).
- While the ZooKeeper connection is suspended (no answer for 2/3 of the session timeout), the
  consumer hands out no message and writes no offset until it knows again that its partitions
  are its own (``GroupMember.confirmed``): another member may be about to take them. Only
  what was already handed out before the suspension can be processed twice.
- When a partition is revoked, its buffered messages are dropped (nothing of a partition given
  up is handed out again), and the revoke waits for the application to come back for more
  (the next poll or iteration step, at most until the poll interval runs out) so that what it
  had in hand is marked and written: a rebalance replays nothing. A partition lost with the
  ZooKeeper session is dropped without a commit (ownership is already gone).

A consumer killed without warning is replaced after its ZooKeeper session times out, and its
successor resumes from the last commit, so duplicates are bounded by what was processed since.

Rebalancing is ``cooperative`` by default: a change moves only the partitions that must move,
and the rest are consumed throughout; ``rebalance="eager"`` is the paper's protocol (everyone
releases everything). With an ``instance_id`` the consumer is a static member: restarted within
``session_timeout_ms`` it gets its partitions back and nobody else's assignment changes. A
handler that does not come back within ``max_poll_interval_ms`` makes the consumer give its
partitions up; it rejoins on its next poll.

A new group starts at ``start`` ("earliest" or "latest"). A fetch error that says where readable
data resumes (retention deleted the position, a gap a recovery cut left, a corrupt message with
``on_corrupt="skip"``, the default) moves the position there, and the skipped data is a data-loss
event: logged once as ``DATA LOSS``, counted in ``stats``, and noted in ZooKeeper (kind, offset,
resume offset, bytes, estimated messages) for ``sluice groups describe``. A committed offset
past the log end (the log lost data) is reset by ``start``, with a note. An error that does not
say where to go (an offset that is not a message boundary; a corrupt message with
``on_corrupt="raise"``) is raised by ``poll()`` or the iterator, at most once per call, naming
the partition (``exc.topic``, ``exc.partition``, ``exc.offset``, ``exc.resume_offset``), with
the position unchanged, so that the application can ``seek`` past it.

On a secured cluster the consumer's principal needs ``consume`` on its group to join
(coordinator/access.py; AuthorizationFailed otherwise): membership and offsets are ZooKeeper
writes no broker sees, so the check is made here, before the first of them.

    c = Consumer(["clicks"], group="loaders")
    for m in c:
        load(m.value)

Why one module of some 660 lines: the delivery promise above (what is marked when, what a
revoke waits for, what a fetch error moves) is kept by one lock over one per-partition state;
split across modules it could no longer be read in one place. What is pure lives apart: fetch
error decisions (resume), the settings (config), the rebalance (coordinator), fetching (fetcher).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from kazoo.exceptions import KazooException

from broker import protocol
from broker.message import Message
from clients import audit as audits
from clients import resume
from clients.brokers import BrokerPool
from clients.config import ConsumerConfig, check_subscription
from clients.fetcher import FetchResult, Fetcher
from clients.log_offsets import open_store
from coordinator import access
from coordinator.authorizer import GROUP, Operation
from coordinator.group import GroupMember
from coordinator.offsets import LOSS_KINDS
from coordinator.errors import InvalidArgument
from coordinator.settings import callable_or_none

log = logging.getLogger(__name__)
TP = tuple[str, int]
_STARTS = {"earliest": protocol.EARLIEST, "latest": protocol.LATEST}


@dataclass
class _Partition:
    """One owned partition, kept together so that a seek or a resume is one method.

    ``fetch_offset``: where the next fetch starts (after what is buffered; None until resolved).
    ``position``: after the last message returned to the application. ``processed``: the commit
    mark. ``jumps``: skipped ranges (offset -> resume), so that a mark reaching a skipped range
    moves past it. ``losses``: data-loss events waiting for the next reply, whose messages give
    the size estimate. ``handed`` (audit only): (next offset, audit window) of each timestamped
    message handed out and not yet committed, oldest first: a commit counts those it covers.
    """

    fetch_offset: int | None = None
    position: int | None = None
    processed: int | None = None
    buffer: collections.deque = field(default_factory=collections.deque)
    error: protocol.SluiceError | None = None
    jumps: dict[int, int] = field(default_factory=dict)
    losses: list[dict] = field(default_factory=list)
    seen_bytes: int = 0
    seen_messages: int = 0
    revoking: bool = False
    handed: collections.deque = field(default_factory=collections.deque)

    def move(self, offset: int) -> None:
        self.fetch_offset = self.position = offset
        self.buffer.clear()
        self.error = None
        handed = self.handed
        while handed and handed[-1][0] > offset:
            handed.pop()        # handed out again after the seek: counted when committed then

    def mark(self, offset: int) -> None:
        while offset in self.jumps:
            offset = self.jumps.pop(offset)
        self.processed = offset


class Consumer:
    def __init__(self, topics: list[str], group: str, zookeeper: str | None = None, *,
                 config: ConsumerConfig | None = None, data_dir=None,
                 before_commit: Callable[[], None] | None = None, **settings):
        """``settings`` are ConsumerConfig's (clients/config.py), over ``config`` if given;
        ``before_commit`` runs before every offsets write (see the module docstring)."""
        self.topics = check_subscription(topics, group)
        config = ConsumerConfig.build(config, **settings)
        callable_or_none("before_commit", before_commit)
        self.config = config
        self.group = group
        self.start = config.start
        commit_ms = config.auto_commit_ms
        self.auto_commit_s = None if commit_ms is None else commit_ms / 1000
        self.max_wait_ms = config.max_wait_ms
        self.max_poll_records = config.max_poll_records
        self.on_corrupt = config.on_corrupt
        self.before_commit = before_commit
        self.session_timeout_s = config.session_timeout_ms / 1000
        self.data_loss_events = 0
        self.data_loss = {kind: {"events": 0, "bytes": 0} for kind in LOSS_KINDS}
        self.commit_failures = 0
        self.messages = 0
        self._pool = BrokerPool(zookeeper, data_dir, config.request_timeout_ms,
                                session_timeout_ms=config.session_timeout_ms,
                                credentials=config.credentials)
        try:
            for topic in self.topics:
                self._pool.partitions(topic)
            zk_client = self._pool.zk
            access.check(zk_client, access.caller(zk_client, self._pool.keys),
                         Operation.CONSUME, GROUP, group)
        except Exception:
            self._pool.close()
            raise
        self._fetcher = Fetcher(self._pool, config.max_bytes, 1, config.max_wait_ms,
                                config.request_timeout_ms)
        self.fetched_messages = 0
        try:
            self.offsets = open_store(self._pool, group, config.offset_store)
        except Exception:
            self._pool.close()
            raise
        self._lock = threading.RLock()
        self._came_back = threading.Condition(self._lock)
        self._parts: dict[TP, _Partition] = {}
        self._ready: collections.deque[TP] = collections.deque()
        self._unresolved = False
        self._unmarked: list[Message] = []
        self._in_hand: set[TP] = set()
        self._caller: int | None = None
        self._refetch = False
        self._taken_since_fetch = 0
        self._wakeup = False
        self._next_commit = time.monotonic() + (self.auto_commit_s or 0)
        self._closed = False
        self._tally = audits.Tally() if config.audit else None
        self._audit_window_ms = config.audit_window_ms
        self._publisher: audits.Publisher | None = None
        poll_interval_ms = config.max_poll_interval_ms
        self.member = GroupMember(
            self._pool.zk, group, self.topics, config.consumer_id, config.retry,
            on_revoke=self._on_revoke, on_assign=self._on_assign, on_lost=self._on_lost,
            protocol=config.rebalance, instance_id=config.instance_id,
            max_poll_interval_s=None if poll_interval_ms is None else poll_interval_ms / 1000)
        try:
            self.member.start()
        except Exception:
            self._pool.close()
            raise
        if config.audit:
            self._publisher = audits.Publisher(
                zookeeper, data_dir, config.credentials,
                audits.source_fields(audits.CONSUMER, group=group, consumer_id=self.consumer_id),
                config.audit_window_ms, session_of=self._pool)

    # --- public ----------------------------------------------------------------------------

    @property
    def consumer_id(self) -> str:
        return self.member.consumer_id

    def assignment(self) -> list[TP]:
        return sorted(self.member.owned)

    def poll(self, timeout_ms: float = 500) -> list[Message]:
        """Up to ``max_poll_records`` messages of owned partitions (waiting up to timeout_ms
        when nothing is buffered); with auto-commit, marks the previous poll's batch processed.
        Raises a pending partition error (see the module docstring), one per call."""
        self._come_back()
        if not self.member.confirmed and not self.member.wait_confirmed(timeout_ms / 1000):
            return []
        with self._lock:
            buffered = bool(self._ready)
        self._fetch(0 if buffered else timeout_ms)
        self._raise_pending()
        with self._lock:
            batch = self._take(self.max_poll_records)
            self._hand_out(batch)
        return batch

    def __iter__(self) -> Iterator[Message]:
        """Messages one at a time, until ``close()`` or ``wakeup()``; a message counts as
        processed (with auto-commit) when the next one is asked for."""
        while not self._closed:
            self._come_back()
            if self._wakeup:
                self._wakeup = False
                return
            if not self.member.confirmed and not self.member.wait_confirmed(
                    self.max_wait_ms / 1000):
                continue
            with self._lock:
                buffered = bool(self._ready)
            if not buffered:
                self._fetch(self.max_wait_ms)
            elif self._refetch or self._taken_since_fetch >= self.max_poll_records:
                self._fetch(0)
            self._raise_pending()
            with self._lock:
                batch = self._take(1)
                self._hand_out(batch)
            if batch:
                yield from self._run_from(batch[0])

    def _run_from(self, m: Message) -> Iterator[Message]:
        """Yield ``m``, then the rest of its partition's buffer while nothing else needs the
        full step of ``__iter__`` (a fetch to send, a commit due, a revoke, a wake-up): the same
        marks, without the per-message work of a whole step."""
        tp = (m.topic, m.partition)
        auto = self.auto_commit_s is not None
        member = self.member
        timer = member.poll_timer
        lock = self._lock
        while True:
            yield m
            if (self._closed or self._wakeup or self._refetch or self._unresolved
                    or self._taken_since_fetch >= self.max_poll_records
                    or not member.confirmed):
                return
            now = time.monotonic()
            if auto and now >= self._next_commit:
                return
            with lock:
                st = self._parts.get(tp)
                if st is None or st.revoking or not st.buffer:
                    return
                if auto:
                    st.mark(m.next_offset)
                m = st.buffer.popleft()
                st.position = m.next_offset
                if self._tally is not None and m.timestamp is not None:
                    st.handed.append((m.next_offset,
                                      m.timestamp - m.timestamp % self._audit_window_ms))
                self._unmarked = [m]
                self._taken_since_fetch += 1
                self.messages += 1
            timer.touch(now)

    def drain(self) -> Iterator[Message]:
        """The messages already fetched for owned partitions, without fetching more, marked as
        iteration marks them (a worker finishing the batch in hand before it leaves)."""
        while not self._closed:
            self._come_back()
            with self._lock:
                batch = self._take(1)
                self._hand_out(batch)
            if not batch:
                return
            yield batch[0]

    def wakeup(self) -> None:
        """End a running iteration at its next step (or the next iteration at its first): the
        loop ends once it asks for the next message, which marks the current one processed as
        always. Only sets a flag, so it is safe from a signal handler."""
        self._wakeup = True

    def commit(self, offsets: Message | dict[TP, int] | None = None) -> int:
        """Mark and write; returns how many ZooKeeper writes it took.

        No argument: everything returned so far, for every owned partition. A Message: up to
        and including it (only its partition is written). A dict ``{(topic, partition):
        offset}``: exactly those offsets (each at most what was returned for its partition).
        Refuses partitions not owned and offsets past what was returned.
        """
        with self._lock:
            if offsets is None:
                for st in self._parts.values():
                    if st.position is not None and not st.revoking:
                        st.mark(st.position)
                return self._write_marks(list(self._parts))
            targets = self._commit_targets(offsets)
            for tp, offset in targets.items():
                self._parts[tp].mark(offset)
            return self._write_marks(list(targets))

    def note_skipped(self, m: Message, error: BaseException) -> None:
        """The application skipped ``m`` (its handler failed and its policy is to go on): a
        data-loss note of kind "skipped", with the error, beside the others; an auditing
        consumer does not count it as consumed."""
        if self._tally is not None:
            with self._lock:
                st = self._parts.get((m.topic, m.partition))
                handed = st.handed if st is not None else ()
                for i in range(len(handed) - 1, -1, -1):
                    if handed[i][0] == m.next_offset:
                        del handed[i]
                        break
        self._record_loss((m.topic, m.partition), {
            "kind": "skipped", "offset": m.offset, "resume": m.next_offset,
            "bytes": m.next_offset - m.offset, "messages": 1, "at": time.time(),
            "error": f"{type(error).__name__}: {error}"[:300]})

    def seek(self, partition: int, offset, topic: str | None = None) -> None:
        """Move an owned partition's position: 'earliest', 'latest' or a byte offset."""
        if topic is None:
            if len(self.topics) != 1:
                raise InvalidArgument("seek needs topic= when consuming several topics")
            topic = self.topics[0]
        tp = (topic, partition)
        if tp not in self.member.owned or tp not in self._parts:
            raise InvalidArgument(f"{topic}/{partition} is not owned by this consumer")
        if isinstance(offset, str) and offset in _STARTS:
            offset = self._offset_of(tp, _STARTS[offset])
        elif isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidArgument(f"offset must be 'earliest', 'latest' or >= 0, not {offset!r}")
        with self._lock:
            st = self._parts.get(tp)
            if st is None:
                raise InvalidArgument(f"{topic}/{partition} is not owned by this consumer")
            st.move(offset)
            st.jumps.clear()
            self._unmarked = [m for m in self._unmarked if (m.topic, m.partition) != tp]
            self._refetch = True
        self._fetcher.forget(tp)

    def position(self, partition: int, topic: str | None = None) -> int | None:
        """The offset after the last message returned for an owned partition (None: unknown)."""
        st = self._parts.get((topic or self.topics[0], partition))
        return None if st is None else st.position

    def close(self, leave_group: bool = True) -> None:
        """Write what is processed (never the unreached rest of a batch), release partitions
        and leave the group at once.

        ``leave_group=False`` is for a static member whose process is about to exit: it commits
        but keeps its member and owner nodes (and the ZooKeeper session) so that, restarted
        within the session timeout, it takes its partitions straight back.
        """
        if self._closed:
            return
        with self._lock:
            self._closed = True
            self._unmarked = []
            self._in_hand.clear()
            self._caller = threading.get_ident()
            self._came_back.notify_all()
        try:
            self.member.stop(leave=leave_group)
        finally:
            if self._publisher is not None:
                self._publisher.close()
                if self._tally.counts:
                    log.error("group %s: audit counts of %d window(s) could not be published "
                              "and are lost: %s", self.group, len(self._tally.counts),
                              self._tally.counts)
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
                "fetched_messages": self.fetched_messages,
                "left_for_slowness": self.member.left_for_slowness,
                "zk_offset_writes": self.offsets.writes,
                "commit_failures": self.commit_failures,
                "data_loss_events": self.data_loss_events,
                "data_loss": {k: dict(v) for k, v in self.data_loss.items() if v["events"]},
                "fetches_expired": self._fetcher.expired,
                "replies_discarded": self._pool.discarded_replies}

    # --- handing out and marking -------------------------------------------------------------

    def _come_back(self) -> None:
        """The application asks for more: what it had in hand is done (marked, with
        auto-commit), a waiting revoke may go on, and a due auto-commit is written."""
        self.member.polled()
        with self._lock:
            self._caller = threading.get_ident()
            if self.auto_commit_s is not None:
                for m in self._unmarked:
                    st = self._parts.get((m.topic, m.partition))
                    if st is not None:
                        st.mark(m.next_offset)
            self._unmarked = []
            if self._in_hand:
                self._in_hand.clear()
                self._came_back.notify_all()
        self._maybe_auto_commit()
        if self._unresolved:
            self._resolve_start_positions()

    def _take(self, limit: int) -> list[Message]:
        """Up to ``limit`` buffered messages, partition by partition in the order they came;
        the lock is held."""
        batch: list[Message] = []
        if not self.member.confirmed:
            return batch
        while self._ready and len(batch) < limit:
            tp = self._ready[0]
            st = self._parts.get(tp)
            if st is None or st.revoking or not st.buffer:
                self._ready.popleft()
                continue
            buffer = st.buffer
            for _ in range(min(limit - len(batch), len(buffer))):
                batch.append(buffer.popleft())
            st.position = batch[-1].next_offset
            if not buffer:
                self._ready.popleft()
                self._refetch = True
        self._taken_since_fetch += len(batch)
        return batch

    def _hand_out(self, batch: list[Message]) -> None:
        self._unmarked = batch
        self._in_hand = {(m.topic, m.partition) for m in batch}
        self.messages += len(batch)
        if self._tally is not None:
            window_ms = self._audit_window_ms
            for m in batch:
                if m.timestamp is not None:
                    self._parts[(m.topic, m.partition)].handed.append(
                        (m.next_offset, m.timestamp - m.timestamp % window_ms))

    def _commit_targets(self, offsets) -> dict[TP, int]:
        """The offsets a commit(...) argument asks for, each checked (the lock is held)."""
        if isinstance(offsets, Message):
            wanted = {(offsets.topic, offsets.partition): offsets.next_offset}
        elif isinstance(offsets, dict):
            wanted = dict(offsets)
        else:
            raise InvalidArgument(f"commit takes a Message or {{(topic, partition): offset}}, "
                            f"not {offsets!r}")
        for tp, offset in wanted.items():
            if not (isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str)
                    and isinstance(tp[1], int)):
                raise InvalidArgument(f"commit keys must be (topic, partition), not {tp!r}")
            if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                raise InvalidArgument(f"cannot commit {tp[0]}/{tp[1]} at {offset!r}: an offset is "
                                 "an integer >= 0")
            st = self._parts.get(tp)
            if st is None or st.revoking:
                raise InvalidArgument(f"cannot commit {tp[0]}/{tp[1]}: it is not owned by this "
                                 "consumer")
            if st.position is None or offset > st.position:
                raise InvalidArgument(f"cannot commit {tp[0]}/{tp[1]} at {offset}: only offsets up "
                                 f"to {st.position} were returned")
        return wanted

    # --- commits ---------------------------------------------------------------------------

    def _maybe_auto_commit(self) -> None:
        if self.auto_commit_s is None or time.monotonic() < self._next_commit:
            return
        self._next_commit = time.monotonic() + self.auto_commit_s
        with self._lock:
            self._write_marks(list(self._parts))

    def _write_marks(self, partitions: list[TP]) -> int:
        """Read the marks, run before_commit, write them (the lock is held, so a revoke, and
        with it the release of ownership, cannot happen in the middle)."""
        if not self.member.confirmed:
            return 0
        marks = {tp: st.processed for tp in partitions
                 if (st := self._parts.get(tp)) is not None and st.processed is not None}
        moved = self.offsets.changed(marks)
        if not moved:
            return 0
        if self.before_commit is not None:
            self.before_commit()
        if self._tally is not None:
            self._count_committed(moved)
        return self._write_offsets(moved)

    def _count_committed(self, offsets: dict[TP, int]) -> None:
        """Count the handed-out messages these offsets commit, per topic and window, and
        publish the counts before the offsets are written: a process that dies between the
        two replays messages already counted (counted twice, as delivered twice), never the
        reverse. Counts that cannot be published now go with the next commit."""
        tally = self._tally
        for tp, offset in offsets.items():
            handed = self._parts[tp].handed
            while handed and handed[0][0] <= offset:
                tally.add(tp[0], handed.popleft()[1], 1)
        if self._publisher is not None and tally.counts:
            audits.publish_or_keep(self._publisher, tally, tally.pop_all(), self._lock)

    def _write_offsets(self, offsets: dict[TP, int]) -> int:
        """A commit the store cannot take now (ZooKeeper: connection lost, session expired;
        the log: no leader of the offsets partition, a timeout) is not fatal: the offsets stay
        uncommitted and the next commit tries again; at worst a successor replays them
        (at-least-once)."""
        try:
            return self.offsets.commit(offsets)
        except KazooException as exc:
            self.commit_failures += 1
            log.warning("group %s: commit deferred, ZooKeeper did not take it (%s)", self.group,
                        type(exc).__name__)
            return 0
        except protocol.SluiceError as exc:
            if not exc.retriable:
                raise
            self.commit_failures += 1
            log.warning("group %s: commit deferred, the offsets log did not take it (%s)",
                        self.group, exc)
            return 0

    # --- rebalance callbacks (the rebalance thread, or close() in the caller's) -------------

    def _on_revoke(self, partitions: list[TP]) -> None:
        with self._lock:
            for tp in partitions:
                st = self._parts.get(tp)
                if st is not None:
                    st.revoking = True
                    st.buffer.clear()
            self._wait_for_hand_back(partitions)
            try:
                self._write_marks(partitions)
            finally:
                pending = [(tp, e) for tp in partitions if tp in self._parts
                           for e in self._parts[tp].losses]
                self._drop(partitions)
        for tp, event in pending:
            self._record_loss(tp, event)

    def _wait_for_hand_back(self, partitions: list[TP]) -> None:
        """Before a revoke commits: if the application has messages of these partitions in
        hand, wait until it comes back for more (then they are marked), at most until its poll
        interval runs out. Never in the application's own thread (close())."""
        if threading.get_ident() == self._caller:
            return
        revoked = set(partitions)
        limit = self.member.poll_timer.remaining(time.monotonic())
        deadline = time.monotonic() + (self.session_timeout_s if limit is None else limit)
        while self._in_hand & revoked and not self._closed:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("group %s: revoking %s while the application still holds their "
                            "messages; a successor will see those again", self.group,
                            ", ".join(f"{t}/{p}" for t, p in sorted(self._in_hand & revoked)))
                return
            self._came_back.wait(left)

    def _on_lost(self, partitions: list[TP]) -> None:
        with self._lock:
            self._drop(partitions)

    def _drop(self, partitions: list[TP]) -> None:
        for tp in partitions:
            self._parts.pop(tp, None)
            self.offsets.forget(*tp)
        self._unmarked = [m for m in self._unmarked if (m.topic, m.partition) in self._parts]

    def _on_assign(self, partitions: list[TP]) -> None:
        """New partitions start unresolved; poll() reads their committed offsets (or applies
        ``start``), so a ZooKeeper hiccup here cannot leave an owned partition unread."""
        with self._lock:
            for tp in partitions:
                self._parts[tp] = _Partition()
            self._unresolved = True

    def _resolve_start_positions(self) -> None:
        with self._lock:
            self._unresolved = False
            unknown = [tp for tp, st in self._parts.items() if st.fetch_offset is None]
        for tp in unknown:
            try:
                offset = self.offsets.fetch(*tp)
                if offset is None:
                    offset = self._offset_of(tp, _STARTS[self.start])
            except KazooException:
                self._unresolved = True
                continue
            except protocol.SluiceError as exc:
                self._unresolved = True
                if not exc.retriable:
                    raise resume.named(exc, tp[0], tp[1], None) from None
                continue
            with self._lock:
                st = self._parts.get(tp)
                if st is not None and st.fetch_offset is None:
                    st.move(offset)
                    st.processed = offset
                    self._refetch = True

    def _offset_of(self, tp: TP, when: int) -> int:
        return self._pool.offset(tp[0], tp[1], when)

    # --- fetching and fetch errors ---------------------------------------------------------

    def _fetch(self, timeout_ms: float) -> None:
        with self._lock:
            positions = {tp: st.fetch_offset for tp, st in self._parts.items()
                         if st.fetch_offset is not None and not st.buffer and st.error is None
                         and not st.revoking}
            self._refetch = False
            self._taken_since_fetch = 0
        results = self._fetcher.poll(positions, timeout_ms)
        for tp, result in results.items():
            self._on_result(tp, result)

    def _on_result(self, tp: TP, result: FetchResult) -> None:
        with self._lock:
            st = self._parts.get(tp)
            if st is None or st.revoking or st.fetch_offset != result.offset:
                return
            pending, st.losses = st.losses, []
            got = result.messages
            if got:
                st.buffer.extend(got)
                self._ready.append(tp)
                st.fetch_offset = got[-1].next_offset
                st.seen_bytes += st.fetch_offset - result.offset
                st.seen_messages += len(got)
                self.fetched_messages += len(got)
            if result.next_offset is not None and result.next_offset > st.fetch_offset:
                st.fetch_offset = result.next_offset    # past a compacted log's trailing gap
            seen = st.seen_bytes, st.seen_messages
        for event in pending:
            if event["messages"] is None:
                event["messages"] = resume.estimated_messages(event["bytes"], *seen)
            self._record_loss(tp, event)
        if result.error is not None:
            self._on_fetch_error(tp, result.offset, result.error)

    def _on_fetch_error(self, tp: TP, offset: int, error: protocol.SluiceError) -> None:
        decision = resume.decide(error, offset, self.on_corrupt)
        log_end = None
        if decision.action == "locate":
            try:
                log_start = self._offset_of(tp, protocol.EARLIEST)
                log_end = self._offset_of(tp, protocol.LATEST)
            except protocol.SluiceError as exc:
                if not exc.retriable:
                    raise
                return
            decision = resume.locate(offset, log_start, log_end, self.start)
        if decision.action == "retry":
            return
        with self._lock:
            st = self._parts.get(tp)
            if st is None or st.revoking or st.fetch_offset != offset:
                return
            if decision.action == "raise":
                st.error = resume.named(error, tp[0], tp[1], offset)
                return
            target = decision.resume
            nbytes = offset - log_end if decision.kind == "past_end" else target - offset
            caught_up = st.processed == offset
            st.move(target)
            if decision.kind == "past_end":
                st.processed = target
            else:
                st.jumps[offset] = target
                if caught_up:
                    st.mark(offset)
            st.losses.append({"kind": decision.kind, "offset": offset, "resume": target,
                              "bytes": nbytes, "messages": resume.estimated_messages(
                                  nbytes, st.seen_bytes, st.seen_messages),
                              "at": time.time(), "error": str(error)[:300]})
            self._refetch = True

    def _raise_pending(self) -> None:
        """Raise one partition's pending error, if any (the others wait for the next call)."""
        with self._lock:
            for st in self._parts.values():
                if st.error is not None and not st.revoking:
                    error, st.error = st.error, None
                    break
            else:
                return
        raise error

    def _record_loss(self, tp: TP, event: dict) -> None:
        """Log, count and note one data-loss event (a ZooKeeper error only loses the note)."""
        estimate = "unknown" if event["messages"] is None else f"~{event['messages']}"
        log.error("DATA LOSS: group %s, %s/%d: %s at offset %d, resuming at %d (%d bytes, %s "
                  "messages)%s", self.group, tp[0], tp[1], event["kind"], event["offset"],
                  event["resume"], event["bytes"], estimate,
                  f": {event['error']}" if event.get("error") else "")
        with self._lock:
            self.data_loss_events += 1
            self.data_loss[event["kind"]]["events"] += 1
            self.data_loss[event["kind"]]["bytes"] += event["bytes"]
        try:
            self.offsets.record_data_loss(tp[0], tp[1], event)
        except KazooException as exc:
            log.warning("group %s: could not note the data loss of %s/%d in ZooKeeper (%s); "
                        "it is logged here", self.group, tp[0], tp[1], type(exc).__name__)

