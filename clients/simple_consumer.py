"""SimpleConsumer: pull one partition from an offset, as the paper's consumer API does.

Each fetch asks for (topic, partition, offset, max bytes) and long-polls: the broker holds the
request until ``min_bytes`` are there or ``max_wait_ms`` passed, so an idle consumer does not
spin. The consumer checks every message's CRC as it decodes the set and advances its position
to the last message's ``next_offset``. Passing failures (broker restarting, a timeout) are
retried (a leader that moved is followed: the same offset is fetched from the new leader,
see clients/brokers.py); errors a person must act on (offset out of range, not a message
boundary) are raised, naming the partition and offset (``exc.topic``, ``exc.partition``,
``exc.offset``).

A fetched set whose CRC check fails part-way gives the good messages before the bad one; the
next fetch, at the bad message, gets the broker's verdict. Where the broker says readable data
resumes, the consumer goes on there with a logged warning and a count (``data_loss_events``,
``data_loss_bytes``): a gap a recovery cut left, and a corrupt message unless ``on_corrupt`` is
"raise" (then CorruptMessage is raised with ``resume_offset``, the position unchanged, so the
caller can ``seek`` past it). An explicit starting offset outside the log is always raised.

Iterating keeps one fetch in flight ahead of the messages being yielded: as soon as a reply
arrives, the request for the bytes after it goes out (a broker returns whole messages only,
so the next offset is the fetched offset plus the reply's length, known before decoding), and
the broker reads the next chunk while this process decodes the last one.

    for m in SimpleConsumer("clicks", 0, offset="earliest", timeout_ms=1000):
        print(m.offset, m.value)
"""
from __future__ import annotations

import logging
import time
from itertools import chain
from typing import Iterator

from broker import message, protocol
from broker.message import Message
from clients import resume
from clients.brokers import BrokerPool, leader_moved
from clients.config import FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS, REQUEST_TIMEOUT_MS
from coordinator import settings, topics
from coordinator.errors import InvalidArgument

log = logging.getLogger(__name__)
_NAMED_OFFSETS = {"earliest": protocol.EARLIEST, "latest": protocol.LATEST}


