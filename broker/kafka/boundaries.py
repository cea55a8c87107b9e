"""Kafka's "last consumed + 1" to a sluice message boundary, for a partition led elsewhere.

A Kafka client commits the offset after the last record it consumed, its byte offset + 1
(KAFKA_COMMON.md: each record is one sluice message at its own byte offset). The group
coordinator stores the message boundary that means, so native consumers and ``sluice groups
describe`` see real offsets. When this broker leads the partition it reads its own log
(broker/kafka/records.py's ``resolve_offset``, the one rule); when another broker leads it,
this module asks that broker with a native FETCH, from the loop without
blocking: ``ask`` sends, ``poll`` (called every loop turn) takes the answers, and each lookup's
``done(boundary | None, error | None)`` is called from there.

A lookup of x asks for the message at x - 1: when one starts there, the boundary is the end of
that message. Otherwise x itself must be a boundary: a second fetch at x tells (a read there
answers; an empty one only at the high watermark, which the reply carries: a leader answers
empty past it too, where ``resolve_offset`` raises). Anything else is an error for the caller
(OFFSET_OUT_OF_RANGE on the wire): the same answers as ``resolve_offset``, over the wire.
"""
from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from broker import protocol
from broker.kafka.peer_sockets import PeerSockets
from coordinator.errors import InvalidOffset, OffsetOutOfRange, RequestTimedOut, SluiceError

logger = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 5.0
POLL_EVERY_S = 0.002       # the loop's deadline while a lookup is out
_SIZE = struct.Struct(">I")
_PROBE_BYTES = 16          # a message comes back whole however small max_bytes is


def message_end(offset: int, data) -> int | None:
    """The end of the message that ``data`` (a fetch at ``offset``) starts with; None when
    ``data`` holds none.

    >>> message_end(100, b"\\x00\\x00\\x00\\x0b" + bytes(11))
    115
    >>> message_end(100, b"") is None
    True
    """
    if len(data) < _SIZE.size:
        return None
    return offset + _SIZE.size + _SIZE.unpack_from(data)[0]


@dataclass
class _Lookup:
    endpoint: str
    topic: str
    partition: int
    offset: int
    probing_before: bool
    done: Callable
    deadline: float


class RemoteBoundaries:
    """Boundary lookups on other brokers, one DEALER per leader endpoint."""

    def __init__(self, context: zmq.Context | None = None):
        self.peers = PeerSockets(context)
        self._pending: dict[tuple[str, int], _Lookup] = {}

    def waiting(self) -> bool:
        return bool(self._pending)

    def ask(self, endpoint: str, topic: str, partition: int, offset: int,
            done: Callable[[int | None, SluiceError | None], None], now: float) -> None:
        lookup = _Lookup(endpoint, topic, partition, offset, offset > 0, done,
                         now + LOOKUP_TIMEOUT_S)
        self._send(lookup)

    def poll(self, now: float) -> float | None:
        """Take every answer that arrived; time out lookups past their deadline."""
        for endpoint, frames in self.peers.answers():
            self._answered(endpoint, frames)
        for key, lookup in list(self._pending.items()):
            if lookup.deadline <= now:
                del self._pending[key]
                self._drop(lookup.endpoint)
                lookup.done(None, RequestTimedOut(
                    f"broker {lookup.endpoint} did not answer a boundary lookup of "
                    f"{lookup.topic}/{lookup.partition} at {lookup.offset}"))
        return now + POLL_EVERY_S if self._pending else None

    def close(self) -> None:
        self.peers.close()

    def _send(self, lookup: _Lookup) -> None:
        at = lookup.offset - 1 if lookup.probing_before else lookup.offset
        corr = self.peers.send(lookup.endpoint, lambda corr: protocol.encode_fetch(
            corr, lookup.topic, lookup.partition, at, _PROBE_BYTES))
        self._pending[(lookup.endpoint, corr)] = lookup

    def _answered(self, endpoint: str, frames: list) -> None:
        try:
            corr, (hw, _) = protocol.decode_response(frames[0], protocol.FETCH_REPLY)
            error = None
        except SluiceError as exc:
            corr, error = getattr(exc, "correlation_id", None), exc
        lookup = self._pending.pop((endpoint, corr), None)
        if lookup is None:
            return
        if lookup.probing_before:
            end = None if error is not None else message_end(lookup.offset - 1, frames[1])
            if end is not None:
                lookup.done(end, None)
            elif error is None or isinstance(error, InvalidOffset) or not error.retriable:
                lookup.probing_before = False
                self._send(lookup)
            else:
                lookup.done(None, error)
            return
        if error is None and not len(frames[1]) and lookup.offset != hw:
            error = OffsetOutOfRange(    # past the consumer's end: nothing readable there yet
                f"offset {lookup.offset} of {lookup.topic}/{lookup.partition} is past the "
                f"high watermark {hw} of broker {lookup.endpoint}")
        lookup.done(lookup.offset if error is None else None, error)

    def _drop(self, endpoint: str) -> None:
        """Forget a silent broker's socket (its late answers must not match a new lookup)."""
        self.peers.drop(endpoint)
        for key in [k for k in self._pending if k[0] == endpoint]:
            lookup = self._pending.pop(key)
            self._send(lookup)
