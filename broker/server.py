"""The broker's request loop: one thread owns the sockets and the logs; a flusher thread fsyncs.

Two ZeroMQ sockets face the clients:

- a ROUTER (``endpoint``) for requests that want a reply: produce with acks=1, fetch, offsets,
  metadata;
- a PULL (``produce_endpoint``) for fire-and-forget produce (acks=0), the paper's producer:
  no identity frames and no reply path, so the cheapest request there is.

A request is at most ``max_request_bytes``: a bigger one (up to twice that) is refused with
MESSAGE_TOO_LARGE, and ZeroMQ's MAXMSGSIZE on both sockets (twice the bound) drops the
connection of a client that sends a bigger frame before any of it is allocated here. That
client sees no answer (a timeout) and reconnects. The bound is per frame, as ZeroMQ checks it.

Nothing on the produce path runs Python per message where a set can be handled at once: a
MessageSet is validated in one walk (CRCs in C), and the produce requests queued when the loop
comes round (acks=0 on the PULL socket, acks=1 on the ROUTER) are written with one write per
log, so a thousand one-message requests cost one write. Long-poll fetches (min_bytes /
max_wait_ms) park until their log grows or their deadline passes, so an idle consumer costs
nothing. Flushes run on the flusher thread, which tells the loop (inproc PAIR) when data became
visible to a parked fetch.
"""
from __future__ import annotations

import heapq
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import zmq
from kazoo.exceptions import KazooException

from broker import message, protocol
from broker.config import BrokerConfig
from broker.log import Log
from broker.producer_state import Action, ProducerTable
from broker.protocol import Api, SluiceError, StorageError
from coordinator import zk
from coordinator.registry import BrokerIdHeld, BrokerInfo, BrokerRegistration, ClusterView

log = logging.getLogger("sluice.broker")

# pyzmq's Cython send, without zmq.Socket.send's Python wrapper (draft-API options only).
_zmq_send = getattr(zmq.backend, "Socket", zmq.Socket).send

_TICK_S = 0.25
_PRODUCE_DRAIN = 4096    # acks=0 requests taken per turn of the loop before the ROUTER's turn,
_PRODUCE_DRAIN_BYTES = 1 << 20  # or this many bytes of them (one buffer and one write per log)
_ROUTE_CACHE = 1024      # parsed acks=0 headers kept
_ERROR_LOG_INTERVAL_S = 5.0
_RETRY_FIRST_S = 0.5     # back-off of a failed placement refresh, doubling up to
_RETRY_MAX_S = 10.0


class Flusher(threading.Thread):
    """fsyncs logs off the request loop; the paper's brokers flush asynchronously.

    After a flush it wakes the loop (whose parked fetches may now see data) only when
    ``wanted()`` says some fetch is parked: under load a flush comes every few hundred
    messages, and a wake-up of the loop for nobody costs as much as a request. A wake-up
    that finds the socket full is dropped: the loop has one waiting already. A failed flush
    goes to ``on_error(task, exc)``; the log's policy stays due, so the loop submits it again.
    """

    def __init__(self, context: zmq.Context, wake_endpoint: str, wanted=lambda: True,
                 on_error=None):
        super().__init__(name="flusher", daemon=True)
        self.context = context
        self.wake_endpoint = wake_endpoint
        self.wanted = wanted
        self.on_error = on_error or (lambda task, exc: log.error("%s failed: %s", task, exc))
        self.pending: queue.Queue = queue.Queue()
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()

    def submit(self, log_: Log) -> None:
        with self._queued_lock:
            if id(log_) in self._queued:
                return
            self._queued.add(id(log_))
        self.pending.put(log_)

    def stop(self) -> None:
        self.pending.put(None)

    def run(self) -> None:
        wake = self.context.socket(zmq.PAIR)
        wake.connect(self.wake_endpoint)
        try:
            while (item := self.pending.get()) is not None:
                with self._queued_lock:
                    self._queued.discard(id(item))
                try:
                    item.flush()
                except (OSError, SluiceError) as exc:
                    self.on_error("flush", exc)
                if self.wanted() and not self._wake(wake):
                    return
        finally:
            wake.close(linger=0)

    def _wake(self, wake: zmq.Socket) -> bool:
        """Wake the loop; False when the context is gone (the broker is closing)."""
        try:
            wake.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            if exc.errno == zmq.ETERM:
                log.info("flusher stops: the broker's ZeroMQ context was terminated")
                return False
            self.on_error("flusher_wake", exc)
        return True


