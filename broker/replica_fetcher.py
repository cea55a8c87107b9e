"""The follower's replica fetcher: copy each followed partition from its leader, byte for byte.

One DEALER socket per leader broker (its replica endpoint from the broker registry), polled by
the broker's own request loop, so that what is fetched is appended on the loop's thread through
the same ``LogManager.append`` as a produce request: one write per fetched set. Its message
count, and the check that it holds the leader's good bytes, come from the leader's append
checksums (frame 4, broker/append_checksums.py): one CRC32 per append the leader validated,
recomputed here over the fetched slice, a few C calls per answer. A follower is what may lead
next and what a lost disk is rebuilt onto, so it must not copy a leader's damaged bytes as
good ones: bytes no matching checksum covers (an old leader's answer without frame 4, data
appended before the leader started, a compacted stretch, a byte that changed since the leader
validated it) are walked message by message (``message.validate_set``, CRCs in C) after one
copy into bytes (a bytes slice costs less than a memoryview one in that walk: 0.51 against
0.62 µs per 200-byte message); the good prefix is appended and the follower stops at the bad
message (below). The stats count both (``replica_checksummed_messages``,
``replica_walked_messages``). The fetched bytes land at the same offsets as on the leader,
since the fetch offset is the follower's log end.

Before it fetches, a follower that (re)starts following truncates its log by leader epoch
(KIP-101, broker/leader_epochs.py): it asks the leader OFFSET_FOR_EPOCH for its latest epoch,
cuts its log where ``truncation_offset`` says, and asks again with its new latest epoch until
a round cuts nothing. What it cuts was never in every in-sync replica (an acks=1 write of a
former leader, say): it is counted in the broker's stats (``truncated_messages``,
``truncated_bytes``) and logged at WARNING, never silent. The leader's epoch entries come with
every fetched set (frame 2), and those the follower lacks are recorded with the bytes, so the
same offsets carry the same epochs on every replica. The producers' sequenced sets in the
fetched bytes come as frame 3 (broker/producer_state.py) and feed this broker's producer
tables, and a truncation cuts them too, so a new leader judges a resend as the old one would.

Each followed partition has at most one request in flight: ``replica_id`` = this broker,
``leader_epoch`` = the epoch it follows, ``offset`` = its log end, a long poll of
``replica_fetch_wait_max_ms`` for up to ``replica_fetch_max_bytes``. The answer's high
watermark field tells the follower its leader's high watermark (kept, bounded by its own end,
for METADATA and for the day it leads). What goes wrong:

- NOT_LEADER or FENCED_LEADER_EPOCH: one of the two has a stale state; the follower reads its
  state node again (``ReplicaManager.reread``) and tries again after a back-off;
- OFFSET_OUT_OF_RANGE below the leader's log start (a lost disk, or retention overtook the
  follower): restart the log empty at the leader's start (``Log.reset_to``) and fetch from
  there; past the leader's end, or INVALID_OFFSET (the logs diverged): truncate again;
- no answer within the long poll plus ``_ANSWER_TIMEOUT_S`` (a stopped leader): forget that
  request (a late answer is recognised by its correlation id and dropped) and ask again after
  a back-off. Every failure is counted (``replica_fetch_failed``) and logged at most every few
  seconds; none ends the loop.
- a message the follower cannot copy (the leader answers CORRUPT_MESSAGE at the fetch offset,
  or the fetched set holds a message that fails its CRC or framing): the good messages before
  it are appended (never dropped next to the bad one), and the partition stops there. Copying
  the corrupt bytes would spread them, and skipping them (the error's ``resume_offset``) would
  leave this replica without offsets the leader has: a replica must hold the leader's bytes
  at the leader's offsets or nothing. So the follower logs one ERROR per offset, counts every
  such answer (``replica_fetch_corrupt`` in the stats), and probes again only every
  ``CORRUPT_RETRY_S`` (the leader's log may move on: retention, a truncation), not in a loop.
  Not fetching, it is not caught up, so the leader keeps it out of the ISR (or shrinks it out
  after ``replica_lag_time_max_ms``), as Kafka's fetcher marks such a partition failed
  (KIP-461). A new leader or epoch (``follow``) starts the partition afresh at once: the new
  leader's copy may be readable. An operator repairs the leader's log (its scrub reports the
  corrupt range) or moves leadership.
"""
from __future__ import annotations

import itertools
import logging
import time
import zlib

import zmq

