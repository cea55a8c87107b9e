"""A Kafka group's offsets in the log store: native OFFSET_COMMIT / OFFSET_FETCH from the loop.

The coordinator of a Kafka group (coordinator/group_coordinator_choice.py) is not, in general,
the leader of the group's partition of ``__consumer_offsets``; it sends each commit and fetch to
that leader as a native request (itself included: its own ROUTER answers on a later turn), on a
DEALER per endpoint, without blocking the loop. ``commit`` and ``fetch`` return a ``Call``
whose ``ready()`` and ``exception`` read as kazoo's asynchronous results do, so
broker/kafka/group_apis.py follows both kinds of write the same way. A retriable answer
(NOT_COORDINATOR while leadership moves or a new leader loads, a timeout) is sent again to
whoever leads then, until ``CALL_TIMEOUT_S``.
"""
from __future__ import annotations

import logging
from typing import Callable

import zmq

from broker import protocol
from broker.kafka.peer_sockets import PeerSockets
from coordinator.errors import RequestTimedOut, SluiceError

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0       # a commit or fetch given up on (the client retries)
ATTEMPT_S = 2.0             # one request unanswered this long is sent again
RETRY_S = 0.05


class Call:
    """One OFFSET_COMMIT or OFFSET_FETCH on its way; ``value``: the committed entries of a
    fetch, ``exception``: the error it ended with."""

    def __init__(self, header_for: Callable[[int], bytes], fields, deadline: float):
        self.header_for = header_for
        self.fields = fields
        self.deadline = deadline
        self.value = None
        self.exception: BaseException | None = None
        self.done = False
        self.retry_at = 0.0
        self.sent_at = 0.0

    def ready(self) -> bool:
        return self.done


class RemoteOffsets:
    """Offset requests to the leaders of ``__consumer_offsets`` partitions."""

    def __init__(self, leader_of: Callable[[str], str], context: zmq.Context | None = None):
        """``leader_of(group)``: the native endpoint of the group's offsets leader (raises
        the typed error when there is none)."""
        self.leader_of = leader_of
        self.peers = PeerSockets(context)
        self._out: dict[tuple[str, int], tuple[str, Call]] = {}
        self._waiting: list[tuple[str, Call]] = []      # to send (again) at retry_at

    def waiting(self) -> bool:
        return bool(self._out or self._waiting)

    def commit(self, group: str, offsets: dict, now: float) -> Call:
        call = Call(lambda corr: protocol.encode_offset_commit(corr, group, offsets),
                    protocol.PRODUCE_REPLY, now + CALL_TIMEOUT_S)
        self._send(group, call, now)
        return call

    def fetch(self, group: str, partitions: list, now: float) -> Call:
        call = Call(lambda corr: protocol.encode_offset_fetch(corr, group, partitions), None,
                    now + CALL_TIMEOUT_S)
        self._send(group, call, now)
        return call

    def poll(self, now: float) -> None:
        for endpoint, frames in self.peers.answers():
            self._answered(endpoint, frames, now)
        for key, (group, call) in list(self._out.items()):
            if now - call.sent_at >= ATTEMPT_S:
                del self._out[key]
                self._again(group, call, RequestTimedOut(
                    f"broker {key[0]} did not answer an offsets request of group {group}"), now)
        waiting, self._waiting = self._waiting, []
        for group, call in waiting:
            if call.retry_at <= now:
                self._send(group, call, now)
            else:
                self._waiting.append((group, call))

    def close(self) -> None:
        self.peers.close()

    def _send(self, group: str, call: Call, now: float) -> None:
        try:
            endpoint = self.leader_of(group)
        except SluiceError as exc:
            self._again(group, call, exc, now)
            return
        corr = self.peers.send(endpoint, call.header_for)
        call.sent_at = now
        self._out[(endpoint, corr)] = (group, call)

    def _answered(self, endpoint: str, frames: list, now: float) -> None:
        if len(frames[0]) < protocol.RESPONSE.size:
            return
        corr = protocol.RESPONSE.unpack_from(frames[0])[0]
        found = self._out.pop((endpoint, corr), None)
        if found is None:
            return
        group, call = found
        try:
            protocol.decode_response(frames[0], call.fields)
            error = None
        except SluiceError as exc:
            error = exc
        if error is not None:
            self._again(group, call, error, now)
            return
        if call.fields is None:
            call.value = protocol.decode_committed(frames[1] if len(frames) > 1 else b"")
        call.done = True

    def _again(self, group: str, call: Call, error: SluiceError, now: float) -> None:
        """Retry a retriable failure while the call's deadline lasts; else end with it."""
        if error.retriable and now + RETRY_S < call.deadline:
            call.retry_at = now + RETRY_S
            self._waiting.append((group, call))
            return
        call.exception = error
        call.done = True