class _Stopped(Exception):
    """Raised into a scrub walk when the broker stops."""


class Scrubber(threading.Thread):
    """CRC-checks the sealed segments of logs opened after an unclean shutdown, one log at a
    time, beside the request loop: serving does not wait for it. Each bad message is logged by
    the Log and counted in its METADATA row; a failure is reported to ``on_error``."""

    def __init__(self, on_error):
        super().__init__(name="scrubber", daemon=True)
        self.on_error = on_error
        self.pending: queue.Queue = queue.Queue()
        self._stopping = threading.Event()

    def submit(self, log_: Log) -> None:
        self.pending.put(log_)

    def stop(self) -> None:
        self._stopping.set()
        self.pending.put(None)

    def run(self) -> None:
        while (item := self.pending.get()) is not None and not self._stopping.is_set():
            try:
                found = item.scrub_sealed(on_progress=self._check_stop)
            except _Stopped:
                return
            except SluiceError as exc:
                self.on_error("scrub", exc)
                continue
            log.info("start-up scrub of %s: %d corrupt message(s) in its sealed segments",
                     item.directory, len(found))

    def _check_stop(self, _position: int) -> None:
        if self._stopping.is_set():
            raise _Stopped()


class _Route:
    """Where produce requests for one partition go: its Log and its counters."""

    __slots__ = ("topic", "partition", "log", "stats")

    def __init__(self, topic: str, partition: int, log_: Log, stats: Counter):
        self.topic = topic
        self.partition = partition
        self.log = log_
        self.stats = stats


