"""The broker's sockets and its request loop.

Sockets, dispatch and storage are three things in three places, as in Kafka 0.7: this module
owns the sockets and the loop and dispatches each request on its api through ``HANDLERS``
(broker/handlers.py); the LogManager (broker/log_manager.py) owns the logs and the work on them
outside requests; parked long-polls wait in the purgatory (broker/long_poll.py).

Two ZeroMQ sockets face the clients:

- a ROUTER (``endpoint``) for requests that want a reply: produce with acks=1, fetch, offsets,
  metadata;
- a PULL (``produce_endpoint``) for fire-and-forget produce (acks=0), the paper's producer:
  no identity frames and no reply path, so the cheapest request there is.

A third, an inproc PAIR, is where the flusher thread wakes the loop when a flush made data
visible to a parked consumer fetch (a parked replica fetch reads up to the log end, which a
flush does not move: appends answer it). A follower's replica fetcher (broker/replica_fetcher.py) adds a
DEALER per leader it copies from, polled by the same loop, so that what it fetched is appended
on the loop's thread; between requests the ReplicaManager (broker/replica_manager.py) applies
the partitions' state changes and shrinks ISRs.

A request is at most ``max_request_bytes``: a bigger one (up to twice that) is refused with
MESSAGE_TOO_LARGE, and ZeroMQ's MAXMSGSIZE on both sockets (twice the bound) drops the
connection of a client that sends a bigger frame before any of it is allocated here. That
client sees no answer (a timeout) and reconnects. The bound is per frame, as ZeroMQ checks it.

One turn of the loop takes what is queued on each socket (up to a bound), then does the work
between requests: expired long-polls, then ``LogManager.maintain``. Nothing on the produce path
runs Python per message where a set can be handled at once: the produce requests of a turn are
written with one write per log. On the PULL socket a request's header is the same bytes for
every request to a partition, so it is parsed once and its bytes are the key of a route cache.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time

import zmq

from broker import protocol
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.flusher import Flusher
from broker.delayed_produce import AckPurgatory
from broker.handlers import RequestHandlers, replica_end
from broker.log_manager import LogManager, Route
from broker.long_poll import Purgatory
from broker.replica_fetcher import ReplicaFetcher
from broker.replica_manager import ReplicaManager
from broker.protocol import Api
from coordinator import zk
from coordinator.controller import Controller
from coordinator.errors import ErrorCode, MalformedRequest, MessageTooLarge, SluiceError
from coordinator.registry import BrokerInfo, BrokerRegistration

logger = logging.getLogger(__name__)

HANDLERS = {
    Api.PRODUCE: RequestHandlers.produce,
    Api.FETCH: RequestHandlers.fetch,
    Api.OFFSETS: RequestHandlers.offsets,
    Api.METADATA: RequestHandlers.metadata,
    Api.OFFSET_FOR_EPOCH: RequestHandlers.offset_for_epoch,
}

_TICK_S = 0.25
_REQUEST_DRAIN = 1000            # ROUTER requests taken per turn
_PRODUCE_DRAIN = 4096            # acks=0 requests taken per turn before the ROUTER's turn,
_PRODUCE_DRAIN_BYTES = 1 << 20   # or this many bytes of them (one buffer and one write per log)
_ROUTE_CACHE = 1024              # parsed acks=0 headers kept


class Broker:
    """One broker: its sockets and loop, its LogManager, its registration."""

    def __init__(self, config: BrokerConfig):
        self.config = config
        self.errors = ErrorCounts()
        self._unacked_routes: dict[bytes, Route] = {}
        self._stopping = threading.Event()

        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, 2 * config.max_request_bytes)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, 1000)
        self.pull.setsockopt(zmq.MAXMSGSIZE, 2 * config.max_request_bytes)
        self.endpoint = self._bind(self.router, config.port)
        self.produce_endpoint = self._bind(self.pull, 0)
        self.wake = self.context.socket(zmq.PAIR)
        wake_endpoint = f"inproc://flusher-{id(self)}"
        self.wake.bind(wake_endpoint)
        self.zk = zk.connect(config.zookeeper, session_timeout=config.session_timeout_ms / 1000)
        self.replicas = ReplicaManager(config, self.zk, self.errors)
        self.purgatory = Purgatory(end_of=self.replicas.consumer_end)
        self.replica_waiters = Purgatory(end_of=replica_end)
        flusher = Flusher(self.context, wake_endpoint, lambda: bool(self.purgatory),
                          self.errors.task_failed)
        self.registration = BrokerRegistration(self.zk, BrokerInfo(
            config.broker_id, self.endpoint, self.produce_endpoint, config.endpoint_host,
            os.getpid(), config.replica_advertised_endpoint or self.endpoint))
        self.logs = LogManager(config, self.zk, self.registration, self.errors, flusher)
        self.logs.on_open = self.replicas.add
        self.fetcher = ReplicaFetcher(config, self.context, self.logs, self.replicas,
                                      self.errors)
        self.replicas.on_follow = self.fetcher.follow
        self.controller = Controller(self.zk, config.broker_id, config.unclean_leader_election,
                                     config.leader_imbalance_check_ms)
        self.handlers = RequestHandlers(config, self.logs, self.purgatory, self.errors,
                                        self.router, {"broker": config.broker_id,
                                                      "endpoint": self.endpoint,
                                                      "produce_endpoint": self.produce_endpoint},
                                        self.replicas, self.replica_waiters, AckPurgatory())

    def _bind(self, sock: zmq.Socket, port: int) -> str:
        if port:
            sock.bind(f"tcp://{self.config.host}:{port}")
        else:
            port = sock.bind_to_random_port(f"tcp://{self.config.host}")
        return f"tcp://{self.config.endpoint_host}:{port}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.registration.register()
        self.logs.start()
        self.controller.start()
        logger.info("broker %d serving at %s (acks=0 produce at %s)", self.config.broker_id,
                    self.endpoint, self.produce_endpoint)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Stop the controller candidate, flush and close every log, then leave ZooKeeper so
        clients (and the other candidates) learn at once."""
        self.controller.close()
        self.replicas.close()
        self.fetcher.close()
        self.logs.close()
        self.registration.close()
        try:
            self.zk.stop()
            self.zk.close()
        finally:
            self.router.close(linger=0)
            self.pull.close(linger=0)
            self.wake.close(linger=0)
            self.context.term()

    def metadata(self) -> dict:
        return self.handlers.describe()

    # --- the loop --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        self.fetcher.register(poller)
        fetched_from = self.fetcher.sockets
        while not self._stopping.is_set():
            events = dict(poller.poll(poll_ms(self._poll_timeout())))
            if self.pull in events:
                self._drain_unacked()
            if self.router in events:
                self._drain_requests()
            if self.wake in events:
                while self.wake.poll(0):
                    self.wake.recv()
                self.handlers.wake(self.purgatory.logs())
            for sock in [sock for sock in events if sock in fetched_from]:
                self.fetcher.receive(sock)
            now = time.monotonic()
            self.logs.stats["loop_turns"] += 1
            self.handlers.expire(now)
            self.logs.maintain(now)
            self.replicas.maintain(now)
            self.fetcher.send_due(now)

    def _poll_timeout(self) -> float:
        deadline = self.handlers.next_deadline()
        if deadline is None:
            return _TICK_S
        return min(_TICK_S, max(0.0, deadline - time.monotonic()))

    def _drain_requests(self, limit: int = _REQUEST_DRAIN) -> None:
        """Take up to ``limit`` queued ROUTER requests in one go (fewer polls per request),
        then write the turn's produce requests, one write per log."""
        turn: dict[Route, list] = {}
        recv = self.router.recv_multipart
        for _ in range(limit):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._dispatch(frames, turn)
        if turn:
            self.handlers.write_produced(turn)

    def _dispatch(self, frames: list[bytes], turn: dict) -> None:
        """Check a request's size and header, then hand it to its handler; answer its error."""
        identity = frames[0]
        header = frames[1] if len(frames) > 1 else b""
        try:
            size = sum(len(frame) for frame in frames) - len(identity)
            if size > self.config.max_request_bytes:
                raise self._too_large(size)
            request = protocol.decode_request(header)
            handler = HANDLERS.get(request.api)
            if handler is None:
                raise SluiceError(f"this broker does not serve {request.api.name}",
                                  ErrorCode.UNKNOWN_API)
            handler(self.handlers, identity, request, frames, turn)
        except SluiceError as exc:
            self.handlers.answer_error(identity, protocol.peek_correlation_id(header), exc,
                                       _fill(header))

    def _drain_unacked(self, limit: int = _PRODUCE_DRAIN) -> None:
        """Take the queued acks=0 produce requests (up to ``limit`` or about a MiB of them),
        then write them log by log (``RequestHandlers.write_unacked``).

        Per request this receives its two frames and looks its header up in the route cache.
        Frame 0 comes as a zmq Frame for its ``more`` flag (a one-frame request is malformed);
        frame 1 as plain bytes. Extra frames of a bad request are then read as requests of
        their own and rejected in turn: a pair never straddles two ZeroMQ messages, so one bad
        client cannot shift the framing of another's requests. Nobody waits for an answer:
        errors are counted and logged.
        """
        recv = self.pull.recv
        routes = self._unacked_routes
        pending: dict[Route, list] = {}
        room = _PRODUCE_DRAIN_BYTES
        max_bytes = self.config.max_request_bytes
        for _ in range(limit):
            if room <= 0:
                break
            try:
                header = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if not header.more:
                self.errors.request_failed(MalformedRequest(
                    "a produce request is 2 frames (header, message set), got 1"), acks=0)
                continue
            body = recv(zmq.NOBLOCK)
            size = len(body) + len(header)
            room -= size
            if size > max_bytes:
                self.errors.request_failed(self._too_large(size), acks=0)
                continue
            key = header.bytes
            route = routes.get(key)
            if route is None and (route := self._unacked_route(key)) is None:
                continue
            sets = pending.get(route)
            if sets is None:
                pending[route] = [body]
            else:
                sets.append(body)
        write = self.handlers.write_unacked
        for route, sets in pending.items():
            write(route, sets)

    def _unacked_route(self, header: bytes) -> Route | None:
        """Parse an acks=0 header not seen before and remember where it goes; None (and the
        error counted) when it is bad. Headers with varying correlation ids cannot grow the
        cache without bound: it is emptied when full."""
        try:
            route = self.handlers.unacked_route(header)
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=0)
            return None
        if len(self._unacked_routes) >= _ROUTE_CACHE:
            self._unacked_routes.clear()
        self._unacked_routes[header] = route
        return route

    def _too_large(self, size: int) -> MessageTooLarge:
        return MessageTooLarge(f"a request of {size} bytes exceeds the broker's "
                               f"max_request_bytes={self.config.max_request_bytes}")


