"""The Fetcher: one long-poll fetch in flight per partition, answers taken as they come.

A consumer that owns several partitions must not wait on an idle one while another has data,
nor spin on empty replies. The fetcher keeps exactly one fetch outstanding per partition (the
broker parks it until data arrives or max_wait passes) and returns as soon as any reply brings
messages or an error. A reply for a position the consumer no longer holds (after a seek or a
rebalance) is dropped.

A reply whose set fails a CRC part-way keeps the good messages before the bad one: the result
carries them, and the consumer's next fetch, at the bad message, gets the broker's verdict
there (an error that says where readable data resumes). A failed fetch is not sent again for
the same offset before a back-off (``RETRY_S`` for a retriable error, ``ERROR_BACKOFF_S`` for
one the application must hear about), so an error can never turn into a hot loop.

A fetch answered NOT_LEADER or FENCED_LEADER_EPOCH tells the pool (``BrokerPool.leader_failed``
re-reads the view if it still names that broker) and is, like any retriable error, sent again
for the same offset after ``RETRY_S``, to whichever broker leads by then: a leader change
neither resets nor skips a position. When the view's leader changes, fetches parked at the
former leader are forgotten and sent to the new one at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import zmq

from broker import message, protocol
from broker.message import Message
from clients.brokers import BrokerPool

TP = tuple[str, int]
RETRY_S = 0.2
ERROR_BACKOFF_S = 1.0


@dataclass
class FetchResult:
    """One fetch reply for ``offset``: the whole messages that checked out, or the error."""

    offset: int
    messages: list[Message] = field(default_factory=list)
    error: protocol.SluiceError | None = None
    next_offset: int | None = None    # where the next fetch goes (past gaps of a compacted log)


@dataclass
class _Pending:
    tp: TP
    offset: int
    sent_at: float


class Fetcher:
    def __init__(self, pool: BrokerPool, max_bytes: int = 1 << 20, min_bytes: int = 1,
                 max_wait_ms: int = 500, request_timeout_ms: int = 5000):
        self.pool = pool
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self.max_wait_ms = max_wait_ms
        self.request_timeout_s = request_timeout_ms / 1000
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._busy: dict[TP, tuple[str, int]] = {}
        self._retry_at: dict[TP, tuple[int, float]] = {}
        self.high_watermarks: dict[TP, int] = {}
        self.expired = 0
        self._view_changed = False
        pool.view.add_listener(self._on_view_change)

    def poll(self, positions: dict[TP, int], timeout_ms: float) -> dict[TP, FetchResult]:
        """Results by partition from whatever replies arrive within timeout_ms (empty replies
        included when they come, but they do not end the wait)."""
        now = time.monotonic()
        if self._view_changed:
            self._view_changed = False
            self._leave_former_leaders()
        for tp, offset in positions.items():
            if tp not in self._busy and self._may_send(tp, offset, now):
                self._send(tp, offset)
        results: dict[TP, FetchResult] = {}
        deadline = now + timeout_ms / 1000
        while True:
            self._receive(positions, results, deadline)
            if (any(r.messages or r.error for r in results.values())
                    or time.monotonic() >= deadline or not self._pending):
                break
        self._expire(time.monotonic())
        if not self._pending and not results:
            time.sleep(max(0.0, min(deadline - time.monotonic(), 0.05)))
        return results

    def in_flight(self) -> set[TP]:
        """Partitions with a fetch outstanding."""
        return set(self._busy)

    def forget(self, tp: TP) -> None:
        """Stop caring about a partition's outstanding fetch (its position moved)."""
        key = self._busy.pop(tp, None)
        if key is not None:
            self._pending.pop(key, None)
        self._retry_at.pop(tp, None)

    def _on_view_change(self) -> None:
        self._view_changed = True       # kazoo's thread: poll() does the work

    def _leave_former_leaders(self) -> None:
        """Forget the fetches parked at a broker the view no longer names as their partition's
        leader, so that the same offsets are asked of the new leader now rather than after the
        old one answers or the request times out."""
        for tp, (endpoint, _) in list(self._busy.items()):
            try:
                leader = self.pool.leader(*tp).endpoint
            except protocol.SluiceError:
                continue
            if leader != endpoint:
                self.forget(tp)

    def _may_send(self, tp: TP, offset: int, now: float) -> bool:
        retry = self._retry_at.get(tp)
        return retry is None or retry[0] != offset or retry[1] <= now

    def _send(self, tp: TP, offset: int) -> None:
        topic, partition = tp
        try:
            conn = self.pool.connection(topic, partition)
        except protocol.SluiceError as exc:
            if not exc.retriable:
                raise
            self._retry_at[tp] = (offset, time.monotonic() + RETRY_S)
            return
        corr = conn.next_id()
        conn.send([protocol.encode_fetch(corr, topic, partition, offset, self.max_bytes,
                                         self.min_bytes, self.max_wait_ms)])
        key = (conn.endpoint, corr)
        self._pending[key] = _Pending(tp, offset, time.monotonic())
        self._busy[tp] = key

    def _receive(self, positions, results, deadline: float) -> None:
        poller = zmq.Poller()
        sockets = {}
        for endpoint in {endpoint for endpoint, _ in self._pending}:
            conn = self.pool.existing(endpoint)
            if conn is not None:
                poller.register(conn.socket, zmq.POLLIN)
                sockets[conn.socket] = conn
        if not sockets:
            return
        wait_ms = max(0, (deadline - time.monotonic()) * 1000)
        for sock, _ in poller.poll(min(wait_ms, 100)):
            conn = sockets[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_reply(conn.endpoint, frames, positions, results)

    def _on_reply(self, endpoint: str, frames, positions, results) -> None:
        corr = protocol.RESPONSE.unpack_from(frames[0].buffer)[0]
        pending = self._pending.pop((endpoint, corr), None)
        if pending is None:
            return
        tp, offset = pending.tp, pending.offset
        if self._busy.get(tp) == (endpoint, corr):
            del self._busy[tp]
        if positions.get(tp) != offset:
            return
        try:
            _, (high_watermark, _start) = protocol.decode_response(frames[0].buffer,
                                                                   protocol.FETCH_REPLY)
        except protocol.SluiceError as exc:
            self.pool.leader_failed(tp[0], tp[1], endpoint, exc)
            self._failed(tp, offset, exc, results)
            return
        self.high_watermarks[tp] = high_watermark
        got: list[Message] = []
        next_offset = None
        if len(frames) > 1 and len(frames[1]):
            try:
                message.decode_into(got, frames[1].buffer, tp[0], tp[1], offset)
                next_offset = protocol.fetch_next_offset(frames[0].buffer, offset,
                                                         len(frames[1]))
            except message.InvalidMessage as bad:
                if not got:
                    self._failed(tp, offset, protocol.CorruptMessage(
                        f"{tp[0]}/{tp[1]}: the message at offset {bad.position} failed its "
                        f"check ({bad.reason}) in the fetched set"), results)
                    return
        results[tp] = FetchResult(offset, got, next_offset=next_offset)

    def _failed(self, tp: TP, offset: int, exc: protocol.SluiceError, results) -> None:
        results[tp] = FetchResult(offset, error=exc)
        self._retry_at[tp] = (offset, time.monotonic() + (RETRY_S if exc.retriable
                                                          else ERROR_BACKOFF_S))

    def _expire(self, now: float) -> None:
        limit = self.max_wait_ms / 1000 + self.request_timeout_s
        for key, pending in list(self._pending.items()):
            if now - pending.sent_at > limit:
                self.expired += 1
                del self._pending[key]
                if self._busy.get(pending.tp) == key:
                    del self._busy[pending.tp]
                conn = self.pool.existing(key[0])
                if conn is not None:
                    conn.reset()
                self.pool.view.refresh()