class Broker:
    """One broker: its logs, its sockets, its registration."""

    def __init__(self, config: BrokerConfig):
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs: dict[tuple[str, int], Log] = {}
        self.errors: Counter = Counter()
        self.stats: Counter = Counter()
        self.partition_stats: dict[tuple[str, int], Counter] = defaultdict(Counter)
        self._error_logged_at: dict[str, float] = {}
        self._errors_lock = threading.Lock()
        self._routes: dict[tuple[str, int], _Route] = {}
        self._produce_routes: dict[bytes, _Route] = {}
        self.producers = ProducerTable()
        self._waiters: dict[Log, list] = defaultdict(list)
        self._deadlines: list = []
        self._placement_changes: queue.Queue = queue.Queue()
        self._placement_retry_at = 0.0
        self._placement_backoff = 0.0
        self._published: dict[str, list[int]] = {}
        self._stopping = threading.Event()
        self._next_retention = time.monotonic() + config.cleaner_interval_ms / 1000

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
        self.flusher = Flusher(self.context, wake_endpoint, lambda: bool(self._waiters),
                               self._count_failure)
        self.scrubber = Scrubber(self._count_failure)

        self.zk = zk.connect(config.zookeeper, session_timeout=config.session_timeout_ms / 1000)
        self._outside_errors = (KazooException, self.zk.handler.timeout_exception,
                                BrokerIdHeld, StorageError, OSError)
        self.registration = BrokerRegistration(self.zk, BrokerInfo(
            config.broker_id, self.endpoint, self.produce_endpoint, config.endpoint_host,
            os.getpid()))
        self.view: ClusterView | None = None

    def _bind(self, sock: zmq.Socket, port: int) -> str:
        if port:
            sock.bind(f"tcp://{self.config.host}:{port}")
        else:
            port = sock.bind_to_random_port(f"tcp://{self.config.host}")
        return f"tcp://{self.config.endpoint_host}:{port}"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.flusher.start()
        self.scrubber.start()
        self.registration.register()
        self.view = ClusterView(self.zk)
        self.view.add_listener(lambda: self._placement_changes.put(True))
        if not self._open_placed_logs():
            self._placement_changes.put(True)
        log.info("broker %d serving at %s (acks=0 produce at %s)", self.config.broker_id,
                 self.endpoint, self.produce_endpoint)

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """Flush every log, then leave ZooKeeper so clients learn at once."""
        self.scrubber.stop()
        self.flusher.stop()
        self.flusher.join(timeout=10)
        if self.scrubber.is_alive():
            self.scrubber.join(timeout=10)
        for log_ in self.logs.values():
            try:
                log_.close()
            except (OSError, SluiceError) as exc:
                log.error("closing %s: %s", log_.directory, exc)
        self.registration.close()
        try:
            self.zk.stop()
            self.zk.close()
        finally:
            self.router.close(linger=0)
            self.pull.close(linger=0)
            self.wake.close(linger=0)
            self.context.term()

    def _open_placed_logs(self) -> bool:
        """Open a Log for every partition placed on this broker and announce them; False when
        a log could not be opened (counted and logged; the caller tries again later).

        ZooKeeper errors propagate: they stop the whole refresh, which is retried as a whole.
        """
        from coordinator import topics
        complete = True
        for topic in topics.names(self.zk):
            try:
                placement = self.view.placement(topic)
            except topics.TopicError:
                continue
            mine = placement.hosted_by(self.config.broker_id)
            for partition in mine:
                if (topic, partition) in self.logs:
                    continue
                try:
                    log_ = Log(self.data_dir / topic / str(partition), self.config.log)
                except StorageError as exc:
                    self._count_failure("open_log", exc)
                    complete = False
                    continue
                self.logs[(topic, partition)] = log_
                if log_.scrub_state == "pending":
                    self.scrubber.submit(log_)
            hosted = [p for p in mine if (topic, p) in self.logs]
            if hosted and self._published.get(topic) != hosted:
                self.registration.publish(topic, hosted)
                self._published[topic] = hosted
        return complete

    # --- the loop --------------------------------------------------------------------------

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.pull, zmq.POLLIN)
        poller.register(self.wake, zmq.POLLIN)
        while not self._stopping.is_set():
            timeout = self._poll_timeout()
            events = dict(poller.poll(timeout * 1000))
            if self.pull in events:
                self._drain_produce()
            if self.router in events:
                self._drain_requests()
            if self.wake in events:
                while self.wake.poll(0):
                    self.wake.recv()
                self._wake_waiters(list(self._waiters))
            self._housekeeping()

    def _drain_requests(self, limit: int = 1000) -> None:
        """Take up to ``limit`` queued ROUTER requests in one go (fewer polls per request).

        Produce requests are validated as they come but written at the end of the turn, with
        one write per log for all of them, and answered then: each set's offsets follow from
        where it lies in that write.
        """
        produced: dict[_Route, list] = {}
        recv = self.router.recv_multipart
        for _ in range(limit):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._handle_request(frames, produced)
        for route, requests in produced.items():
            self._append_produced(route, requests)

    def _poll_timeout(self) -> float:
        timeout = _TICK_S
        if self._deadlines:
            timeout = min(timeout, max(0.0, self._deadlines[0][0] - time.monotonic()))
        return timeout

    def _housekeeping(self) -> None:
        """The loop's work between requests: expired long-polls, flush scheduling, placement
        changes, retention. What can fail here (ZooKeeper, the disk) is counted, logged and
        retried (``_count_failure``); it never ends the loop."""
        now = time.monotonic()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, waiter = heapq.heappop(self._deadlines)
            if not waiter["done"]:
                self._answer_fetch(waiter)
        for log_ in self.logs.values():
            if log_.flush_due(now):
                self.flusher.submit(log_)
        if not self._placement_changes.empty() and now >= self._placement_retry_at:
            self._refresh_placement(now)
        if now >= self._next_retention:
            self._apply_retention(now)

    def _refresh_placement(self, now: float) -> None:
        """Open the partitions newly placed here; on failure the change stays pending and is
        tried again after a back-off that doubles up to _RETRY_MAX_S."""
        while not self._placement_changes.empty():
            self._placement_changes.get_nowait()
        try:
            complete = self._open_placed_logs()
        except self._outside_errors as exc:
            self._retry_placement(now)
            self._count_failure("placement_refresh", exc, self._placement_backoff)
            return
        if complete:
            self._placement_backoff = 0.0
        else:
            self._retry_placement(now)

    def _retry_placement(self, now: float) -> None:
        self._placement_changes.put(True)
        self._placement_backoff = min(_RETRY_MAX_S, 2 * self._placement_backoff or _RETRY_FIRST_S)
        self._placement_retry_at = now + self._placement_backoff

    def _apply_retention(self, now: float) -> None:
        interval = self.config.cleaner_interval_ms / 1000
        self._next_retention = now + interval
        for log_ in list(self.logs.values()):
            try:
                deleted = log_.apply_retention()
            except (StorageError, OSError) as exc:
                retry = min(interval, _RETRY_MAX_S)
                self._next_retention = min(self._next_retention, now + retry)
                self._count_failure("retention", exc, retry)
                continue
            if deleted:
                log.info("retention deleted %d segment(s) of %s", deleted, log_.directory)

    # --- requests --------------------------------------------------------------------------

    def _drain_produce(self, limit: int = _PRODUCE_DRAIN) -> None:
        """Take the queued acks=0 produce requests (up to ``limit`` or about a MiB of them),
        then append them log by log.

        Per request this receives its two frames and looks its header up in
        ``_produce_routes``: an acks=0 header is the same bytes for every request to a
        partition, so it is parsed once and the bytes are the key. The MessageSets bound for
        one log are then joined, validated in one walk and written with one write. Nobody waits
        for an answer, so errors are counted and logged.

        Frame 0 comes as a zmq Frame for its ``more`` flag (a one-frame request is malformed);
        frame 1 as plain bytes. Extra frames of a bad request are then read as requests of
        their own and rejected in turn: a pair never straddles two ZeroMQ messages, so one bad
        client cannot shift the framing of another's requests.
        """
        recv = self.pull.recv
        routes = self._produce_routes
        pending: dict[_Route, list] = {}
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
                self._count_error(protocol.MalformedRequest(
                    "a produce request is 2 frames (header, message set), got 1"), acks=0)
                continue
            body = recv(zmq.NOBLOCK)
            size = len(body) + len(header)
            room -= size
            if size > max_bytes:
                self._count_error(self._too_large(size), acks=0)
                continue
            key = header.bytes
            route = routes.get(key)
            if route is None and (route := self._produce_route(key)) is None:
                continue
            sets = pending.get(route)
            if sets is None:
                pending[route] = [body]
            else:
                sets.append(body)
        for route, sets in pending.items():
            self._append_sets(route, sets)

    def _produce_route(self, header: bytes) -> _Route | None:
        """Parse an acks=0 header not seen before and remember where it goes; None (and the
        error counted) when it is bad. Headers with varying correlation ids cannot grow the
        cache without bound: it is emptied when full."""
        try:
            request = protocol.decode_request(header)
            if request.api is not Api.PRODUCE:
                raise protocol.MalformedRequest("only produce requests go to the produce socket")
            route = self._route(request)
        except SluiceError as exc:
            self._count_error(exc, acks=0)
            return None
        if len(self._produce_routes) >= _ROUTE_CACHE:
            self._produce_routes.clear()
        self._produce_routes[header] = route
        return route

    def _append_sets(self, route: _Route, sets: list) -> None:
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
                    count += self._validate(route, one)
                    good.append(one)
                except SluiceError as exc:
                    self._count_error(exc, acks=0)
            if not good:
                return
            sets = good
        try:
            self._append(route, sets, count, data)
        except SluiceError as exc:
            self._count_error(exc, acks=0)

    def _handle_request(self, frames: list[bytes], produced: dict) -> None:
        identity = frames[0]
        header = frames[1] if len(frames) > 1 else b""
        corr = protocol.peek_correlation_id(header)
        try:
            size = sum(len(frame) for frame in frames) - len(identity)
            if size > self.config.max_request_bytes:
                raise self._too_large(size)
            request = protocol.decode_request(header)
            if request.api is Api.PRODUCE:
                if len(frames) != 3:
                    raise protocol.MalformedRequest("produce needs a header and a message set")
                route = self._route(request)
                count = self._validate(route, frames[2])
                produced.setdefault(route, []).append((identity, corr, request, frames[2], count))
                return
            if len(frames) != 2:
                raise protocol.MalformedRequest(f"{request.api.name.lower()} takes one frame")
            if request.api is Api.FETCH:
                self._fetch(identity, request)
            elif request.api is Api.OFFSETS:
                offset = self._log(request).offset_before(request.time)
                self.router.send_multipart([identity, protocol.encode_response(
                    corr, protocol.OFFSETS_REPLY.pack(offset))])
            else:
                self.router.send_multipart([identity, protocol.encode_metadata_response(
                    corr, json.dumps(self.metadata()))])
        except SluiceError as exc:
            self._answer_error(identity, corr, exc, _fill(header))

    def _too_large(self, size: int) -> protocol.MessageTooLarge:
        return protocol.MessageTooLarge(f"a request of {size} bytes exceeds the broker's "
                                        f"max_request_bytes={self.config.max_request_bytes}")

    def _answer_error(self, identity: bytes, corr: int, exc: SluiceError, fill) -> None:
        self._count_error(exc, acks=1)
        self.router.send_multipart([identity, protocol.encode_response(corr, error=exc,
                                                                       fill=fill)])

    def _append_produced(self, route: _Route, requests: list) -> None:
        """Write the produce requests of one log that are due with one write, then answer each
        with its own (base offset, next offset).

        Sequenced requests are judged first, in arrival order (broker/producer_state.py): a
        duplicate is answered with its original's offsets (an empty range when they are not
        known) and not written again; one that came before an older one of its producer gets
        OUT_OF_ORDER_SEQUENCE. The judgement is committed only once the write succeeded: a
        failed write answers every request that waited on it and leaves the table as it was.
        """
        turn = self.producers.turn(route.topic, route.partition, time.monotonic())
        writes, duplicates = [], []
        for identity, corr, request, body, count in requests:
            decision = turn.judge(request.producer_id, request.sequence, request.first_unacked)
            if decision.action is Action.APPEND:
                writes.append((identity, corr, request.acks, body, count))
            elif decision.action is Action.DUPLICATE:
                duplicates.append((identity, corr, decision))
            else:
                self._answer_error(identity, corr, protocol.OutOfOrderSequence(
                    f"{route.topic}/{route.partition}: sequence {request.sequence} of producer "
                    f"{request.producer_id:x} came before {decision.expected}; send again from "
                    f"{decision.expected}"), protocol.PRODUCE_REPLY)
        offsets = []
        if writes:
            try:
                offset, _ = self._append(route, [body for _, _, _, body, _ in writes],
                                         sum(count for *_, count in writes),
                                         expose=any(acks for _, _, acks, _, _ in writes))
            except SluiceError as exc:
                for identity, corr, *_ in writes:
                    self._answer_error(identity, corr, exc, protocol.PRODUCE_REPLY)
                self._answer_duplicates(route, duplicates, None, exc)
                return
            router = self.router
            for identity, corr, acks, body, _ in writes:
                nxt = offset + len(body)
                offsets.append((offset, nxt))
                if acks:
                    _zmq_send(router, identity, zmq.SNDMORE)
                    _zmq_send(router, protocol.encode_response(corr, protocol.PRODUCE_REPLY.pack(
                        offset, nxt)))
                offset = nxt
            turn.commit(offsets)
        if duplicates:
            self._answer_duplicates(route, duplicates, offsets, None)

    def _answer_duplicates(self, route: _Route, duplicates: list, offsets: list | None,
                           error: SluiceError | None) -> None:
        """Answer requests judged duplicates: with the offsets their original got (from an
        earlier turn, or ``offsets`` of this turn's write; (0, 0) when unknown), or with
        ``error`` when this turn's write of their original failed."""
        self.stats["duplicates"] += len(duplicates)
        route.stats["duplicates"] += len(duplicates)
        for identity, corr, decision in duplicates:
            if decision.pending is not None:
                if error is not None:
                    self._answer_error(identity, corr, error, protocol.PRODUCE_REPLY)
                    continue
                base, nxt = offsets[decision.pending]
            else:
                base, nxt = decision.offsets or (0, 0)
            self.router.send_multipart([identity, protocol.encode_response(
                corr, protocol.PRODUCE_REPLY.pack(base, nxt))])

    def _log(self, request) -> Log:
        log_ = self.logs.get((request.topic, request.partition))
        if log_ is None:
            raise protocol.UnknownTopicOrPartition(
                f"broker {self.config.broker_id} has no partition {request.topic}/{request.partition}")
        return log_

    def _route(self, request) -> _Route:
        key = (request.topic, request.partition)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = _Route(request.topic, request.partition,
                                               self._log(request), self.partition_stats[key])
        return route

    def _validate(self, route: _Route, message_set) -> int:
        """The number of messages in a produce request's set; the typed error when it is bad."""
        try:
            return message.validate_set(message_set, self.config.log.max_message_bytes)
        except message.InvalidMessage as bad:
            raise self._rejection(route, bad) from None

    @staticmethod
    def _rejection(route: _Route, bad: message.InvalidMessage) -> SluiceError:
        if bad.reason == "too_large":
            return protocol.MessageTooLarge(str(bad))
        return protocol.CorruptMessage(
            f"rejected message set for {route.topic}/{route.partition}: {bad}")

    def _append(self, route: _Route, sets: list, count: int, joined: bytes | None = None,
                expose: bool = False) -> tuple[int, int]:
        """Append validated MessageSets (``count`` messages) with one write per segment;
        counters, waiters, flush. ``joined``: the sets already joined by the caller.
        ``expose``: acks=1 replies will tell the offsets (the log records that first)."""
        if len(sets) == 1:
            base, nxt = route.log.append(sets[0], count, expose=expose)
        else:
            base, nxt = route.log.append(joined or b"".join(sets), count,
                                         [len(one) for one in sets], expose=expose)
        self._appended(route, nxt - base, count)
        return base, nxt

    def _appended(self, route: _Route, nbytes: int, count: int) -> None:
        """After an append: counters, parked fetches (when no flush is awaited), the flusher."""
        self.stats["messages_in"] += count
        self.stats["bytes_in"] += nbytes
        route.stats["messages_in"] += count
        route.stats["bytes_in"] += nbytes
        log_ = route.log
        if self._waiters.get(log_) and not self.config.log.visible_after_flush:
            self._wake_waiters([log_])
        if log_.flush_due(time.monotonic()):
            self.flusher.submit(log_)

    def _fetch(self, identity, request) -> None:
        log_ = self._log(request)
        max_bytes = min(request.max_bytes, self.config.max_fetch_bytes)
        if max_bytes <= 0:
            raise protocol.MalformedRequest("max_bytes must be positive")
        waiter = {"identity": identity, "request": request, "log": log_, "done": False}
        if not log_.start_offset <= request.offset <= log_.end_offset:
            below = request.offset < log_.start_offset
            raise protocol.OffsetOutOfRange(
                f"offset {request.offset} is outside {request.topic}/{request.partition}'s log "
                f"[{log_.start_offset}, {log_.end_offset}]"
                + (f"; it resumes at {log_.start_offset}" if below else ""),
                resume_offset=log_.start_offset if below else None)
        available = log_.visible_end - request.offset
        if available >= max(request.min_bytes, 1) or request.max_wait_ms == 0:
            self._answer_fetch(waiter)
            return
        deadline = time.monotonic() + min(request.max_wait_ms, self.config.max_wait_ms_limit) / 1000
        heapq.heappush(self._deadlines, (deadline, id(waiter), waiter))
        self._waiters[log_].append(waiter)
        if log_.visible_end - request.offset >= max(request.min_bytes, 1):
            self._wake_waiters([log_])  # a flush ended since the check, seeing no waiter

    def _wake_waiters(self, logs) -> None:
        for log_ in logs:
            waiters = self._waiters.get(log_)
            if not waiters:
                self._waiters.pop(log_, None)
                continue
            keep = []
            for waiter in waiters:
                request = waiter["request"]
                if waiter["done"]:
                    continue
                if log_.visible_end - request.offset >= max(request.min_bytes, 1):
                    self._answer_fetch(waiter)
                else:
                    keep.append(waiter)
            if keep:
                self._waiters[log_] = keep
            else:
                self._waiters.pop(log_, None)

    def _answer_fetch(self, waiter) -> None:
        waiter["done"] = True
        request = waiter["request"]
        log_ = waiter["log"]
        corr = request.correlation_id
        try:
            if request.offset > log_.visible_end:
                data = b""  # appended but not yet flushed: nothing visible at that offset
            else:
                data = log_.read(request.offset, min(request.max_bytes, self.config.max_fetch_bytes))
        except SluiceError as exc:
            self._count_error(exc, acks=1)
            self.router.send_multipart([waiter["identity"], protocol.encode_response(
                corr, error=exc, fill=protocol.FETCH_REPLY), b""])
            return
        self.stats["bytes_out"] += len(data)
        stats = self.partition_stats[(request.topic, request.partition)]
        stats["bytes_out"] += len(data)
        stats["fetches"] += 1
        header = protocol.encode_response(corr, protocol.FETCH_REPLY.pack(log_.visible_end,
                                                                         log_.start_offset))
        self.router.send_multipart([waiter["identity"], header, data], copy=len(data) < 65536)

    def _count_error(self, exc: SluiceError, acks: int) -> None:
        name = exc.code.name.lower()
        with self._errors_lock:
            self.errors[name] += 1
            count = self.errors[name]
        if self._log_due(name):
            log.warning("%s (acks=%d): %s [%d so far]", name, acks, exc, count)

    def _count_failure(self, task: str, exc: BaseException, retry_s: float | None = None) -> None:
        """An error outside a request (``task``: placement_refresh, retention, flush, scrub,
        ...): counted in METADATA's errors as ``<task>_failed``, logged at most every few
        seconds; the caller retries. Safe from any thread."""
        name = f"{task}_failed"
        with self._errors_lock:
            self.errors[name] += 1
            count = self.errors[name]
        if self._log_due(name):
            retry = f"; retrying in {retry_s:.1f} s" if retry_s is not None else "; will retry"
            log.warning("%s failed (%s: %s)%s [%d so far]", task.replace("_", " "),
                        type(exc).__name__, exc, retry, count)

    def _log_due(self, name: str) -> bool:
        now = time.monotonic()
        with self._errors_lock:
            if now - self._error_logged_at.get(name, 0.0) < _ERROR_LOG_INTERVAL_S:
                return False
            self._error_logged_at[name] = now
            return True

    def _errors_snapshot(self) -> dict:
        with self._errors_lock:
            return dict(self.errors)

    def metadata(self) -> dict:
        return {
            "broker": self.config.broker_id,
            "endpoint": self.endpoint,
            "produce_endpoint": self.produce_endpoint,
            "partitions": [
                {"topic": topic, "partition": partition, "start_offset": log_.start_offset,
                 "end_offset": log_.end_offset, "visible_end": log_.visible_end,
                 "segments": log_.segment_count, "size_bytes": log_.size_bytes,
                 "gap_bytes": sum(resume - first for first, resume in log_.gaps),
                 "corrupt_messages": log_.corrupt_messages, "scrub": log_.scrub_state,
                 "flushes": log_.flush_count, "flush_seconds": log_.flush_seconds,
                 **self.partition_stats.get((topic, partition), {})}
                for (topic, partition), log_ in sorted(self.logs.items())],
            "errors": self._errors_snapshot(),
            "stats": dict(self.stats),
        }


def _fill(header):
    """The zeroed api fields of an error response, sized for the request's api."""
    api = header[0] if len(header) else 0
    return {Api.PRODUCE: protocol.PRODUCE_REPLY, Api.FETCH: protocol.FETCH_REPLY,
            Api.OFFSETS: protocol.OFFSETS_REPLY}.get(api)


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
        log.info("broker %d stopped", config.broker_id)
