"""Request handlers: one per request type, as Kafka 0.7's KafkaRequestHandlers.

The server (broker/server.py) receives a request, checks its size, parses its header and calls
the handler its ``HANDLERS`` table names for the api. A handler checks the rest of its request,
makes one call into the LogManager (a fetch that must wait goes to the purgatory) and answers on
the ROUTER; a SluiceError it raises is answered by the server with the error's code.

| api      | handler  | the call                                 | answered                          |
| -------- | -------- | ---------------------------------------- | --------------------------------- |
| PRODUCE  | produce  | LogManager.route (the set validated now) | at the end of the turn            |
| FETCH    | fetch    | LogManager.log, else Purgatory.park      | now, or when the purgatory lets go |
| OFFSETS  | offsets  | Log.offset_before                        | now                               |
| METADATA | metadata | LogManager.metadata_rows                 | now                               |
| OFFSET_FOR_EPOCH | offset_for_epoch | LeaderEpochs.end_offset_for | now                         |

Produce requests are validated as they come (one walk over the set, CRCs in C) and written at
the end of the turn with one write per log for all of them, so a thousand one-message requests
cost one write: ``write_produced`` for the acks=1 requests the ROUTER brought (each answered
with the offsets where it lies in that write), ``write_unacked`` for the acks=0 ones of the
PULL socket (nobody waits for an answer there: errors are counted and logged).
"""
from __future__ import annotations

import json
import time

import zmq

from broker import message, protocol
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.log import Log
from broker.log_manager import LogManager, Route
from broker.long_poll import Purgatory, Waiter, satisfied
from broker.protocol import Api, Request
from coordinator.errors import (CorruptMessage, MalformedRequest, MessageTooLarge,
                                OffsetOutOfRange, SluiceError)

# pyzmq's Cython send, without zmq.Socket.send's Python wrapper (draft-API options only).
_zmq_send = getattr(zmq.backend, "Socket", zmq.Socket).send
_COPY_BELOW = 65536      # a fetched set smaller than this is copied into its frame (cheaper)