from broker import append_checksums, message, protocol
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.leader_epochs import truncation_offset
from broker.log_manager import LogManager
from broker.replica_manager import Replica, ReplicaManager
from coordinator.errors import (CorruptMessage, FencedLeaderEpoch, InvalidOffset, NotLeader,
                                OffsetOutOfRange, SluiceError)

logger = logging.getLogger(__name__)

_ANSWER_TIMEOUT_S = 5.0  # beyond the long poll, before a fetch counts as lost
RETRY_FIRST_S = 0.1      # back-off after a failed fetch, doubling up to
RETRY_MAX_S = 2.0
CORRUPT_RETRY_S = 30.0   # a partition stopped at a message it cannot copy is probed this often


class _Fetch:
    """One followed partition: whom it fetches from, in which epoch, what is in flight."""

    __slots__ = ("replica", "leader", "epoch", "truncating", "asking", "corr", "offset",
                 "deadline", "retry_at", "backoff", "stuck_at")

    def __init__(self, replica: Replica):
        self.replica = replica
        self.leader = replica.leader
        self.epoch = replica.epoch
        self.truncating = True     # OFFSET_FOR_EPOCH rounds first, then fetches
        self.asking = False        # the request in flight is an OFFSET_FOR_EPOCH
        self.corr: int | None = None
        self.offset = 0
        self.deadline = 0.0
        self.retry_at = 0.0
        self.backoff = 0.0
        self.stuck_at: int | None = None   # the offset of a message it could not copy


