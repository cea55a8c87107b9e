"""The follower's replica fetcher: copy each followed partition from its leader, byte for byte.

One DEALER socket per leader broker (its endpoint from the broker registry), polled by the
broker's own request loop, so that what is fetched is appended on the loop's thread through
the same ``LogManager.append`` as a produce request: one write per fetched set, its message
count from ``message.validate_set`` (one walk, CRCs in C), no Python per message. The fetched
bytes land at the same offsets as on the leader, since the fetch offset is the follower's log
end.

Each followed partition has at most one FETCH in flight: ``replica_id`` = this broker,
``leader_epoch`` = the epoch it follows, ``offset`` = its log end, a long poll of
``replica_fetch_wait_max_ms`` for up to ``replica_fetch_max_bytes``. The answer's high
watermark field tells the follower its leader's high watermark (kept, bounded by its own end,
for METADATA and for the day it leads). What goes wrong:

- NOT_LEADER or FENCED_LEADER_EPOCH: one of the two has a stale state; the follower reads its
  state node again (``ReplicaManager.reread``) and tries again after a back-off;
- OFFSET_OUT_OF_RANGE below the leader's log start (a lost disk, or retention overtook the
  follower): [EPOCH] restart the log at the leader's start (``Log.reset_to``);
- no answer within the long poll plus ``_ANSWER_TIMEOUT_S`` (a stopped leader): forget that
  request (a late answer is recognised by its correlation id and dropped) and ask again after
  a back-off. Every failure is counted (``replica_fetch_failed``) and logged at most every few
  seconds; none ends the loop.
"""
from __future__ import annotations

import itertools
import logging
import time

import zmq

from broker import message, protocol
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.log_manager import LogManager
from broker.replica_manager import Replica, ReplicaManager
from coordinator.errors import (FencedLeaderEpoch, NotLeader, OffsetOutOfRange, SluiceError)

logger = logging.getLogger(__name__)

_ANSWER_TIMEOUT_S = 5.0  # beyond the long poll, before a fetch counts as lost
RETRY_FIRST_S = 0.1      # back-off after a failed fetch, doubling up to
RETRY_MAX_S = 2.0


class _Fetch:
    """One followed partition: whom it fetches from, in which epoch, what is in flight."""

    __slots__ = ("replica", "leader", "epoch", "corr", "offset", "deadline", "retry_at",
                 "backoff")

    def __init__(self, replica: Replica):
        self.replica = replica
        self.leader = replica.leader
        self.epoch = replica.epoch
        self.corr: int | None = None
        self.offset = 0
        self.deadline = 0.0
        self.retry_at = 0.0
        self.backoff = 0.0


class ReplicaFetcher:
    """The fetches of the partitions this broker follows, on sockets the loop polls."""

    def __init__(self, config: BrokerConfig, context: zmq.Context, logs: LogManager,
                 replicas: ReplicaManager, errors: ErrorCounts):
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
        self._truncate_before_fetching(replica)

    def _truncate_before_fetching(self, replica: Replica) -> None:
        """[EPOCH] OFFSET_FOR_EPOCH(latest epoch) to the leader and ``Log.truncate_to`` the
        offset ``leader_epochs.truncation_offset`` decides, counted in the broker's stats."""

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
        sock = self._socket(fetch.leader)
        if sock is None:
            self._failed(fetch, now, SluiceError(f"leader broker {fetch.leader} is not "
                                                 "registered"))
            return
        replica = fetch.replica
        corr = next(self._corr) & 0xFFFFFFFF
        fetch.corr, fetch.offset = corr, replica.log.end_offset
        fetch.deadline = now + self._wait_ms / 1000 + _ANSWER_TIMEOUT_S
        self._in_flight[corr] = fetch
        sock.send(protocol.encode_fetch(
            corr, replica.topic, replica.partition, fetch.offset,
            self.config.replica_fetch_max_bytes, 1, self._wait_ms,
            replica_id=self.config.broker_id, leader_epoch=fetch.epoch))

    def _socket(self, leader: int) -> zmq.Socket | None:
        """The DEALER to ``leader``'s current endpoint (a new one when it moved)."""
        info = self.logs.view.brokers().get(leader) if self.logs.view else None
        if info is None:
            return None
        known = self._by_leader.get(leader)
        if known is not None and known[0] == info.endpoint:
            return known[1]
        if known is not None:
            self._close(known[1])
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(info.endpoint)
        self._by_leader[leader] = (info.endpoint, sock)
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
                self._answered(fetch, header, frames)
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
            self._out_of_range(replica, exc)
            raise
        log = replica.log
        if log.end_offset != fetch.offset:
            return            # the log was cut or reset meanwhile: fetch again from its end
        data = frames[1].buffer if len(frames) > 1 else b""
        if len(data):
            count = message.validate_set(data, self.config.log.max_message_bytes)
            self.logs.append(self.logs.route(replica.topic, replica.partition), [data], count)
            self._copy_epochs(replica, fetch.offset, frames[2].bytes if len(frames) > 2 else b"")
        replica.hw = min(hw, log.end_offset)

    def _copy_epochs(self, replica: Replica, offset: int, entries: bytes) -> None:
        """[EPOCH] The leader's epoch entries (frame 2) that start inside what was appended go
        into ``log.epochs`` (``LeaderEpochs.assign``)."""

    def _out_of_range(self, replica: Replica, exc: OffsetOutOfRange) -> None:
        """[EPOCH] Below the leader's log start (``exc.resume_offset`` past this log's end):
        ``Log.reset_to(resume_offset)``; past the leader's end: truncate first (re-read the
        state, which follows again with the truncation)."""
        self.replicas.reread(replica.key)

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
