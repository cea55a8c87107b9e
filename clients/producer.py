"""The Producer: batches messages per partition and sends each batch as one MessageSet.

acks=0 is the paper's producer: a batch goes to the broker's PUSH/PULL produce socket and is
never answered; if the broker is away it may be lost, and the producer counts what it could not
even hand to ZeroMQ (``dropped``). acks=1 sends to the broker's request socket and keeps up to
``max_in_flight`` requests unanswered per broker (a window, not one round trip at a time, and
one per broker so a broker that hangs does not stall the others) and per partition. A request
that fails for a reason that passes (broker away, timed out, partition not open yet, out of
order) is sent again to whichever broker then hosts the partition, up to ``retries`` times, so
an acknowledged message is never lost. acks="all" (-1) is acks=1 with the answer delayed
until every in-sync replica has the set (``protocol.ACKS_ALL`` on the wire): the same window,
sequencing and retries, and NOT_ENOUGH_REPLICAS (the ISR is below the topic's
min_insync_replicas) is one more error that passes; once ``retries`` are spent the batch fails
with it as its reason. Below, "acks=1" stands for both.

acks=1 (not "all") with ``linger_ms`` > 0: a partition has at most ``max_in_flight`` // 8
requests in flight (still at most ``max_in_flight`` sets unanswered), and the sets that wait
behind them leave together, up to ``SETS_PER_REQUEST`` consecutive ones and
``max_request_bytes``, in one PRODUCE_SETS_ACKED request (broker/protocol.py): each set keeps
its own sequence and gets its own answer (offsets or error) in the request's one reply, so a
bad set fails alone and a resent request is answered as duplicates. Only sets already waiting
go together: a set leaves at once when the window has room (a set that finds it full first
takes the answers already in), and waiting sets leave when an answer is taken, by the next
send that needs room or the linger timer's next tick. This cuts the requests, and so the
broker's and the producer's work per request, when the window is the limit.

A partition's leader is looked up in the cluster view for each request that has no route yet;
a route is dropped when the view changes or the broker says it does not lead
(``BrokerPool.leader_failed``), so resent batches go, in order, to the new leader, which knows
nothing of this producer and starts from the ``first_unacked`` they carry.

Sequenced produce (acks=1; the promise it gives is in ``Producer``'s docstring). Each request
carries its partition's sequence number and the oldest one still unanswered
(``first_unacked``); the broker appends only the sequence it expects next, answers an older one
as a duplicate and refuses a newer one (broker/producer_state.py). When a request of a
partition times out or is refused in passing, the producer sends that partition's unanswered
requests again, oldest first, once the older ones still in flight are answered, and no newer
one goes ahead of them; late replies to the earlier sends are ignored. A timeout rebuilds the
broker's connection, so every partition in flight there is sent again. Each Producer has a
random ``producer_id``; a partition that used up its 2**32 sequences goes on under a new one.

A batch leaves when it holds ``batch_size`` messages, when its first message has waited
``linger_ms`` (a background timer), or on ``flush()``/``close()``; ``linger_ms=0`` turns the
timer off. With ``batch_size=1`` and acks=0 (not audited) there is no batch and no timer: each
message goes to a sender thread (clients/coalescer.py) that sends, at once, whatever is queued
when it runs, several one-message sets as one PRODUCE_SETS request. What a batch holds goes
out as sets of at most ``max_request_bytes`` (a message bigger than that goes alone; one
bigger than ``max_message_bytes`` is refused by send()). Errors of
acks=1 batches are raised by the next ``send()``, ``flush()`` or ``close()``.

``send()`` is the per-message path and does only per-message work: frame the message (one
struct pack, one CRC), pick the partition (partition counts are cached per topic) and append
it to its batch. Routing, joining and sending happen once per batch, under the producer's
lock: an acks=0 batch is two plain socket sends (header, MessageSet) on a PUSH socket and
header cached per partition, and the caches are dropped whenever the cluster view changes.
An audited producer (``audit=True``, clients/audit.py) frames magic 2 messages stamped with
their batch's opening time, reusing the batch's framing prefix and its CRC (no clock read per
message), and counts a batch's messages once, when it is acknowledged (acks=0: when handed to
ZeroMQ), under the lock it already holds then.

The append itself takes no lock (a lock per message costs a quarter of send()), so a batch
can be taken for sending (full, lingered, flushed) by one thread while another is appending
to it. The taker records how many messages it took (``_Batch.taken``) before joining them;
an appender that finds its batch taken checks, under the lock, whether its message was among
those and queues it again if not. This relies on list.append and dict.setdefault being atomic
(they are in CPython), and keeps send() safe to call from several threads.

    with Producer(acks=1) as p:
        p.send("clicks", b"page=/home", key=b"user-42")

Why one module of some 570 lines: batching and the acks=1 window are one producer's state
under one lock (a batch taken by the linger timer is sent, and its replies collected, in the
same critical section), and the per-message and per-batch paths are tuned by instruction count
(docs/benchmark.md): the pure parts (split_set, the partitioner, the config) are already apart.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
import zlib
from collections import Counter, deque

import zmq

from broker import message, protocol
from clients import audit as audits
from clients import coalescer as coalescers
from clients import partitioner as partitioners
from clients.brokers import BrokerPool
from clients.config import ProducerConfig
from clients.connection import Connection, zmq_send
from coordinator import topics
from coordinator.errors import InvalidArgument
from coordinator.settings import callable_or_none

_encode = message.encode
_encode_stamped = message.encode_stamped
# an audited producer's unkeyed message, framed in send() itself (message.encode_prefixed's
# work without its call): the header, then the batch's stamped prefix and CRC, then the value
_join = b"".join
_pack_header = message.HEADER.pack
_crc32 = zlib.crc32
_MAGIC_RECORD = message.MAGIC_RECORD
_STAMPED_SIZE = message.MIN_SIZE + message.STAMPED_PREFIX_SIZE
_monotonic = time.monotonic
_time = time.time
log = logging.getLogger(__name__)

SEQUENCE_LIMIT = 1 << 32        # sequences are u32: a partition that reaches this renumbers
SETS_PER_REQUEST = 8            # acks=1: waiting sets of a partition that leave in one request
_SETS_HEADROOM = 1024           # bytes of a PRODUCE_SETS_ACKED request that are not its sets
# A partition's acks=1 header is cached without its correlation id and sequence fields, the
# parts that change per request: encode_produce(...)[API.size:_PRODUCE_PREFIX_END].
_PRODUCE_PREFIX_END = -protocol.SEQUENCE_FIELDS.size


def new_producer_id() -> int:
    """A random non-zero 64-bit id: the broker tells producers apart by it."""
    while True:
        producer_id = secrets.randbits(64)
        if producer_id:
            return producer_id


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


class _Request:
    """One acks=1 MessageSet, from the moment it has its sequence until it is answered or
    given up on. ``key`` is (endpoint, correlation id) while a send of it is in flight."""

    __slots__ = ("tp", "payload", "count", "sequence", "queued_at", "sent_at", "retries", "key",
                 "window")

    def __init__(self, tp: tuple[str, int], payload: bytes, count: int, sequence: int,
                 queued_at: float, window: int | None):
        self.tp = tp
        self.window = window
        self.payload = payload
        self.count = count
        self.sequence = sequence
        self.queued_at = queued_at
        self.sent_at = 0.0
        self.retries = 0
        self.key: tuple[str, int] | None = None


class _Partition:
    """The sequenced requests of one partition (acks=1).

    ``unanswered`` holds every request not yet answered nor given up on, by sequence, oldest
    first: the first is the ``first_unacked`` that each request carries. ``unsent`` is its
    tail that waits to go (behind a full window, or after a retry, until ``resume_at``); while
    it is not empty no newer request goes ahead of it.
    """

    __slots__ = ("tp", "producer_id", "next_sequence", "unanswered", "unsent", "resume_at",
                 "requests")

    def __init__(self, tp: tuple[str, int], producer_id: int):
        self.tp = tp
        self.requests = 0           # requests of the partition in flight
        self.producer_id = producer_id
        self.next_sequence = 0
        self.unanswered: dict[int, _Request] = {}
        self.unsent: deque[_Request] = deque()
        self.resume_at = 0.0


class _Batch:
    """The framed messages waiting for one partition, when the first of them came, and, once
    taken for sending, how many of them were taken (None while open). An audited producer's
    batch is stamped when it opens (``stamp``, ms, and the framing ``prefix`` of its unkeyed
    messages); its messages carry that time, so the batch is one audit window (``window``;
    None: not audited), counted once, as a whole, when it is acknowledged."""

    __slots__ = ("messages", "started", "taken", "window", "stamp", "prefix", "prefix_crc")

    def __init__(self, started: float):
        self.messages: list[bytes] = []
        self.started = started
        self.taken: int | None = None
        self.window: int | None = None


class Producer:
    """Sends messages in batches, one MessageSet per partition (see the module docstring).

    Order: with acks=1 each partition's order is kept across retries and broker restarts, so
    the first appearance of every message in the log follows the order of send() (from one
    thread), and none is stored twice: ``idempotent=True`` (the default) promises no duplicates
    and no reordering per partition across retries, leader changes and broker restarts for as
    long as the producer lives, within the limits broker/producer_state.py states (a set
    appended after the last producer snapshot of a broker that crashed with no replica of it);
    ``idempotent=False`` sends unsequenced (producer id 0): a retry may store a batch twice.
    A batch given up on (an error that does not pass, or ``retries`` spent) is reported to ``on_delivery``
    and raised by the next send(), flush() or close(); the ones after it keep their order, and
    it may still have been stored if only its answer was lost. acks=0 is the paper's fire and
    forget: no sequence, and no order promised across a broker restart.
    """

    def __init__(self, zookeeper: str | None = None, *, config: ProducerConfig | None = None,
                 partitioner="random", on_delivery=None, on_acknowledged=None, data_dir=None,
                 session_of: BrokerPool | None = None, **settings):
        """``settings`` are ProducerConfig's (clients/config.py), over ``config`` if given.

        ``partitioner``: "random" (keyed messages go by their key's hash) or a callable
        ``(topic, key, partitions) -> partition``. ``on_delivery(topic, partition, payload,
        base_offset, error)`` runs for each acks=1 batch as it is acknowledged or given up on
        (``base_offset`` None without an error: a duplicate the broker knew it had stored, but
        no longer where); ``on_acknowledged(count, seconds)`` for each acknowledged batch, with
        the seconds since its first message was queued (what ``sluice perf`` turns into latency
        percentiles). ``session_of``: a BrokerPool whose ZooKeeper session and view to use
        (an audit publisher's producer: clients/audit.py)."""
        config = ProducerConfig.build(config, **settings)
        callable_or_none("on_delivery", on_delivery)
        callable_or_none("on_acknowledged", on_acknowledged)
        self.config = config
        self.batch_size = config.batch_size
        self.linger_s = config.linger_ms / 1000
        self.acks = config.acks
        self._wire_acks = protocol.ACKS_ALL if config.acks == "all" else config.acks
        self.retries = config.retries
        self.request_timeout_s = config.request_timeout_ms / 1000
        self.retry_backoff_s = config.retry_backoff_ms / 1000
        self.max_in_flight = config.max_in_flight
        self.max_message_bytes = config.max_message_bytes
        self.max_request_bytes = config.max_request_bytes
        self.on_delivery = on_delivery
        self.on_acknowledged = on_acknowledged
        self.idempotent = config.idempotent
        self.producer_id = new_producer_id() if config.idempotent else 0
        self._partitioner = partitioners.make(partitioner)
        self._batch_sent = getattr(self._partitioner, "batch_sent", None)
        coalescing = config.batch_size == 1 and config.acks == 0 and not config.audit
        self._pool = BrokerPool(zookeeper, data_dir, config.request_timeout_ms,
                                credentials=config.credentials, session_of=session_of,
                                **({"push_hwm": coalescers.PUSH_HWM} if coalescing else {}))
        self._lock = threading.RLock()
        self._batches: dict[tuple[str, int], _Batch] = {}
        self._partition_counts: dict[str, int] = {}
        self._available: dict[str, tuple[int, ...]] = {}
        self._random = isinstance(self._partitioner, partitioners.RandomPartitioner)
        self._push_routes: dict[tuple[str, int], tuple[zmq.Socket, bytes]] = {}
        self._request_routes: dict[tuple[str, int], tuple[Connection, bytes]] = {}
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._in_flight: dict[tuple[str, int], list[_Request]] = {}
        self._sets_per_request = (SETS_PER_REQUEST if self._wire_acks == 1 and config.linger_ms > 0
                                  else 1)
        self._partition_requests = max(1, config.max_in_flight // self._sets_per_request)
        self.requests = 0           # acks=1 requests sent (each of one or more sets)
        self._load: Counter[str] = Counter()
        self._waiting: dict[tuple[str, int], _Partition] = {}
        self._error: Exception | None = None
        self._closed = False
        self._sent = 0
        self.acked = 0
        self._dropped = 0
        self.retried = 0
        self._stop = threading.Event()
        self._coalescer: coalescers.Coalescer | None = None
        self._put = None
        if coalescing:
            self._coalescer = coalescers.Coalescer(
                self._pool.push, self.request_timeout_s, config.max_request_bytes,
                self._sender_failed, self._queue_taken if self._batch_sent is not None else None)
            self._put = self._coalescer.put
        self._pool.view.add_listener(self._forget_routes)
        self._timer = None
        self._tally: audits.Tally | None = None
        self._audit_thread = None
        if config.audit:
            self._tally = audits.Tally()
            self._window_ms = config.audit_window_ms
            self._publisher = audits.Publisher(
                zookeeper, data_dir, config.credentials, audits.source_fields(
                    audits.PRODUCER, producer_id=f"{self.producer_id or new_producer_id():016x}"),
                self._window_ms, session_of=self._pool)
            self._audit_thread = threading.Thread(target=self._audit_loop, name="producer-audit",
                                                  daemon=True)
            self._audit_thread.start()
        if config.linger_ms > 0 and not (config.batch_size == 1 and config.acks == 0):
            self._timer = threading.Thread(target=self._linger_loop, name="producer-linger",
                                           daemon=True)
            self._timer.start()

    # --- public ----------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        """Messages handed to sending (acks=0 batch 1: taken by the sender thread)."""
        return self._sent + (self._coalescer.sent + self._coalescer.dropped
                             if self._coalescer is not None else 0)

    @property
    def dropped(self) -> int:
        """acks=0 messages that could not even be handed to ZeroMQ."""
        return self._dropped + (self._coalescer.dropped if self._coalescer is not None else 0)

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             partition: int | None = None) -> None:
        """Queue one message; it leaves with its partition's batch."""
        if self._closed:
            raise RuntimeError("send() on a closed Producer")
        if type(value) is not bytes and not isinstance(value, (bytearray, memoryview)):
            raise InvalidArgument(f"value must be bytes, not {type(value).__name__}")
        if key is not None and not isinstance(key, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"key must be bytes or None, not {type(key).__name__}")
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
            raise topics.partition_error(topic, partitions, partition)
        tp = (topic, partition)
        if self._error is not None:
            with self._lock:
                self._raise_pending()
        if self._tally is None:
            encoded = _encode(value, key)
            if self._put is not None:       # acks=0 batch 1: the sender's take ends the batch
                self._put(tp, encoded)
                return
            if self.batch_size == 1:
                with self._lock:
                    if chosen and self._batch_sent is not None:
                        self._batch_sent(topic, partition)
                    self._send_set(tp, encoded, 1, _monotonic() if self.acks else 0.0, None)
                return
            batch = self._batches.get(tp) or self._batches.setdefault(tp, _Batch(_monotonic()))
        elif self.batch_size == 1:
            self._send_audited_alone(tp, value, key, chosen)
            return
        else:       # audited: stamped with the batch's time, the batch's prefix reused (inline)
            batch = self._batches.get(tp) or self._batches.setdefault(tp, self._stamped_batch())
            encoded = (_join((_pack_header(_STAMPED_SIZE + len(value), _MAGIC_RECORD,
                                           _crc32(value, batch.prefix_crc)), batch.prefix, value))
                       if key is None else _encode_stamped(value, key, batch.stamp))
        messages = batch.messages
        messages.append(encoded)
        if batch.taken is not None or len(messages) >= self.batch_size:
            self._appended_to_full_or_taken(tp, batch, encoded)

    def _appended_to_full_or_taken(self, tp: tuple[str, int], batch: _Batch, encoded) -> None:
        """Send a batch this message filled, or requeue the message if the batch it went into
        had already been taken without it."""
        with self._lock:
            if batch.taken is None:
                self._take_and_send(tp, batch)
                return
            if any(m is encoded for m in batch.messages[batch.taken:]):
                fresh = self._batches.get(tp)
                if fresh is None or fresh.window != batch.window:
                    if fresh is not None:
                        self._take_and_send(tp, fresh)
                    fresh = self._batches[tp] = (_Batch(_monotonic()) if batch.window is None
                                                 else self._stamped_batch(batch))
                fresh.messages.append(encoded)

    def _send_audited_alone(self, tp: tuple[str, int], value, key, chosen: bool) -> None:
        """send() of an audited producer with batch_size 1: stamped with its own time."""
        stamp = int(_time() * 1000)
        encoded = _encode_stamped(value, key, stamp)
        with self._lock:
            if chosen and self._batch_sent is not None:
                self._batch_sent(*tp)
            self._send_set(tp, encoded, 1, _monotonic() if self.acks else 0.0,
                           stamp - stamp % self._window_ms)

    def _stamped_batch(self, like: _Batch | None = None) -> _Batch:
        """A new audited batch stamped now (or with ``like``'s stamp: a message that missed
        its batch keeps the time it was framed with)."""
        batch = _Batch(_monotonic())
        stamp = int(_time() * 1000) if like is None else like.stamp
        batch.stamp = stamp
        batch.window = stamp - stamp % self._window_ms
        batch.prefix, batch.prefix_crc = message.stamped_prefix(stamp)
        return batch

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every queued batch and, for acks=1, wait until each is answered or given up;
        an audited producer then publishes its counts, the open windows' too."""
        try:
            self._flush(timeout_s)
        finally:
            if self._tally is not None:
                self._publish_audit(closed_only=False)

    def _flush(self, timeout_s: float | None) -> None:
        if self._coalescer is not None:
            self._coalescer.flush()
        with self._lock:
            for tp, batch in list(self._batches.items()):
                self._take_and_send(tp, batch)
            if self.acks:
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                while self._in_flight or self._waiting:
                    if deadline is not None and time.monotonic() > deadline:
                        unanswered = sum(len(p.unanswered) for p in self._partitions.values())
                        raise protocol.RequestTimedOut(
                            f"{unanswered} batch(es) still unacknowledged")
                    self._collect(50)
            self._raise_pending()

    def close(self, timeout_s: float | None = None) -> None:
        """Flush (waiting at most ``timeout_s`` for acknowledgements; None: until each is
        answered or given up) and let go of every connection."""
        if self._closed:
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed = True
            self._stop.set()
            if self._coalescer is not None:
                self._coalescer.close()
            if self._timer is not None:
                self._timer.join(timeout=1)
            if self._audit_thread is not None:
                self._audit_thread.join(timeout=5)
                self._publisher.close()
                if self._tally.counts:
                    log.error("audit counts of %d window(s) could not be published and are "
                              "lost: %s", len(self._tally.counts), self._tally.counts)
            self._pool.close()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- sending ---------------------------------------------------------------------------

    def _take_and_send(self, tp: tuple[str, int], batch: _Batch) -> None:
        """Close an open batch and send what it holds (under the lock), cut into sets of at most
        max_request_bytes (a bigger message alone). The cut is made here, once per batch, and
        not by counting bytes in send(): per message that costs more than the cut ever does."""
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
            self._send_set(tp, payload, count, batch.started, batch.window)
            return
        for run, n in split_set(messages[:count], self.max_request_bytes):
            self._send_set(tp, run, n, batch.started, batch.window)

    def _send_set(self, tp: tuple[str, int], payload: bytes, count: int, queued_at: float,
                  window: int | None) -> None:
        """Send one MessageSet. acks=0: two plain sends on the partition's PUSH socket (pyzmq's
        send_multipart and its Python-level send wrapper cost more than the set's own work for
        small batches; ZeroMQ takes a multipart message whole or not at all). acks=1: once the
        partition and its broker have room in their windows, the partition's next sequence."""
        self._sent += count
        if self.acks == 0:
            if window is not None:
                self._tally.add(tp[0], window, 0, count)
            try:
                route = self._push_routes.get(tp)
                if route is None:
                    route = self._push_routes[tp] = (self._pool.push(*tp),
                                                     protocol.encode_produce(0, *tp, 0))
                sock, header = route
                zmq_send(sock, header, zmq.SNDMORE)
                zmq_send(sock, payload)
            except zmq.Again:
                self._dropped += count
            except protocol.SluiceError as exc:
                if not exc.retriable:
                    raise
                self._dropped += count
            return
        state = self._partitions.get(tp) or self._partitions.setdefault(
            tp, _Partition(tp, self.producer_id))
        endpoint = self._endpoint_of(tp)
        while len(state.unanswered) >= self.max_in_flight or (
                endpoint is not None and self._load[endpoint] >= self.max_in_flight):
            self._collect(self.request_timeout_s * 1000)
        if state.requests >= self._partition_requests:
            self._collect(0)        # the set waits only if no answer is in yet
        if state.next_sequence == SEQUENCE_LIMIT:
            self._renumber(state)
        request = _Request(tp, payload, count, state.next_sequence, queued_at, window)
        state.next_sequence += 1
        state.unanswered[request.sequence] = request
        state.unsent.append(request)
        self._pump(state)

    def _renumber(self, state: _Partition) -> None:
        """Sequences of the partition are used up: once all it sent is answered, go on under a
        new producer id (the broker sees a new producer and starts from its first_unacked)."""
        while state.unanswered:
            self._collect(self.request_timeout_s * 1000)
        state.producer_id = new_producer_id() if self.idempotent else 0
        state.next_sequence = 0

    def _endpoint_of(self, tp: tuple[str, int]) -> str | None:
        """The broker a partition's next request goes to (None while it has none): the window
        of requests in flight is per broker, so one that hangs cannot stall the others."""
        route = self._request_routes.get(tp)
        if route is not None:
            return route[0].endpoint
        try:
            return self._pool.leader(*tp).endpoint
        except protocol.SluiceError:
            return None     # _pump meets the same error and decides whether to retry

    def _forget_routes(self) -> None:
        """The cluster view changed (a broker moved, a topic came or went): look routes up anew."""
        if self._coalescer is not None:
            self._coalescer.forget_routes()
        self._push_routes.clear()
        self._request_routes.clear()
        self._partition_counts.clear()
        self._available.clear()

    def _pump(self, state: _Partition) -> None:
        """Send the partition's waiting requests, oldest first, while its broker's window has
        room; what cannot go yet waits in ``_waiting``."""
        unsent = state.unsent
        tp = state.tp
        if state.resume_at:
            if state.resume_at > _monotonic() or any(
                    request.key is not None for request in state.unanswered.values()):
                self._waiting[tp] = state
                return
            state.resume_at = 0.0
        while unsent:
            route = self._request_routes.get(tp)
            if route is None:
                try:
                    conn = self._pool.connection(*tp)
                except protocol.SluiceError as exc:
                    if not exc.retriable:     # e.g. AUTHENTICATION_FAILED: every unsent
                        self._give_up(state, exc)   # batch fails with it, none is lost silently
                        return
                    self._rewind(state, exc, unsent[0].sequence)
                    return
                route = self._request_routes[tp] = (conn, protocol.encode_produce(
                    0, *tp, self._wire_acks)[protocol.API.size:_PRODUCE_PREFIX_END])
            conn, fields = route
            endpoint = conn.endpoint
            if (self._load[endpoint] >= self.max_in_flight
                    or state.requests >= self._partition_requests):
                self._waiting[tp] = state
                return
            group = self._take_group(unsent)
            corr = conn.next_id()
            key = (endpoint, corr)
            now = _monotonic()
            for request in group:
                request.key = key
                request.sent_at = now
            self._in_flight[key] = group
            self._load[endpoint] += 1
            state.requests += 1
            self.requests += 1
            sequence = protocol.SEQUENCE_FIELDS.pack(state.producer_id, group[0].sequence,
                                                     next(iter(state.unanswered)))
            if len(group) == 1:
                conn.send([protocol.API.pack(protocol.Api.PRODUCE, corr) + fields + sequence,
                           group[0].payload])
            else:
                payloads = [request.payload for request in group]
                conn.send([protocol.API.pack(protocol.Api.PRODUCE_SETS_ACKED, corr) + fields
                           + sequence, protocol.encode_set_sizes(list(map(len, payloads))),
                           b"".join(payloads)])
        self._waiting.pop(tp, None)

    def _take_group(self, unsent: deque) -> list[_Request]:
        """The requests that leave in the next request: the oldest waiting set and the ones
        that waited behind it with the sequences that follow (acks=1: up to
        ``SETS_PER_REQUEST`` of them and ``max_request_bytes``). Only sets that are already
        waiting go together: none is held back for others to come."""
        first = unsent.popleft()
        group = [first]
        if not unsent or self._sets_per_request == 1:
            return group
        room = self.max_request_bytes - _SETS_HEADROOM - len(first.payload) - 4
        sequence = first.sequence
        while unsent and len(group) < self._sets_per_request:
            nxt = unsent[0]
            sequence += 1
            if nxt.sequence != sequence or len(nxt.payload) + 4 > room:
                break
            room -= len(nxt.payload) + 4
            group.append(unsent.popleft())
        return group

    def _rewind(self, state: _Partition, error: protocol.SluiceError, since: int) -> None:
        """A request of the partition failed in passing: send its unanswered requests from
        sequence ``since`` on again, oldest first, once ``retry_backoff_ms`` passed and the
        older ones still in flight are answered (until then a resend could only be refused as
        out of order: its first_unacked would still name them). Those from ``since`` on that
        are in flight are forgotten (a late reply is ignored; the broker answers the new send
        as a duplicate if the first was stored); those whose retries are spent are given up."""
        for request in state.unanswered.values():
            key = request.key
            if key is not None and request.sequence >= since:
                if self._in_flight.pop(key, None) is not None:
                    self._load[key[0]] -= 1
                    state.requests -= 1
                request.key = None
        for request in list(state.unanswered.values()):
            if request.sequence < since:
                continue
            if request.retries >= self.retries:
                self._finish(state, request, None, error)
            else:
                request.retries += 1
                self.retried += 1
        state.unsent = deque(request for request in state.unanswered.values()
                             if request.sequence >= since)
        if state.unsent:
            state.resume_at = _monotonic() + self.retry_backoff_s
            self._waiting[state.tp] = state
        else:
            state.resume_at = 0.0
            self._waiting.pop(state.tp, None)

    def _give_up(self, state: _Partition, error: protocol.SluiceError) -> None:
        """The partition's broker cannot be used (a non-retriable error on connecting): its
        unsent requests fail with ``error``, reported to on_delivery and by flush()."""
        while state.unsent:
            request = state.unsent.popleft()
            if request.sequence in state.unanswered:
                self._finish(state, request, None, error)

    def _finish(self, state: _Partition, request: _Request, base: int | None,
                error: protocol.SluiceError | None) -> None:
        """A request was answered (``error`` None) or given up on: it leaves the partition's
        unanswered requests, so the next first_unacked moves past it."""
        del state.unanswered[request.sequence]
        topic, partition = request.tp
        if error is not None:
            if self.on_delivery is not None:
                self.on_delivery(topic, partition, request.payload, None, error)
            if self._error is None:
                self._error = error
            return
        self.acked += request.count
        if request.window is not None:
            self._tally.add(topic, request.window, request.count)
        if self.on_acknowledged is not None:
            self.on_acknowledged(request.count, _monotonic() - request.queued_at)
        if self.on_delivery is not None:
            self.on_delivery(topic, partition, request.payload, base, None)

    def _collect(self, timeout_ms: float) -> None:
        """Take the replies that are in; when there are none, wait up to ``timeout_ms`` for
        some. Then deal with what timed out, and send what waits and may go."""
        if self._waiting:
            self._resume(_monotonic())
        conns = [conn for endpoint in {endpoint for endpoint, _ in self._in_flight}
                 if (conn := self._pool.existing(endpoint)) is not None]
        if not self._take_replies(conns) and timeout_ms > 0:
            wait = min(timeout_ms, 50) if self._waiting else timeout_ms
            if len(conns) == 1:
                self._take_replies(conns if conns[0].socket.poll(wait) else [])
            elif conns:
                poller = zmq.Poller()
                for conn in conns:
                    poller.register(conn.socket, zmq.POLLIN)
                by_socket = {conn.socket: conn for conn in conns}
                self._take_replies([by_socket[sock] for sock, _ in poller.poll(wait)])
            else:
                time.sleep(min(timeout_ms, 50) / 1000)
        now = _monotonic()
        self._expire(now)
        if self._waiting:
            self._resume(now)

    def _resume(self, now: float) -> None:
        for state in list(self._waiting.values()):
            if state.resume_at <= now:
                self._pump(state)

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
        group = self._in_flight.pop((endpoint, corr), None)
        if group is None:
            return          # a reply to a send that was since made again, or given up on
        self._load[endpoint] -= 1
        for request in group:
            request.key = None
        request = group[0]
        state = self._partitions[request.tp]
        state.requests -= 1
        try:
            if len(group) == 1:
                _, (base, nxt) = protocol.decode_response(frames[0], protocol.PRODUCE_REPLY)
                outcomes = [(base, nxt)]
            else:
                outcomes = protocol.decode_sets_reply(frames[0])
                if len(outcomes) != len(group):
                    raise protocol.MalformedRequest(
                        f"an answer of {len(outcomes)} outcome(s) to {len(group)} sets")
        except protocol.SluiceError as exc:
            outcomes = [exc] * len(group)
        for request, outcome in zip(group, outcomes):
            if type(outcome) is tuple:
                base, nxt = outcome
                self._finish(state, request, base if nxt > base else None, None)
            elif outcome.retriable:     # this set and every later one of the partition again
                if self._pool.leader_failed(*request.tp, endpoint, outcome):
                    self._request_routes.pop(request.tp, None)
                self._rewind(state, outcome, request.sequence)
                return
            else:
                self._finish(state, request, None, outcome)

    def _expire(self, now: float) -> None:
        """A request not answered within ``request_timeout_ms``: its broker's connection is
        rebuilt (dropping what ZeroMQ still queued for it), so every partition with a request
        in flight there sends again. ``_in_flight`` is in the order the requests went out, so
        only the oldest needs a look."""
        while self._in_flight:
            (endpoint, _), (oldest, *_) = next(iter(self._in_flight.items()))
            if now - oldest.sent_at <= self.request_timeout_s:
                return
            conn = self._pool.existing(endpoint)
            if conn is not None:
                conn.reset()
            self._pool.view.refresh()
            error = protocol.RequestTimedOut(
                f"no acknowledgement for {oldest.tp[0]}/{oldest.tp[1]} from {endpoint} within "
                f"{self.request_timeout_s * 1000:.0f} ms")
            stalled = {group[0].tp: self._partitions[group[0].tp]
                       for (at, _), group in self._in_flight.items() if at == endpoint}
            for state in stalled.values():
                self._rewind(state, error, next(iter(state.unanswered)))

    def _queue_taken(self, topic: str, partition: int) -> None:
        """The acks=0 sender took a partition's queue: that is its batch sent, so the sticky
        partitioner picks anew (under the lock, as every caller of batch_sent)."""
        with self._lock:
            self._batch_sent(topic, partition)

    def _sender_failed(self, error: protocol.SluiceError) -> None:
        """The acks=0 sender thread met an error that does not pass: the next send(), flush()
        or close() raises it."""
        if self._error is None:
            self._error = error

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _audit_loop(self) -> None:
        """Publish each window's counts soon after it closes (late acknowledgements of a
        closed window follow in another record). The publisher is set up first, so that the
        final flush does not pay for it."""
        self._publisher.prepare()
        tick = min(1.0, self._window_ms / 4000)
        while not self._stop.wait(tick):
            self._publish_audit(closed_only=True)

    def _publish_audit(self, closed_only: bool) -> None:
        """Take the counts (of the closed windows, or all) under the lock and publish them
        outside it; what could not be published is kept for the next time."""
        with self._lock:
            counts = (self._tally.pop_closed(audits.now_ms(), self._window_ms) if closed_only
                      else self._tally.pop_all())
        if counts:
            audits.publish_or_keep(self._publisher, self._tally, counts, self._lock)

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
                if self.acks and (self._in_flight or self._waiting):
                    self._collect(0)

