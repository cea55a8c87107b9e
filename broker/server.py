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

Secured (``config.security``, issue 14): the ROUTER and the PULL serve CURVE with the
cluster's server key and admit only keys of the allow list (broker/authenticator.py). Each
request then carries its ``principal`` (``Request.principal``), the key's name read from the
received frame's User-Id; one whose principal was revoked since its connection was made is
refused with AUTHENTICATION_FAILED (acks=0: dropped, counted) before it reaches a handler.

Before its handler runs, each request is checked against the authorization rules
(broker/authorization.py: on exactly when the broker is secured): a refused one is answered with
AUTHORIZATION_FAILED, or, for acks=0, counted and dropped before its set is written.

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

from broker import authenticator, netns, protocol
from broker import authorization as authz
from broker.config import BrokerConfig
from broker.error_counts import ErrorCounts
from broker.flusher import Flusher
from broker.delayed_produce import AckPurgatory
from broker.handlers import RequestHandlers, replica_end
from broker.kafka import apis as kafka_apis
from broker.kafka import tls as kafka_tls
from broker.kafka.listener import KafkaListener
from broker.kafka.sasl import SaslState
from broker.kafka.request import KafkaContext
from broker.log_manager import LogManager, Route
from broker.long_poll import Purgatory
from broker.replica_fetcher import ReplicaFetcher
from broker.replica_manager import ReplicaManager
from broker.protocol import Api
from coordinator import allow_list, zk
from coordinator.acl_store import AclStore
from coordinator.controller import Controller
from coordinator.errors import (AuthenticationFailed, AuthorizationFailed, ErrorCode,
                                MalformedRequest, MessageTooLarge, SluiceError)
from coordinator.registry import BrokerInfo, BrokerRegistration

logger = logging.getLogger(__name__)

HANDLERS = {
    Api.PRODUCE: RequestHandlers.produce,
    Api.FETCH: RequestHandlers.fetch,
    Api.OFFSETS: RequestHandlers.offsets,
    Api.METADATA: RequestHandlers.metadata,
    Api.OFFSET_FOR_EPOCH: RequestHandlers.offset_for_epoch,
    Api.OFFSET_FOR_TIME: RequestHandlers.offset_for_time,
    Api.OFFSET_COMMIT: RequestHandlers.offset_commit,
    Api.OFFSET_FETCH: RequestHandlers.offset_fetch,
    Api.PRODUCE_SETS_ACKED: RequestHandlers.produce_sets_acked,
}

_TICK_S = 0.25
_ISR_WRITE_TICK_S = 0.01   # while an ISR write is in flight: its outcome is applied soon
_REQUEST_DRAIN = 1000            # ROUTER requests taken per turn
_PRODUCE_DRAIN = 4096            # acks=0 requests taken per turn before the ROUTER's turn,
_PRODUCE_DRAIN_BYTES = 1 << 20   # or this many bytes of them (one buffer and one write per log)
_ROUTE_CACHE = 1024              # parsed acks=0 headers kept
_PRODUCE_SETS = bytes([protocol.Api.PRODUCE_SETS])   # a header's first byte (its api)
_ONLY_UNACKED = {Api.PRODUCE_SETS: " on its request socket: PRODUCE_SETS is acks=0, for the "
                                   "produce socket"}


