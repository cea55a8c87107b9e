"""The Producer: batches messages per partition and sends each batch as one MessageSet.

acks=0 is the paper's producer: a batch goes to the broker's PUSH/PULL produce socket and is
never answered; if the broker is away it may be lost, and the producer counts what it could not
even hand to ZeroMQ (``dropped``). acks=1 sends to the broker's request socket and keeps up to
``max_in_flight`` batches unanswered (a window, not one round trip at a time); a batch that
fails for a reason that passes (broker away, timed out, partition not open yet) is sent again
to whichever broker then hosts the partition, up to ``retries`` times, so a message may arrive
twice but an acknowledged one is never lost.

A batch leaves when it holds ``batch_size`` messages, when its first message has waited
``linger_ms`` (a background timer), or on ``flush()``/``close()``; ``linger_ms=0`` turns the
timer off. Errors of acks=1 batches that cannot be retried are raised by the next ``send()``,
``flush()`` or ``close()``.

    with Producer(acks=1) as p:
        p.send("clicks", b"page=/home", key=b"user-42")
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import zmq

from broker import message, protocol
from clients import partitioner as partitioners
from clients.brokers import BrokerPool

RETRIABLE = (protocol.ErrorCode.BROKER_UNAVAILABLE, protocol.ErrorCode.REQUEST_TIMED_OUT,
             protocol.ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, protocol.ErrorCode.NOT_LEADER)


@dataclass
class _InFlight:
    topic: str
    partition: int
    payload: bytes
    count: int
    sent_at: float
    attempts: int = 1
    endpoint: str = ""
    retry_at: float = 0.0


@dataclass
class _Batch:
    messages: list = field(default_factory=list)
    started: float = 0.0


class Producer:
    def __init__(self, zookeeper: str | None = None, batch_size: int = 50, linger_ms: float = 5,
                 acks: int = 0, partitioner="random", retries: int = 10,
                 request_timeout_ms: int = 5000, retry_backoff_ms: int = 200,
                 max_in_flight: int = 16, max_message_bytes: int = 1 << 20, data_dir=None,
                 on_delivery=None):
        if acks not in (0, 1):
            raise ValueError(f"acks must be 0 or 1, not {acks!r}")
        for name, value in (("batch_size", batch_size), ("max_in_flight", max_in_flight),
                            ("request_timeout_ms", request_timeout_ms)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if linger_ms < 0 or retries < 0:
            raise ValueError("linger_ms and retries must not be negative")
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000
        self.acks = acks
        self.retries = retries
        self.request_timeout_s = request_timeout_ms / 1000
        self.retry_backoff_s = retry_backoff_ms / 1000
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.on_delivery = on_delivery
        self._partitioner = partitioners.make(partitioner)
        self._pool = BrokerPool(zookeeper, data_dir, request_timeout_ms)
        self._lock = threading.RLock()
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._headers: dict[tuple[str, int], bytes] = {}
        self._in_flight: dict[tuple[str, int], _InFlight] = {}
        self._retry_queue: list[_InFlight] = []
        self._error: Exception | None = None
        self._closed = False
        self.sent = 0
        self.acked = 0
        self.dropped = 0
        self.retried = 0
        self._stop = threading.Event()
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
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"value must be bytes, not {type(value).__name__}")
        if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
            raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
        if len(value) + (len(key) if key is not None else 0) > self.max_message_bytes:
            raise protocol.MessageTooLarge(
                f"message of {len(value)} bytes exceeds max_message_bytes={self.max_message_bytes}")
        partitions = self._pool.partitions(topic)
        if partition is None:
            partition = self._partitioner(topic, key, partitions)
        elif not isinstance(partition, int) or not 0 <= partition < partitions:
            raise protocol.UnknownTopicOrPartition(
                f"topic {topic} has partitions 0..{partitions - 1}, not {partition!r}")
        encoded = message.encode(value, key)
        with self._lock:
            self._raise_pending()
            tp = (topic, partition)
            batch = self._batches.get(tp)
            if batch is None:
                batch = self._batches[tp] = _Batch(started=time.monotonic())
            batch.messages.append(encoded)
            if len(batch.messages) >= self.batch_size:
                self._send_batch(tp)

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every queued batch and, for acks=1, wait until each is acknowledged."""
        with self._lock:
            for tp in list(self._batches):
                self._send_batch(tp)
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

    def _header(self, tp: tuple[str, int]) -> bytes:
        header = self._headers.get(tp)
        if header is None:
            header = self._headers[tp] = protocol.encode_produce(0, tp[0], tp[1], 0)
        return header

    def _send_batch(self, tp: tuple[str, int]) -> None:
        batch = self._batches.pop(tp, None)
        if batch is None or not batch.messages:
            return
        if isinstance(self._partitioner, partitioners.RandomPartitioner):
            self._partitioner.batch_sent(*tp)
        payload = b"".join(batch.messages)
        count = len(batch.messages)
        self.sent += count
        if self.acks == 0:
            self._send_fire_and_forget(tp, payload, count)
            return
        while len(self._in_flight) >= self.max_in_flight:
            self._collect(self.request_timeout_s * 1000)
        self._send_request(_InFlight(tp[0], tp[1], payload, count, time.monotonic()))

    def _send_fire_and_forget(self, tp, payload: bytes, count: int) -> None:
        try:
            self._pool.push(*tp).send_multipart([self._header(tp), payload], copy=False)
        except (zmq.Again, protocol.BrokerUnavailable):
            self.dropped += count

    def _send_request(self, item: _InFlight) -> None:
        try:
            conn = self._pool.connection(item.topic, item.partition)
        except protocol.BrokerUnavailable:
            self._retry_later(item)
            return
        corr = conn.next_id()
        item.endpoint = conn.endpoint
        item.sent_at = time.monotonic()
        self._in_flight[(conn.endpoint, corr)] = item
        conn.send([protocol.encode_produce(corr, item.topic, item.partition, 1), item.payload])

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
        """Take replies for in-flight batches; retry what timed out or failed in passing."""
        conns = {endpoint for endpoint, _ in self._in_flight}
        poller = zmq.Poller()
        sockets = {}
        for endpoint in conns:
            conn = self._pool.existing(endpoint)
            if conn is not None:
                poller.register(conn.socket, zmq.POLLIN)
                sockets[conn.socket] = conn
        wait = min(timeout_ms, 50) if self._retry_queue else timeout_ms
        for sock, _ in poller.poll(wait) if sockets else ():
            conn = sockets[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_reply(conn.endpoint, frames)
        if not sockets and not self._retry_queue:
            time.sleep(min(timeout_ms, 50) / 1000)
        self._expire(time.monotonic())

    def _on_reply(self, endpoint: str, frames) -> None:
        corr = protocol.RESPONSE.unpack_from(frames[0].buffer)[0]
        item = self._in_flight.pop((endpoint, corr), None)
        if item is None:
            return
        try:
            _, (base, _next) = protocol.decode_response(frames[0].buffer, protocol.PRODUCE_REPLY)
        except protocol.SluiceError as exc:
            if exc.code in RETRIABLE:
                self._retry_later(item, exc)
            else:
                self._fail(item, exc)
            return
        self.acked += item.count
        if self.on_delivery is not None:
            self.on_delivery(item.topic, item.partition, item.payload, base, None)

    def _expire(self, now: float) -> None:
        timed_out = [key for key, item in self._in_flight.items()
                     if now - item.sent_at > self.request_timeout_s]
        for key in timed_out:
            item = self._in_flight.pop(key)
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
                        self._send_batch(tp)
                if self.acks and (self._in_flight or self._retry_queue):
                    self._collect(0)