def poll_ms(seconds: float) -> int:
    """A poll timeout in the whole milliseconds ZeroMQ takes, rounded up: pyzmq truncates a
    float, and a deadline less than 1 ms away would make the loop poll without waiting until
    it passed.

    >>> poll_ms(0.25), poll_ms(0.0004), poll_ms(0.0)
    (250, 1, 0)
    """
    return math.ceil(seconds * 1000)


def _fill(header):
    """The zeroed api fields of an error response, sized for the request's api."""
    api = header[0] if len(header) else 0
    return {Api.PRODUCE: protocol.PRODUCE_REPLY, Api.FETCH: protocol.FETCH_REPLY,
            Api.OFFSETS: protocol.OFFSETS_REPLY,
            Api.OFFSET_FOR_EPOCH: protocol.EPOCH_ENTRY}.get(api)


def run(config: BrokerConfig) -> None:
    """Run a broker until SIGTERM or SIGINT; the supervisor's and ``python -m broker``'s entry."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s broker-{config.broker_id} %(levelname)s %(message)s")
    broker = Broker(config)
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    signal.signal(signal.SIGINT, lambda *_: broker.stop())
    try:
        broker.start()
        broker.serve_forever()
    finally:
        broker.close()
        logger.info("broker %d stopped", config.broker_id)