class ReplicaFetcher:
    """The fetches of the partitions this broker follows, on sockets the loop polls."""

    def __init__(self, config: BrokerConfig, context: zmq.Context, logs: LogManager,
                 replicas: ReplicaManager, errors: ErrorCounts, curve: dict | None = None):
        self.config = config
        self.context = context
        self.logs = logs
        self.replicas = replicas
        self.errors = errors
        self.poller: zmq.Poller | None = None
        self.sockets: dict[zmq.Socket, int] = {}
        self._by_leader: dict[int, tuple[str, zmq.Socket]] = {}
        self._fetches: dict[tuple[str, int], _Fetch] = {}
        self._in_flight: dict[int, _Fetch] = {}
        self._corr = itertools.count(1)
        self._wait_ms = config.replica_fetch_wait_max_ms
        self._curve = curve or {}

    def register(self, poller: zmq.Poller) -> None:
        """The loop's poller: sockets opened from now on are polled there."""
        self.poller = poller
        for sock in self.sockets:
            poller.register(sock, zmq.POLLIN)

    # --- what to follow (ReplicaManager.on_follow) -----------------------------------------

    def follow(self, replica: Replica) -> None:
        """Start (or restart, after a leader or epoch change) fetching ``replica`` from its
        leader; stop when this broker leads it or nobody does."""
        old = self._fetches.pop(replica.key, None)
        if old is not None and old.corr is not None:
            self._in_flight.pop(old.corr, None)
        if replica.is_leader or replica.leader < 0:
            return
        self._fetches[replica.key] = _Fetch(replica)

    # --- the loop's work -------------------------------------------------------------------

    def send_due(self, now: float) -> None:
        """Send the fetch of every followed partition with none in flight whose back-off
        passed; give up on answers overdue."""
        for fetch in self._fetches.values():
            if fetch.corr is not None:
                if now < fetch.deadline:
                    continue
                self._in_flight.pop(fetch.corr, None)
                fetch.corr = None
                self._failed(fetch, now, SluiceError(
                    f"no answer from broker {fetch.leader} within "
                    f"{self._wait_ms / 1000 + _ANSWER_TIMEOUT_S:.1f} s"))
            if now >= fetch.retry_at:
                self._send(fetch, now)

    def _send(self, fetch: _Fetch, now: float) -> None:
        """The next request of ``fetch``: an OFFSET_FOR_EPOCH round while truncating, else
        a FETCH at the log end."""
        sock = self._socket(fetch.leader)
        if sock is None:
            self._failed(fetch, now, SluiceError(f"leader broker {fetch.leader} is not "
                                                 "registered"))
            return
        replica = fetch.replica
        log = replica.log
        corr = next(self._corr) & 0xFFFFFFFF
        fetch.corr, fetch.offset = corr, log.end_offset
        fetch.deadline = now + self._wait_ms / 1000 + _ANSWER_TIMEOUT_S
        self._in_flight[corr] = fetch
        entries = log.epochs.entries
        fetch.asking = fetch.truncating and bool(entries)
        if fetch.asking:
            request = protocol.encode_offset_for_epoch(corr, replica.topic, replica.partition,
                                                       entries[-1][0])
        else:
            fetch.truncating = False
            request = protocol.encode_fetch(
                corr, replica.topic, replica.partition, fetch.offset,
                self.config.replica_fetch_max_bytes, self.config.replica_fetch_min_bytes,
                self._wait_ms,
                replica_id=self.config.broker_id, leader_epoch=fetch.epoch)
        try:
            sock.send(request, zmq.NOBLOCK)
        except zmq.Again:
            del self._in_flight[corr]
            fetch.corr = None
            self._failed(fetch, now, SluiceError(f"the socket to broker {fetch.leader} is "
                                                 "full"))

    def _socket(self, leader: int) -> zmq.Socket | None:
        """The DEALER to ``leader``'s current replica endpoint (a new one when it moved)."""
        info = self.logs.view.brokers().get(leader) if self.logs.view else None
        if info is None:
            return None
        known = self._by_leader.get(leader)
        if known is not None and known[0] == info.replica_endpoint:
            return known[1]
        if known is not None:
            self._close(known[1])
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        for option, value in self._curve.items():     # a secured cluster: this broker's key
            sock.setsockopt(option, value)
        sock.connect(info.replica_endpoint)
        self._by_leader[leader] = (info.replica_endpoint, sock)
        self.sockets[sock] = leader
        if self.poller is not None:
            self.poller.register(sock, zmq.POLLIN)
        return sock

    def receive(self, sock: zmq.Socket) -> None:
        """Take every answer queued on ``sock`` and append what it brought."""
        now = time.monotonic()
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            header = frames[0].bytes
            if len(header) < protocol.RESPONSE.size:
                self.errors.task_failed("replica_fetch", SluiceError(
                    f"an answer of {len(header)} bytes from broker {self.sockets.get(sock)}"))
                continue
            fetch = self._in_flight.pop(protocol.RESPONSE.unpack_from(header)[0], None)
            if fetch is None or self._fetches.get(fetch.replica.key) is not fetch:
                continue      # an answer given up on, or for a role left since
            fetch.corr = None
            try:
                if fetch.asking:
                    self._epoch_answered(fetch, header)
                else:
                    self._answered(fetch, header, frames)
            except CorruptMessage as exc:
                self._cannot_copy(fetch, now, exc)
                continue
            except SluiceError as exc:
                self._failed(fetch, now, exc)
                continue
            fetch.backoff = 0.0
            self._send(fetch, now)

    def _answered(self, fetch: _Fetch, header: bytes, frames: list) -> None:
        replica = fetch.replica
        try:
            _, (hw, _log_start) = protocol.decode_response(header, protocol.FETCH_REPLY)
        except (NotLeader, FencedLeaderEpoch):
            self.replicas.reread(replica.key)
            raise
        except OffsetOutOfRange as exc:
            self._out_of_range(fetch, exc)
            raise
        except InvalidOffset:
            fetch.truncating = True    # the fetch offset is inside a message of the leader's
            raise
        log = replica.log
        if log.end_offset != fetch.offset:
            return            # the log was cut or reset meanwhile: fetch again from its end
        data = frames[1].buffer if len(frames) > 1 else b""
        bad = None
        markers: list[int] = []     # a compacted stretch of the leader's log: copied as is
        tiling = protocol.decode_checksums(frames[4].buffer) if len(frames) > 4 else []
        checked, count, sums = append_checksums.verified(data, tiling) if tiling else (0, 0, [])
        stats = self.logs.stats
        stats["replica_checksummed_messages"] += count
        if checked < len(data):     # bytes no matching checksum covers: walk every message
            rest = bytes(data[checked:])       # one copy (the module docstring)
            try:
                walked = message.validate_set(rest, self.config.log.max_message_bytes, markers)
            except message.InvalidMessage as exc:
                bad, walked = exc, exc.valid_count
                rest = rest[:exc.position]
                markers = [m for m in markers if m < exc.position]
            if len(rest) and not markers:   # an entry says "messages only": none with markers
                sums.append((checked, checked + len(rest), walked, zlib.crc32(rest)))
            markers = [checked + m for m in markers]
            count += walked
            stats["replica_walked_messages"] += walked
            data = data[:checked + len(rest)]
        if len(data):
            self.logs.append(self.logs.route(replica.topic, replica.partition), [data], count,
                             markers=markers, checksums=sums)
            self._copy_epochs(replica, fetch.offset, frames[2].bytes if len(frames) > 2 else b"")
            if len(frames) > 3:      # the producers' sets in these bytes (producer_state.py)
                self.logs.copied_sets(replica.topic, replica.partition,
                                      protocol.decode_sets(frames[3].bytes), fetch.offset)
        replica.hw = min(hw, log.end_offset)
        if bad is not None:
            raise CorruptMessage(f"the message at offset {log.end_offset} that broker "
                                 f"{fetch.leader} sent is invalid: {bad}")
        fetch.stuck_at = None

    def _copy_epochs(self, replica: Replica, offset: int, frame: bytes) -> None:
        """Record the leader's epoch entries (frame 2) newer than this log's latest that
        start below its new end: the bytes just appended are the leader's, so its entries
        say which epoch wrote them."""
        epochs, end = replica.log.epochs, replica.log.end_offset
        for epoch, start in protocol.decode_epochs(frame):
            if start < end and epoch > epochs.latest_epoch:
                epochs.assign(epoch, start)

    def _epoch_answered(self, fetch: _Fetch, header: bytes) -> None:
        """One truncation round: cut where the leader's answer says; done when it cuts
        nothing."""
        replica = fetch.replica
        try:
            _, (found, leader_end) = protocol.decode_response(header, protocol.EPOCH_ENTRY)
        except (NotLeader, FencedLeaderEpoch):
            self.replicas.reread(replica.key)
            raise
        log = replica.log
        if log.end_offset != fetch.offset:
            return
        cut_at = truncation_offset(log.epochs.entries, log.end_offset, found, leader_end)
        if cut_at >= log.end_offset:
            fetch.truncating = False
            return
        messages, nbytes = log.truncate_to(cut_at)
        self.logs.truncated(replica.topic, replica.partition, cut_at)
        replica.hw = min(replica.hw, log.end_offset)
        stats, mine = self.logs.stats, self.logs.partition_stats[replica.key]
        for counter in (stats, mine):
            counter["truncated_messages"] += messages
            counter["truncated_bytes"] += nbytes
        logger.warning("%s/%d: truncated to offset %d by leader epoch (leader %d answered "
                       "epoch %d ending at %d): %d message(s), %d byte(s) the leader's log does "
                       "not hold in the same epoch",
                       replica.topic, replica.partition, cut_at, fetch.leader, found,
                       leader_end, messages, nbytes)

    def _out_of_range(self, fetch: _Fetch, exc: OffsetOutOfRange) -> None:
        """Below the leader's log start (its ``resume_offset`` past this log's end): restart
        the log there; else this log is past the leader's end: truncate again."""
        replica = fetch.replica
        log = replica.log
        if exc.resume_offset is not None and exc.resume_offset > log.end_offset:
            logger.warning("%s/%d: the leader's log starts at %d, past this log's end %d: "
                           "restarting the log there", replica.topic, replica.partition,
                           exc.resume_offset, log.end_offset)
            log.reset_to(exc.resume_offset)
            self.logs.truncated(replica.topic, replica.partition, exc.resume_offset, reset=True)
            replica.hw = min(replica.hw, log.end_offset)
        else:
            fetch.truncating = True

    def _cannot_copy(self, fetch: _Fetch, now: float, exc: CorruptMessage) -> None:
        """Stop the partition at a message it cannot copy; probe again after CORRUPT_RETRY_S
        (the module docstring)."""
        replica = fetch.replica
        offset = replica.log.end_offset
        fetch.retry_at = now + CORRUPT_RETRY_S
        for counter in (self.logs.stats, self.logs.partition_stats[replica.key]):
            counter["replica_fetch_corrupt"] += 1
        if fetch.stuck_at == offset:
            return
        fetch.stuck_at = offset
        logger.error("%s/%d: cannot copy the message at offset %d from leader %d (%s): this "
                     "replica stops there and stays out of the ISR, asking again every %.0f s "
                     "or when the leader changes; repair the leader's log or move leadership",
                     replica.topic, replica.partition, offset, fetch.leader, exc,
                     CORRUPT_RETRY_S)

    def _failed(self, fetch: _Fetch, now: float, exc: SluiceError) -> None:
        fetch.backoff = min(RETRY_MAX_S, 2 * fetch.backoff or RETRY_FIRST_S)
        fetch.retry_at = now + fetch.backoff
        self.errors.task_failed("replica_fetch", exc, fetch.backoff)

    def _close(self, sock: zmq.Socket) -> None:
        if self.poller is not None:
            self.poller.unregister(sock)
        self.sockets.pop(sock, None)
        sock.close(linger=0)

    def close(self) -> None:
        for _, sock in list(self._by_leader.values()):
            self._close(sock)
        self._by_leader.clear()