class SimpleConsumer:
    def __init__(self, topic: str, partition: int, offset="earliest", zookeeper: str | None = None,
                 max_bytes: int = FETCH_MAX_BYTES, min_bytes: int = 1,
                 max_wait_ms: int = FETCH_MAX_WAIT_MS, timeout_ms: float | None = None,
                 request_timeout_ms: float = REQUEST_TIMEOUT_MS, data_dir=None,
                 pool: BrokerPool | None = None, on_corrupt: str = "skip",
                 credentials: str | None = None):
        settings.integer("partition", partition, minimum=0)
        if not (isinstance(offset, str) and offset in _NAMED_OFFSETS) and (
                isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
            raise InvalidArgument(f"offset must be 'earliest', 'latest' or a byte offset >= 0, "
                                  f"not {offset!r}")
        settings.integer("max_bytes", max_bytes, minimum=1)
        settings.integer("min_bytes", min_bytes, minimum=0)
        settings.integer("max_wait_ms", max_wait_ms, minimum=0)
        settings.one_of("on_corrupt", on_corrupt, resume.ON_CORRUPT)
        self.on_corrupt = on_corrupt
        self.data_loss_events = 0
        self.data_loss_bytes = 0
        self._decoded_whole = True
        self.topic = topic
        self.partition = partition
        self.max_bytes = max_bytes
        self.min_bytes = min_bytes
        self.max_wait_ms = max_wait_ms
        self.timeout_ms = timeout_ms
        self.request_timeout_ms = request_timeout_ms
        self._own_pool = pool is None
        self._pool = pool or BrokerPool(zookeeper, data_dir, request_timeout_ms,
                                        credentials=credentials)
        self.high_watermark = 0
        self.log_start = 0
        try:
            partitions = self._pool.partitions(topic)
            if partition >= partitions:
                raise topics.partition_error(topic, partitions, partition)
            self.position = offset if isinstance(offset, int) else self.offset_of(offset)
        except BaseException:
            self.close()
            raise

    def offset_of(self, when) -> int:
        """'earliest', 'latest', or a time in ms: the offsets API."""
        time_ms = _NAMED_OFFSETS.get(when, when)
        return self._retrying(lambda: self._pool.offset(self.topic, self.partition, time_ms))

    def seek(self, offset) -> None:
        self.position = offset if isinstance(offset, int) else self.offset_of(offset)

    def fetch(self) -> list[Message]:
        """One long-poll fetch from the current position; advances past what it returns. After
        a gap or a skipped corrupt message it fetches again where the data resumes, so an empty
        answer still means nothing more is there yet. An answer that the leadership moved is
        followed once, to the leader the view names then; other passing errors are raised
        with the position unchanged."""
        moved = False
        while True:
            offset = self.position
            try:
                data, next_offset = self._await(self._request(offset))
            except protocol.SluiceError as exc:
                if exc.retriable:
                    if leader_moved(exc) and not moved:
                        moved = True        # once more, to the leader the view names now
                        continue
                    raise
                self._resume_or_raise(exc, offset)
                continue
            messages = self._decode(data, offset)
            if messages:
                self.position = messages[-1].next_offset
            if self._decoded_whole and next_offset > self.position:
                self.position = next_offset     # past a compacted log's trailing gap
            return messages

    def __iter__(self) -> Iterator[Message]:
        """Messages forever, or until ``timeout_ms`` passes with none (one fetch ahead). The
        messages of a set are handed out by ``chain`` from the set's list, in C: the Python
        step runs once per fetch, not once per message."""
        return chain.from_iterable(self._fetched_sets())

    def _fetched_sets(self) -> Iterator[list[Message]]:
        """The decoded messages of each fetch, the position already past them."""
        last = time.monotonic()
        ahead = None
        while True:
            offset = self.position
            try:
                if ahead is None or ahead[2] != offset:
                    ahead = self._request(offset)
                data, next_offset = self._await(ahead)
                ahead = None
                if data:
                    self.position = next_offset
                    ahead = self._request(self.position)
            except protocol.SluiceError as exc:
                ahead, data = None, b""
                if not exc.retriable:
                    self._resume_or_raise(exc, offset)
                    continue
                time.sleep(0.2)
            if data:
                got = self._decode(data, offset)
                if got and not self._decoded_whole:
                    self.position = got[-1].next_offset   # stopped before a bad message
                yield got
                last = time.monotonic()
            elif self.timeout_ms is not None and (time.monotonic() - last) * 1000 >= self.timeout_ms:
                return

    def _decode(self, data, offset: int) -> list[Message]:
        """The whole valid messages at the start of a fetched set (a CRC error ends them)."""
        got: list[Message] = []
        self._decoded_whole = False
        try:
            message.decode_into(got, data, self.topic, self.partition, offset)
            self._decoded_whole = True
        except message.InvalidMessage as bad:
            if not got:
                raise resume.named(protocol.CorruptMessage(
                    f"the fetched message failed its check ({bad.reason})"),
                    self.topic, self.partition, offset) from None
        return got

    def _resume_or_raise(self, exc: protocol.SluiceError, offset: int) -> None:
        """A gap, or a corrupt message under on_corrupt="skip": move to where the data resumes,
        warn and count. Anything else: raise it, naming the partition."""
        decision = resume.decide(exc, offset, self.on_corrupt)
        if decision.action != "resume" or decision.kind not in ("gap", "corrupt"):
            raise resume.named(exc, self.topic, self.partition, offset) from None
        skipped = decision.resume - offset
        what = "a gap" if decision.kind == "gap" else "the corrupt message"
        log.warning("%s/%d: skipping %s at offset %d (%d bytes), resuming at %d: %s", self.topic,
                    self.partition, what, offset, skipped, decision.resume, exc)
        self.data_loss_events += 1
        self.data_loss_bytes += skipped
        self.position = decision.resume

    def _request(self, offset: int) -> tuple:
        """Send a fetch for ``offset``; what ``_await`` needs to take its reply."""
        conn = self._pool.connection(self.topic, self.partition)
        corr = conn.next_id()
        conn.send([protocol.encode_fetch(corr, self.topic, self.partition, offset,
                                         self.max_bytes, self.min_bytes, self.max_wait_ms)])
        return conn, corr, offset

    def _await(self, pending: tuple) -> tuple[bytes, int]:
        """The MessageSet of a fetch's reply and the offset just past it (replies to requests
        given up on are skipped); RequestTimedOut (after resetting the connection) when none
        comes in time."""
        conn, corr, _ = pending
        deadline = time.monotonic() + (self.max_wait_ms + self.request_timeout_ms) / 1000
        while True:
            frames = conn.recv((deadline - time.monotonic()) * 1000)
            if frames is None:
                conn.reset()
                self._pool.view.refresh()
                raise protocol.RequestTimedOut(
                    f"no reply from broker at {conn.endpoint} within "
                    f"{self.max_wait_ms + self.request_timeout_ms} ms")
            header = frames[0].buffer
            if protocol.RESPONSE.unpack_from(header)[0] != corr:
                continue
            try:
                _, (self.high_watermark, self.log_start) = protocol.decode_response(
                    header, protocol.FETCH_REPLY)
            except protocol.SluiceError as exc:
                self._pool.leader_failed(self.topic, self.partition, conn.endpoint, exc)
                raise
            data = frames[1].bytes if len(frames) > 1 else b""
            return data, protocol.fetch_next_offset(header, pending[2], len(data))

    def _retrying(self, call, attempts: int = 25):
        for attempt in range(attempts):
            try:
                return call()
            except protocol.SluiceError as exc:
                if not exc.retriable or attempt == attempts - 1:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()

    def __enter__(self) -> "SimpleConsumer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