class RequestHandlers:
    """The handlers of one broker, answering on its ROUTER socket."""

    def __init__(self, config: BrokerConfig, logs: LogManager, purgatory: Purgatory,
                 errors: ErrorCounts, router: zmq.Socket, endpoints: dict):
        self.config = config
        self.logs = logs
        self.purgatory = purgatory
        self.errors = errors
        self.router = router
        self.endpoints = endpoints
        self._visible_at_once = not config.log.visible_after_flush

    # --- the request types (the server's HANDLERS) -----------------------------------------

    def produce(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        """Validate the set now; ``write_produced`` writes and answers it with the turn's."""
        if len(frames) != 3:
            raise MalformedRequest("produce needs a header and a message set")
        route = self.logs.route(request.topic, request.partition)
        count = self.validate(route, frames[2])
        turn.setdefault(route, []).append(
            (identity, request.correlation_id, request, frames[2], count))

    def fetch(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        """Answer now when enough is visible or the fetch may not wait; else park it."""
        _one_frame(request, frames)
        log = self.logs.log(request.topic, request.partition)
        if min(request.max_bytes, self.config.max_fetch_bytes) <= 0:
            raise MalformedRequest("max_bytes must be positive")
        _check_in_log(request, log)
        waiter = Waiter(identity, request, log, 0.0)
        if request.max_wait_ms == 0 or satisfied(waiter, log.visible_end):
            self.answer_fetch(waiter)
            return
        wait_ms = min(request.max_wait_ms, self.config.max_wait_ms_limit)
        waiter.deadline = time.monotonic() + wait_ms / 1000
        self.purgatory.park(waiter)
        if satisfied(waiter, log.visible_end):
            self.wake([log])  # a flush ended since the check, and saw no waiter

    def offsets(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        _one_frame(request, frames)
        offset = self.logs.log(request.topic, request.partition).offset_before(request.time)
        self.router.send_multipart([identity, protocol.encode_response(
            request.correlation_id, protocol.OFFSETS_REPLY.pack(offset))])

    def offset_for_epoch(self, identity: bytes, request: Request, frames: list,
                         turn: dict) -> None:
        """A follower asks where its latest epoch ends on this log (KIP-101): the largest epoch
        known at or before it and that epoch's end (leader_epochs.LeaderEpochs.end_offset_for)."""
        _one_frame(request, frames)
        log = self.logs.log(request.topic, request.partition)
        # (the leader check goes here: only the partition's leader answers)
        found, end = log.epochs.end_offset_for(request.leader_epoch, log.end_offset)
        self.router.send_multipart([identity, protocol.encode_response(
            request.correlation_id, protocol.EPOCH_ENTRY.pack(found, end))])

    def metadata(self, identity: bytes, request: Request, frames: list, turn: dict) -> None:
        _one_frame(request, frames)
        self.router.send_multipart([identity, protocol.encode_metadata_response(
            request.correlation_id, json.dumps(self.describe()))])

    def describe(self) -> dict:
        """The METADATA document: this broker, its partitions, its error counts and counters."""
        return {**self.endpoints, "partitions": self.logs.metadata_rows(),
                "errors": self.errors.snapshot(), "stats": dict(self.logs.stats)}

    # --- produce: the writes at the end of a turn ------------------------------------------

    def validate(self, route: Route, message_set) -> int:
        """The number of messages in a produce request's set; the typed error when it is bad."""
        try:
            return message.validate_set(message_set, self.config.log.max_message_bytes)
        except message.InvalidMessage as bad:
            raise rejection(route, bad) from None

    def write_produced(self, turn: dict[Route, list]) -> None:
        """Write the ROUTER's produce requests of a turn, one write per log, and answer each
        (sequenced ones judged first: LogManager.append_sequenced)."""
        router = self.router
        for route, requests in turn.items():
            for identity, corr, acks, outcome in self.logs.append_sequenced(route, requests):
                if type(outcome) is not tuple:
                    self.answer_error(identity, corr, outcome, protocol.PRODUCE_REPLY)
                elif acks:
                    _zmq_send(router, identity, zmq.SNDMORE)
                    _zmq_send(router, protocol.encode_response(
                        corr, protocol.PRODUCE_REPLY.pack(*outcome)))
            self._appended(route.log)

    def unacked_route(self, header: bytes) -> Route:
        """Where an acks=0 request with this header goes; raises when the header is bad."""
        request = protocol.decode_request(header)
        if request.api is not Api.PRODUCE:
            raise MalformedRequest("only produce requests go to the produce socket")
        return self.logs.route(request.topic, request.partition)

    def write_unacked(self, route: Route, sets: list) -> None:
        """Validate and append the acks=0 MessageSets of one log with one walk and one write.

        Should the joined walk hit a bad entry, each set is judged alone so that only the bad
        requests are dropped (and counted), and the good ones still go in with one write.
        """
        data = sets[0] if len(sets) == 1 else b"".join(sets)
        try:
            count = message.validate_set(data, self.config.log.max_message_bytes)
        except message.InvalidMessage:
            good, count, data = [], 0, None
            for one in sets:
                try:
                    count += self.validate(route, one)
                    good.append(one)
                except SluiceError as exc:
                    self.errors.request_failed(exc, acks=0)
            if not good:
                return
            sets = good
        try:
            self.logs.append(route, sets, count, data)
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=0)
            return
        self._appended(route.log)

    def _appended(self, log: Log) -> None:
        """Messages visible at once may satisfy parked fetches (else the flush wakes them)."""
        if self._visible_at_once and self.purgatory.waiting_on(log):
            self.wake([log])

    # --- fetch answers ---------------------------------------------------------------------

    def wake(self, logs) -> None:
        """Answer the parked fetches that ``logs`` now satisfy."""
        for waiter in self.purgatory.ready(logs):
            self.answer_fetch(waiter)

    def expire(self, now: float) -> None:
        """Answer the parked fetches whose deadline passed, with what is visible."""
        for waiter in self.purgatory.expired(now):
            self.answer_fetch(waiter)

    def answer_fetch(self, waiter: Waiter) -> None:
        request, log = waiter.request, waiter.log
        corr = request.correlation_id
        try:
            if request.offset > log.visible_end:
                data = b""  # appended but not yet flushed: nothing visible at that offset
            else:
                data = log.read(request.offset, min(request.max_bytes,
                                                    self.config.max_fetch_bytes))
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=1)
            self.router.send_multipart([waiter.identity, protocol.encode_response(
                corr, error=exc, fill=protocol.FETCH_REPLY), b""])
            return
        self.logs.fetched(request.topic, request.partition, len(data))
        header = protocol.encode_response(corr, protocol.FETCH_REPLY.pack(log.visible_end,
                                                                         log.start_offset))
        self.router.send_multipart([waiter.identity, header, data],
                                   copy=len(data) < _COPY_BELOW)

    def answer_error(self, identity: bytes, corr: int, exc: SluiceError, fill) -> None:
        """Count ``exc`` and answer it; ``fill``: the api's reply fields, sent zeroed."""
        self.errors.request_failed(exc, acks=1)
        self.router.send_multipart([identity, protocol.encode_response(corr, error=exc,
                                                                       fill=fill)])


def rejection(route: Route, bad: message.InvalidMessage) -> SluiceError:
    """The wire error for a produce request's set that failed validation."""
    if bad.reason == "too_large":
        return MessageTooLarge(str(bad))
    return CorruptMessage(f"rejected message set for {route.topic}/{route.partition}: {bad}")


def _one_frame(request: Request, frames: list) -> None:
    if len(frames) != 2:
        raise MalformedRequest(f"{request.api.name.lower()} takes one frame")


def _check_in_log(request: Request, log: Log) -> None:
    """A fetch may start anywhere in ``start_offset .. end_offset`` (past the visible end it
    waits or gets nothing); outside, OffsetOutOfRange, with the start to resume at below it."""
    if not log.start_offset <= request.offset <= log.end_offset:
        below = request.offset < log.start_offset
        raise OffsetOutOfRange(
            f"offset {request.offset} is outside {request.topic}/{request.partition}'s log "
            f"[{log.start_offset}, {log.end_offset}]"
            + (f"; it resumes at {log.start_offset}" if below else ""),
            resume_offset=log.start_offset if below else None)