class Broker:
    """One broker: its sockets and loop, its LogManager, its registration."""

    def __init__(self, config: BrokerConfig):
        self.config = config
        self.errors = ErrorCounts()
        self._unacked_routes: dict[bytes, Route] = {}
        self._stopping = threading.Event()

        self.context = zmq.Context()
        self.keys = None if config.security is None else authenticator.BrokerKeys(config.security)
        self.zk = zk.connect(config.zookeeper, session_timeout=config.session_timeout_ms / 1000,
                             digest=self.keys.digest if self.keys else None)
        self.allow: allow_list.AllowList | None = None
        self.gate: authenticator.Authenticator | None = None
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.MAXMSGSIZE, 2 * config.max_request_bytes)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.setsockopt(zmq.LINGER, 0)
        self.pull.setsockopt(zmq.RCVHWM, 1000)
        self.pull.setsockopt(zmq.MAXMSGSIZE, 2 * config.max_request_bytes)
        if self.keys is not None:
            self._secure()
        self.endpoint = self._bind(self.router, config.port)
        self.produce_endpoint = self._bind(self.pull, 0)
        self.wake = self.context.socket(zmq.PAIR)
        wake_endpoint = f"inproc://flusher-{id(self)}"
        self.wake.bind(wake_endpoint)
        self.kafka = (None if config.kafka_port is None else
                      KafkaListener(config.host, config.kafka_port, config.endpoint_host,
                                    config.max_request_bytes,
                                    tls=None if config.kafka_tls is None
                                    else kafka_tls.server_context(config.kafka_tls),
                                    sasl_state=SaslState if config.kafka_sasl else None))
        self.kafka_ctx: KafkaContext | None = None
        self.authorization = authz.for_config(config)
        self.replicas = ReplicaManager(config, self.zk, self.errors)
        self.purgatory = Purgatory(end_of=self.replicas.consumer_end)
        self.replica_waiters = Purgatory(end_of=replica_end)
        flusher = Flusher(self.context, wake_endpoint,
                          lambda: bool(self.purgatory)
                          or (self.kafka_ctx is not None and self.kafka_ctx.waiting()),
                          self.errors.task_failed)
        self.registration = BrokerRegistration(self.zk, BrokerInfo(
            config.broker_id, self.endpoint, self.produce_endpoint, config.endpoint_host,
            os.getpid(), config.replica_advertised_endpoint or self.endpoint,
            self.kafka.endpoint if self.kafka is not None else "",
            config.log.max_message_bytes))
        self.logs = LogManager(config, self.zk, self.registration, self.errors, flusher)
        self.logs.on_open = self.replicas.add
        self.logs.on_configure = self.replicas.configure
        self.logs.on_remove = self.replicas.remove
        self.logs.backlog.is_leader = self._leads
        self.replicas.on_checkpoint = flusher.submit
        self.fetcher = ReplicaFetcher(
            config, self.context, self.logs, self.replicas, self.errors,
            None if self.keys is None else authenticator.client_options(
                self.keys.own, self.keys.server.public_key))
        self.replicas.on_follow = self.fetcher.follow
        self.controller = Controller(self.zk, config.broker_id, config.unclean_leader_election,
                                     config.leader_imbalance_check_ms)
        self.handlers = RequestHandlers(config, self.logs, self.purgatory, self.errors,
                                        self.router, {"broker": config.broker_id,
                                                      "endpoint": self.endpoint,
                                                      "produce_endpoint": self.produce_endpoint},
                                        self.replicas, self.replica_waiters, AckPurgatory())
        self.handlers.authorization = self.authorization
        if config.kafka_audit and config.kafka_port is not None:
            from broker.kafka.audit_tally import AuditTally
            self.handlers.kafka_audit = AuditTally(config.audit_window_ms)
        self._kafka_deadline: float | None = None
        if self.kafka is not None:
            self.kafka_ctx = KafkaContext(self.logs, self.handlers, self.replicas, config,
                                          self.zk, config.broker_id)
            self.kafka.attach(self.kafka_ctx, kafka_apis.dispatch)
            kafka_apis.setup(self.kafka_ctx)

    def _leads(self, topic: str, partition: int) -> bool:
        replica = self.replicas.get(topic, partition)
        return replica is not None and replica.is_leader

    def _secure(self) -> None:
        """CURVE on both client sockets, the ZAP handler bound before either binds (a CURVE
        socket with no handler to ask would let every key in)."""
        keys = self.keys
        allow_list.publish_server_key(self.zk, keys.server.public_key)
        self.allow = allow_list.AllowList(self.zk, always={keys.own.public_key: keys.own.name})
        self.gate = authenticator.Authenticator(self.context, self.allow, self.errors)
        options = authenticator.server_options(keys.server)
        for sock in (self.router, self.pull):
            authenticator.apply(sock, options)
            self.gate.watch(sock)
        self.gate.start()

    def _bind(self, sock: zmq.Socket, port: int) -> str:
        if port:
            sock.bind(f"tcp://{self.config.host}:{port}")
        else:
            port = sock.bind_to_random_port(f"tcp://{self.config.host}")
        return f"tcp://{self.config.endpoint_host}:{port}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.authorization.watch(AclStore(self.zk))   # the rules are read before serving
        self.registration.register()
        self.logs.start()
        self.controller.start()
        logger.info("broker %d serving at %s (acks=0 produce at %s, Kafka protocol at %s%s)",
                    self.config.broker_id, self.endpoint, self.produce_endpoint,
                    self.kafka.endpoint if self.kafka is not None else "none",
                    "" if self.kafka is None else f", {self.config.kafka_security_protocol}")

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Stop the controller candidate, flush and close every log, then leave ZooKeeper so
        clients (and the other candidates) learn at once."""
        self.controller.close()
        if self.gate is not None:
            self.gate.close()
        self.replicas.close()
        self.fetcher.close()
        self.logs.close()
        self.registration.close()
        try:
            self.zk.stop()
            self.zk.close()
        finally:
            if self.kafka is not None:
                self.kafka.close()
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
        kafka = self.kafka
        if kafka is not None:
            kafka.register(poller)
        while not self._stopping.is_set():
            events = dict(poller.poll(poll_ms(self._poll_timeout())))
            if kafka is not None:
                kafka.handle({fd: flags for fd, flags in events.items() if type(fd) is int})
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
            self.handlers.offsets_maintain(now)
            self.fetcher.send_due(now)
            if kafka is not None:
                self._kafka_deadline = kafka.tick(now)

    def _poll_timeout(self) -> float:
        if self.kafka is not None and self.kafka.has_pending():
            return 0.0
        deadlines = [d for d in (self.handlers.next_deadline(), self._kafka_deadline)
                     if d is not None]
        deadline = min(deadlines) if deadlines else None
        tick = _ISR_WRITE_TICK_S if self.replicas.writing else _TICK_S
        if deadline is None:
            return tick
        return min(tick, max(0.0, deadline - time.monotonic()))

    def _drain_requests(self, limit: int = _REQUEST_DRAIN) -> None:
        """Take up to ``limit`` queued ROUTER requests in one go (fewer polls per request),
        then write the turn's produce requests, one write per log."""
        turn: dict[Route, list] = {}
        recv = self.router.recv_multipart
        allow = self.allow
        for _ in range(limit):
            try:
                if allow is None:
                    self._dispatch(recv(zmq.NOBLOCK), turn)
                    continue
                parts = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            principal = parts[0].get("User-Id")
            frames = [part.bytes for part in parts]
            if allow.allows(principal):
                self._dispatch(frames, turn, principal)
            else:
                self._refuse(frames, principal)
        if turn:
            self.handlers.write_produced(turn)

    def _refuse(self, frames: list[bytes], principal: str) -> None:
        """A request of a connection whose key was revoked after its handshake."""
        header = frames[1] if len(frames) > 1 else b""
        exc = AuthenticationFailed(f"key {principal!r} is no longer on the cluster's allow list "
                                   f"(revoked): request refused")
        self.errors.request_failed(exc, acks=1)
        self.handlers.answer_error(frames[0], protocol.peek_correlation_id(header), exc,
                                   _fill(header))

    def _dispatch(self, frames: list[bytes], turn: dict, principal: str = "") -> None:
        """Check a request's size and header, then hand it to its handler; answer its error."""
        identity = frames[0]
        header = frames[1] if len(frames) > 1 else b""
        try:
            size = sum(len(frame) for frame in frames) - len(identity)
            if size > self.config.max_request_bytes:
                raise self._too_large(size)
            request = protocol.decode_request(header, principal)
            handler = HANDLERS.get(request.api)
            if handler is None:
                raise SluiceError(f"this broker does not serve {request.api.name}"
                                  + _ONLY_UNACKED.get(request.api, ""), ErrorCode.UNKNOWN_API)
            self.authorization.check(request.principal, request)
            handler(self.handlers, identity, request, frames, turn)
        except SluiceError as exc:
            self.handlers.answer_error(identity, protocol.peek_correlation_id(header), exc,
                                       _fill(header))

    def _drain_unacked(self, limit: int = _PRODUCE_DRAIN) -> None:
        """Take the queued acks=0 produce requests (up to ``limit`` or about a MiB of them),
        then write them log by log (``RequestHandlers.write_unacked``).

        Per request this receives its two frames and looks its header up in the route cache.
        Frame 0 comes as a zmq Frame for its ``more`` flag (a one-frame request is malformed);
        frame 1 as plain bytes. A PRODUCE_SETS request (several sets of one partition, a
        batch-1 producer's, broker/protocol.py) has a third frame, its sets, after their sizes;
        it is one entry of the turn, its sets judged alone by ``write_unacked``. Extra frames
        of a bad request are then read as requests of their own and rejected in turn: a pair
        never straddles two ZeroMQ messages, so one bad client cannot shift the framing of
        another's requests. Nobody waits for an answer: errors are counted and logged, a
        refused principal's too (its sets reach no log).
        """
        recv = self.pull.recv
        authorization = self.authorization
        secured = authorization.enabled
        routes = self._unacked_routes
        allow = self.allow
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
            key = header.bytes
            if key[:1] == _PRODUCE_SETS:
                entry = self._recv_sets(recv, header)
                if entry is None:
                    continue
                body = entry[0]
                size = len(body) + len(header) + 4 * len(entry[1])
            else:
                entry = body = recv(zmq.NOBLOCK)
                size = len(body) + len(header)
            room -= size
            if size > max_bytes:
                self.errors.request_failed(self._too_large(size), acks=0)
                continue
            principal = ""
            if allow is not None:
                principal = header.get("User-Id")
                if not allow.allows(principal):
                    self.errors.request_failed(AuthenticationFailed(
                        f"key {principal!r} is no longer on the cluster's allow list "
                        f"(revoked): acks=0 produce dropped"), acks=0)
                    continue
                key = (principal, key)
            route = routes.get(key)
            if route is None and (route := self._unacked_route(key, principal)) is None:
                continue
            if secured:
                refusal = authorization.may_produce(principal, route.topic)
                if refusal is not None:
                    self.errors.request_failed(AuthorizationFailed(refusal), acks=0)
                    continue
            sets = pending.get(route)
            if sets is None:
                pending[route] = [entry]
            else:
                sets.append(entry)
        write = self.handlers.write_unacked
        for route, sets in pending.items():
            write(route, sets)

    def _recv_sets(self, recv, header) -> tuple[bytes, tuple[int, ...]] | None:
        """The rest of a PRODUCE_SETS request, (its sets, their sizes); None (counted) when it
        is malformed. Its three frames come whole or not at all, as every ZeroMQ message does."""
        sizes = recv(zmq.NOBLOCK, copy=False)
        if not sizes.more:
            self.errors.request_failed(MalformedRequest(
                "a PRODUCE_SETS request is 3 frames (header, set sizes, sets), got 2"), acks=0)
            return None
        body = recv(zmq.NOBLOCK)
        try:
            return body, protocol.decode_set_sizes(sizes.buffer, len(body))
        except MalformedRequest as exc:
            self.errors.request_failed(exc, acks=0)
            return None

    def _unacked_route(self, key, principal: str = "") -> Route | None:
        """Parse an acks=0 header not seen before and remember where it goes; None (and the
        error counted) when it is bad. Headers with varying correlation ids cannot grow the
        cache without bound: it is emptied when full. Secured, the cache's key is
        (principal, header): a route is decided for one sender."""
        header = key[1] if principal else key
        try:
            route = self.handlers.unacked_route(header, principal)
        except SluiceError as exc:
            self.errors.request_failed(exc, acks=0)
            return None
        if len(self._unacked_routes) >= _ROUTE_CACHE:
            self._unacked_routes.clear()
        self._unacked_routes[key] = route
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
            Api.OFFSET_FOR_EPOCH: protocol.EPOCH_ENTRY,
            Api.OFFSET_FOR_TIME: protocol.OFFSET_FOR_TIME_REPLY,
            Api.OFFSET_COMMIT: protocol.PRODUCE_REPLY,
            Api.PRODUCE_SETS_ACKED: protocol.COUNT}.get(api)


def run(config: BrokerConfig) -> None:
    """Run a broker until SIGTERM or SIGINT; the supervisor's and ``python -m broker``'s entry."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s broker-{config.broker_id} %(levelname)s %(message)s")
    if config.network_namespace is not None:
        netns.enter(config.network_namespace)
    broker = Broker(config)
    signal.signal(signal.SIGTERM, lambda *_: broker.stop())
    signal.signal(signal.SIGINT, lambda *_: broker.stop())
    try:
        broker.start()
        broker.serve_forever()
    finally:
        broker.close()
        logger.info("broker %d stopped", config.broker_id)
