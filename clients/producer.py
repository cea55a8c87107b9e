"""The Producer: batches messages per partition and sends each batch as one MessageSet.

acks=0 is the paper's producer: a batch goes to the broker's PUSH/PULL produce socket and is
never answered; if the broker is away it may be lost, and the producer counts what it could not
even hand to ZeroMQ (``dropped``). acks=1 sends to the broker's request socket and keeps up to
``max_in_flight`` batches unanswered per broker (a window, not one round trip at a time, and
one per broker so a broker that hangs does not stall the others); a batch that
fails for a reason that passes (broker away, timed out, partition not open yet) is sent again
to whichever broker then hosts the partition, up to ``retries`` times, so a message may arrive
twice but an acknowledged one is never lost.

A batch leaves when it holds ``batch_size`` messages, when the next message would take it past
``max_request_bytes`` (a message bigger than that goes alone; one bigger than
``max_message_bytes`` is refused by send()), when its first message has waited ``linger_ms`` (a
background timer), or on ``flush()``/``close()``; ``linger_ms=0`` turns the timer off. Errors
of acks=1 batches that cannot be retried are raised by the next ``send()``, ``flush()`` or
``close()``.

``send()`` is the per-message path and does only per-message work: frame the message (one
struct pack, one CRC), pick the partition (partition counts are cached per topic) and append
it to its batch. Routing, joining and sending happen once per batch, under the producer's
lock: an acks=0 batch is two plain socket sends (header, MessageSet) on a PUSH socket and
header cached per partition, and the caches are dropped whenever the cluster view changes.

The append itself takes no lock (a lock per message costs a quarter of send()), so a batch
can be taken for sending (full, lingered, flushed) by one thread while another is appending
to it. The taker records how many messages it took (``_Batch.taken``) before joining them;
an appender that finds its batch taken checks, under the lock, whether its message was among
those and queues it again if not. This relies on list.append and dict.setdefault being atomic
(they are in CPython), and keeps send() safe to call from several threads. The byte count that
closes a batch is kept the same way and may miss a racing message; the taker cuts what it took
at ``max_request_bytes`` again, so no set goes over it.

    with Producer(acks=1) as p:
        p.send("clicks", b"page=/home", key=b"user-42")
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

import zmq

from broker import message, protocol
from clients import partitioner as partitioners
from clients.brokers import BrokerPool
from clients.connection import Connection, zmq_send

_encode = message.encode
_monotonic = time.monotonic

RETRIABLE = (protocol.ErrorCode.BROKER_UNAVAILABLE, protocol.ErrorCode.REQUEST_TIMED_OUT,
             protocol.ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, protocol.ErrorCode.NOT_LEADER)


def split_set(messages: list[bytes], max_bytes: int) -> list[tuple[bytes, int]]:
    """Framed messages cut into runs of at most ``max_bytes`` (a longer message alone), in
    order: (joined run, message count) each.

    >>> split_set([b"aaaa", b"bb", b"c", b"dddddd", b"e"], 5)
    [(b'aaaa', 1), (b'bbc', 2), (b'dddddd', 1), (b'e', 1)]
    """
    runs = []
    start = size = 0
    for i, one in enumerate(messages):
        if size and size + len(one) > max_bytes:
            runs.append((b"".join(messages[start:i]), i - start))
            start, size = i, 0
        size += len(one)
    if start < len(messages):
        runs.append((b"".join(messages[start:]), len(messages) - start))
    return runs


@dataclass
class _InFlight:
    topic: str
    partition: int
    payload: bytes
    count: int
    sent_at: float
    queued_at: float = 0.0
    attempts: int = 1
    endpoint: str = ""
    retry_at: float = 0.0


class _Batch:
    """The framed messages waiting for one partition, when the first of them came, their bytes
    as counted by send(), and, once taken for sending, how many of them were taken (None while
    open)."""

    __slots__ = ("messages", "started", "nbytes", "taken")

    def __init__(self, started: float):
        self.messages: list[bytes] = []
        self.started = started
        self.nbytes = 0
        self.taken: int | None = None


class Producer:
    def __init__(self, zookeeper: str | None = None, batch_size: int = 50, linger_ms: float = 5,
                 acks: int = 0, partitioner="random", retries: int = 10,
                 request_timeout_ms: int = 5000, retry_backoff_ms: int = 200,
                 max_in_flight: int = 32, max_message_bytes: int = 1 << 20,
                 max_request_bytes: int = 1 << 20, data_dir=None, on_delivery=None,
                 on_acknowledged=None):
        """``on_delivery(topic, partition, payload, base_offset, error)`` runs for each acks=1
        batch as it is acknowledged or given up on; ``on_acknowledged(count, seconds)`` for
        each acknowledged batch, with the seconds since its first message was queued (what
        ``sluice perf`` turns into latency percentiles)."""
        _check_settings(acks=acks, batch_size=batch_size, max_in_flight=max_in_flight,
                        request_timeout_ms=request_timeout_ms, max_message_bytes=max_message_bytes,
                        max_request_bytes=max_request_bytes, retries=retries,
                        linger_ms=linger_ms, retry_backoff_ms=retry_backoff_ms,
                        on_delivery=on_delivery, on_acknowledged=on_acknowledged)
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.acks = acks
        self.retries = retries
        self.request_timeout_s = request_timeout_ms / 1000
        self.retry_backoff_s = retry_backoff_ms / 1000
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.max_request_bytes = max_request_bytes
        self.on_delivery = on_delivery
        self.on_acknowledged = on_acknowledged
        self._partitioner = partitioners.make(partitioner)
        self._batch_sent = getattr(self._partitioner, "batch_sent", None)
        self._pool = BrokerPool(zookeeper, data_dir, request_timeout_ms)
        self._lock = threading.RLock()
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._partition_counts: dict[str, int] = {}
        self._available: dict[str, tuple[int, ...]] = {}
        self._random = isinstance(self._partitioner, partitioners.RandomPartitioner)
        self._push_routes: dict[tuple[str, int], tuple[zmq.Socket, bytes]] = {}
        self._request_routes: dict[tuple[str, int], tuple[Connection, bytes]] = {}
        self._in_flight: dict[tuple[str, int], _InFlight] = {}
        self._load: Counter[str] = Counter()
        self._retry_queue: list[_InFlight] = []
        self._error: Exception | None = None
        self._closed = False
        self.sent = 0
        self.acked = 0
        self.dropped = 0
        self.retried = 0
        self._stop = threading.Event()
        self._pool.view.add_listener(self._forget_routes)
        self._timer = None
        if linger_ms > 0:
            self._timer = threading.Thread(target=self._linger_loop, name="producer-linger",
                                           daemon=True)
            self._timer.start()

    # --- public ----------------------------------------------------------------------------

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             partition: int | None = None) -> None:
        """Queue one message; it leaves with its partition's batch."""
        if self._closed:
            raise RuntimeError("send() on a closed Producer")
        if type(value) is not bytes and not isinstance(value, (bytearray, memoryview)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
        if len(value) + (len(key) if key is not None else 0) > self.max_message_bytes:
            raise protocol.MessageTooLarge(
                f"message of {len(value)} bytes exceeds max_message_bytes={self.max_message_bytes}")
        partitions = self._partition_counts.get(topic)
        if partitions is None:
            partitions = self._partition_counts[topic] = self._pool.partitions(topic)
        chosen = partition is None
        if chosen:
            if self._random:
                available = self._available.get(topic)
                if available is None:
                    available = self._available[topic] = self._pool.available_partitions(topic)
                partition = self._partitioner(topic, key, partitions, available)
            else:
                partition = self._partitioner(topic, key, partitions)
        elif type(partition) is not int or not 0 <= partition < partitions:
            raise protocol.UnknownTopicOrPartition(
                f"topic {topic} has partitions 0..{partitions - 1}, not {partition!r}")
        encoded = _encode(value, key)
        tp = (topic, partition)
        if self._error is not None:
            with self._lock:
                self._raise_pending()
        if self.batch_size == 1:
            with self._lock:
                if chosen and self._batch_sent is not None:
                    self._batch_sent(topic, partition)
                self._send_set(tp, encoded, 1, _monotonic() if self.acks else 0.0)
            return
        batch = self._batches.get(tp) or self._batches.setdefault(tp, _Batch(_monotonic()))
        nbytes = batch.nbytes + len(encoded)
        if nbytes > self.max_request_bytes:
            batch = self._make_room(tp, batch, encoded)
            if batch is None:
                return
            nbytes = batch.nbytes + len(encoded)
        batch.nbytes = nbytes
        messages = batch.messages
        messages.append(encoded)
        if batch.taken is not None or len(messages) >= self.batch_size:
            self._appended_to_full_or_taken(tp, batch, encoded)

    def _make_room(self, tp: tuple[str, int], batch: _Batch, encoded: bytes) -> _Batch | None:
        """The message would take its batch past max_request_bytes: send the batch first. A
        message bigger than that on its own is sent alone (None: nothing left to queue)."""
        with self._lock:
            if batch.taken is None and batch.messages:
                self._take_and_send(tp, batch)
            if len(encoded) > self.max_request_bytes:
                fresh = self._batches.get(tp)
                if fresh is not None:
                    self._take_and_send(tp, fresh)
                if self._batch_sent is not None:
                    self._batch_sent(*tp)
                self._send_set(tp, encoded, 1, _monotonic())
                return None
            return self._batches.get(tp) or self._batches.setdefault(tp, _Batch(_monotonic()))

    def _appended_to_full_or_taken(self, tp: tuple[str, int], batch: _Batch, encoded) -> None:
        """Send a batch this message filled, or requeue the message if the batch it went into
        had already been taken without it."""
        with self._lock:
            if batch.taken is None:
                self._take_and_send(tp, batch)
                return
            if any(m is encoded for m in batch.messages[batch.taken:]):
                fresh = self._batches.get(tp) or self._batches.setdefault(tp, _Batch(_monotonic()))
                fresh.nbytes += len(encoded)
                fresh.messages.append(encoded)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every queued batch and, for acks=1, wait until each is acknowledged."""
        with self._lock:
            for tp, batch in list(self._batches.items()):
                self._take_and_send(tp, batch)
            if self.acks:
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                while self._in_flight or self._retry_queue:
                    if deadline is not None and time.monotonic() > deadline:
                        raise protocol.RequestTimedOut(
                            f"{len(self._in_flight)} batch(es) still unacknowledged")
                    self._collect(50)
            self._raise_pending()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._stop.set()
            if self._timer is not None:
                self._timer.join(timeout=1)
            self._pool.close()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sending ---------------------------------------------------------------------------

    def _take_and_send(self, tp: tuple[str, int], batch: _Batch) -> None:
        """Close an open batch and send what it holds (under the lock), cut at
        max_request_bytes should racing appends have taken it past."""
        if batch.taken is not None:
            return
        if self._batches.get(tp) is batch:
            del self._batches[tp]
        messages = batch.messages
        count = batch.taken = len(messages)
        if not count:
            return
        if self._batch_sent is not None:
            self._batch_sent(*tp)
        payload = messages[0] if count == 1 else b"".join(messages[:count])
        if len(payload) <= self.max_request_bytes or count == 1:
            self._send_set(tp, payload, count, batch.started)
            return
        for run, n in split_set(messages[:count], self.max_request_bytes):
            self._send_set(tp, run, n, batch.started)

    def _send_set(self, tp: tuple[str, int], payload: bytes, count: int, queued_at: float) -> None:
        """Send one MessageSet. acks=0: two plain sends on the partition's PUSH socket (pyzmq's
        send_multipart and its Python-level send wrapper cost more than the set's own work for
        small batches; ZeroMQ takes a multipart message whole or not at all). acks=1: once the
        window has room, a request on the broker's DEALER connection."""
        self.sent += count
        if self.acks == 0:
            try:
                route = self._push_routes.get(tp)
                if route is None:
                    route = self._push_routes[tp] = (self._pool.push(*tp),
                                                     protocol.encode_produce(0, *tp, 0))
                sock, header = route
                zmq_send(sock, header, zmq.SNDMORE)
                zmq_send(sock, payload)
            except (zmq.Again, protocol.BrokerUnavailable):
                self.dropped += count
            return
        endpoint = self._endpoint_of(tp)
        while endpoint is not None and self._load[endpoint] >= self.max_in_flight:
            self._collect(self.request_timeout_s * 1000)
        self._send_request(_InFlight(tp[0], tp[1], payload, count, 0.0, queued_at))

    def _endpoint_of(self, tp: tuple[str, int]) -> str | None:
        """The broker a partition's next request goes to (None while it has none): the window
        of requests in flight is per broker, so one that hangs cannot stall the others."""
        route = self._request_routes.get(tp)
        if route is not None:
            return route[0].endpoint
        try:
            return self._pool.leader(*tp).endpoint
        except (protocol.BrokerUnavailable, protocol.UnknownTopicOrPartition):
            return None

    def _forget_routes(self) -> None:
        """The cluster view changed (a broker moved, a topic came or went): look routes up anew."""
        self._push_routes.clear()
        self._request_routes.clear()
        self._partition_counts.clear()
        self._available.clear()

    def _send_request(self, item: _InFlight) -> None:
        """Send an acks=1 request on the partition's connection (cached like the PUSH routes,
        with the header's part after the correlation id)."""
        tp = (item.topic, item.partition)
        route = self._request_routes.get(tp)
        if route is None:
            try:
                conn = self._pool.connection(*tp)
            except protocol.BrokerUnavailable:
                self._retry_later(item)
                return
            route = self._request_routes[tp] = (conn, protocol.encode_produce(0, *tp, 1)[
                protocol.API.size:])
        conn, fields = route
        corr = conn.next_id()
        item.endpoint = conn.endpoint
        item.sent_at = _monotonic()
        self._in_flight[(conn.endpoint, corr)] = item
        self._load[conn.endpoint] += 1
        conn.send([protocol.API.pack(protocol.Api.PRODUCE, corr) + fields, item.payload])

    def _retry_later(self, item: _InFlight, error: Exception | None = None) -> None:
        if item.attempts > self.retries:
            self._fail(item, error or protocol.BrokerUnavailable(
                f"gave up on {item.topic}/{item.partition} after {item.attempts} attempts"))
            return
        item.attempts += 1
        item.retry_at = time.monotonic() + self.retry_backoff_s
        self.retried += 1
        self._retry_queue.append(item)

    def _fail(self, item: _InFlight, error: Exception) -> None:
        if self.on_delivery is not None:
            self.on_delivery(item.topic, item.partition, item.payload, None, error)
        if self._error is None:
            self._error = error

    def _collect(self, timeout_ms: float) -> None:
        """Take the replies that are in; when there are none, wait up to ``timeout_ms`` for
        some. Then retry what timed out or failed in passing."""
        conns = [conn for endpoint in {endpoint for endpoint, _ in self._in_flight}
                 if (conn := self._pool.existing(endpoint)) is not None]
        if not self._take_replies(conns) and timeout_ms > 0:
            wait = min(timeout_ms, 50) if self._retry_queue else timeout_ms
            if len(conns) == 1:
                self._take_replies(conns if conns[0].socket.poll(wait) else [])
            elif conns:
                poller = zmq.Poller()
                for conn in conns:
                    poller.register(conn.socket, zmq.POLLIN)
                by_socket = {conn.socket: conn for conn in conns}
                self._take_replies([by_socket[sock] for sock, _ in poller.poll(wait)])
            elif not self._retry_queue:
                time.sleep(min(timeout_ms, 50) / 1000)
        self._expire(_monotonic())

    def _take_replies(self, conns: list[Connection]) -> int:
        taken = 0
        for conn in conns:
            while True:
                try:
                    frames = conn.socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._on_reply(conn.endpoint, frames)
                taken += 1
        return taken

    def _on_reply(self, endpoint: str, frames: list[bytes]) -> None:
        corr = protocol.RESPONSE.unpack_from(frames[0])[0]
        item = self._in_flight.pop((endpoint, corr), None)
        if item is None:
            return
        self._load[endpoint] -= 1
        try:
            _, (base, _next) = protocol.decode_response(frames[0], protocol.PRODUCE_REPLY)
        except protocol.SluiceError as exc:
            if exc.code in RETRIABLE:
                self._retry_later(item, exc)
            else:
                self._fail(item, exc)
            return
        self.acked += item.count
        if self.on_acknowledged is not None:
            self.on_acknowledged(item.count, _monotonic() - item.queued_at)
        if self.on_delivery is not None:
            self.on_delivery(item.topic, item.partition, item.payload, base, None)

    def _expire(self, now: float) -> None:
        """Retry what timed out, and what is due for a retry. ``_in_flight`` is in the order
        the requests went out, so the scan stops at the first one still in time."""
        timed_out = []
        for key, item in self._in_flight.items():
            if now - item.sent_at <= self.request_timeout_s:
                break
            timed_out.append(key)
        for key in timed_out:
            item = self._in_flight.pop(key)
            self._load[key[0]] -= 1
            conn = self._pool.existing(key[0])
            if conn is not None:
                conn.reset()
            self._pool.view.refresh()
            self._retry_later(item, protocol.RequestTimedOut(
                f"no acknowledgement for {item.topic}/{item.partition} from {key[0]}"))
        due = [item for item in self._retry_queue if item.retry_at <= now]
        if due:
            self._retry_queue = [item for item in self._retry_queue if item.retry_at > now]
            for item in due:
                self._send_request(item)

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _linger_loop(self) -> None:
        tick = max(self.linger_s / 2, 0.001)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                if self._closed:
                    return
                for tp, batch in list(self._batches.items()):
                    if now - batch.started >= self.linger_s:
                        self._take_and_send(tp, batch)
                if self.acks and (self._in_flight or self._retry_queue):
                    self._collect(0)


def _check_settings(acks, on_delivery, on_acknowledged, **numbers) -> None:
    """Every setting checked before anything connects, with a line a person can act on."""
    if acks not in (0, 1) or isinstance(acks, bool):
        raise ValueError(f"acks must be 0 or 1, not {acks!r}")
    at_least = {"batch_size": 1, "max_in_flight": 1, "request_timeout_ms": 1,
                "max_message_bytes": 1, "max_request_bytes": 1, "retries": 0, "linger_ms": 0,
                "retry_backoff_ms": 0}
    whole = {"batch_size", "max_in_flight", "retries", "max_message_bytes", "max_request_bytes"}
    for name, value in numbers.items():
        kind = int if name in whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or value < at_least[name]:
            what = "a whole number" if name in whole else "a number"
            raise ValueError(f"{name} must be {what} >= {at_least[name]}, not {value!r}")
    for name, callback in (("on_delivery", on_delivery), ("on_acknowledged", on_acknowledged)):
        if callback is not None and not callable(callback):
            raise TypeError(f"{name} must be callable or None, not {callback!r}")
