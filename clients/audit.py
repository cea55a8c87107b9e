"""The audit trail (the paper's LinkedIn deployment): count messages per topic and time window,
publish the counts to the internal topic ``__audit``, so that ``sluice audit`` can set what was
produced beside what was stored and what each group consumed.

A window is ``window_ms`` long (default one minute) and starts at a multiple of it since the
epoch; a message belongs to the window of its timestamp. An audited producer writes magic 2
messages stamped with their send time: the time their batch opened (its first ``send()``; at
most ``linger_ms`` before the message's own with the linger timer on), so a batch is one window
and is counted as a whole when acknowledged; every reader, the consumer of any group and
``sluice audit`` scanning the log, then puts a message in the window its producer counted it
in. Messages without a timestamp (magic 0/1, from producers that do not audit) are not counted
by consumers.

A count record is a delta: what its source counted for one (topic, window) since its previous
record. A window usually gets one record per source (when it closes, or when the source flushes
or closes); acknowledgements that come after that make another. ``sluice audit`` sums them.
Records are JSON, keyed by their source, so one source's records stay in order on one partition
and many sources spread over the partitions.

>>> window_of(1_700_000_123_456, 60_000)
1700000100000
>>> t = Tally()
>>> t.add("clicks", 0, 3); t.add("clicks", 0, 2); t.add("clicks", 60_000, 1, 1)
>>> t.pop_closed(60_000, 60_000)
{('clicks', 0): [5, 0]}
>>> t.pop_all()
{('clicks', 60000): [1, 1]}
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from kazoo.exceptions import KazooException

from clients.partitioner import hash_partition
from coordinator.errors import InvalidArgument, RequestTimedOut, SluiceError

AUDIT_TOPIC = "__audit"
AUDIT_PARTITIONS = 4
DEFAULT_WINDOW_MS = 60_000
PRODUCER = "producer"
CONSUMER = "consumer"
PUBLISH_RETRIES = 50        # 200 ms apart: a record rides out a broker restart of ~10 s
PUBLISH_WAIT_S = 2.0        # a publish waits this long for its acknowledgements, then goes on
CLOSE_WAIT_S = 10.0         # closing waits this long for what is still unacknowledged
log = logging.getLogger(__name__)


def window_of(timestamp_ms: int, window_ms: int) -> int:
    """The start (ms since the epoch) of the window that holds ``timestamp_ms``.

    >>> window_of(59_999, 60_000), window_of(60_000, 60_000)
    (0, 60000)
    """
    return timestamp_ms - timestamp_ms % window_ms


def check_window_ms(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1000:
        raise InvalidArgument(f"audit_window_ms must be an integer of at least 1000, not "
                              f"{value!r}")
    return value


class Tally:
    """Counts per (topic, window start): ``[first, second]`` (a producer: acknowledged, sent
    without acknowledgement; a consumer: consumed, unused). The caller serialises access."""

    __slots__ = ("counts",)

    def __init__(self):
        self.counts: dict[tuple[str, int], list[int]] = {}

    def add(self, topic: str, window: int, first: int, second: int = 0) -> None:
        entry = self.counts.get((topic, window))
        if entry is None:
            self.counts[(topic, window)] = [first, second]
        else:
            entry[0] += first
            entry[1] += second

    def pop_closed(self, now_ms: int, window_ms: int) -> dict[tuple[str, int], list[int]]:
        """Take the counts of the windows that ended at or before ``now_ms``."""
        closed = {key: c for key, c in self.counts.items() if key[1] + window_ms <= now_ms}
        for key in closed:
            del self.counts[key]
        return closed

    def pop_all(self) -> dict[tuple[str, int], list[int]]:
        counts, self.counts = self.counts, {}
        return counts

    def merge(self, counts: dict[tuple[str, int], list[int]]) -> None:
        """Put counts back (a publish that failed: they go with the next one)."""
        for (topic, window), (first, second) in counts.items():
            self.add(topic, window, first, second)


def source_fields(kind: str, **ids) -> dict:
    """What every record of one source carries: its kind, host, pid and ``ids`` (a producer's
    ``producer_id``; a consumer's ``group`` and ``consumer_id``)."""
    return {"source": kind, "host": socket.gethostname(), "pid": os.getpid(), **ids}


def encode_records(source: dict, counts: dict[tuple[str, int], list[int]],
                   window_ms: int) -> list[bytes]:
    """One JSON record per (topic, window), in window order.

    >>> encode_records({"source": "producer", "producer_id": "ab"}, {("t", 0): [4, 1]}, 60000)
    [b'{"source": "producer", "producer_id": "ab", "topic": "t", "window_start": 0, \
"window_ms": 60000, "acknowledged": 4, "unacknowledged": 1}']
    """
    records = []
    for (topic, window), (first, second) in sorted(counts.items(), key=lambda kv: kv[0][1]):
        record = dict(source, topic=topic, window_start=window, window_ms=window_ms)
        if source["source"] == PRODUCER:
            record.update(acknowledged=first, unacknowledged=second)
        else:
            record.update(consumed=first)
        records.append(json.dumps(record).encode())
    return records


def decode_record(value: bytes) -> dict:
    """A record read back; raises ValueError for one that is not a count record.

    >>> decode_record(b'{"source": "consumer", "group": "g", "topic": "t", '
    ...               b'"window_start": 0, "window_ms": 60000, "consumed": 3}')["consumed"]
    3
    """
    record = json.loads(value)
    if not isinstance(record, dict) or record.get("source") not in (PRODUCER, CONSUMER):
        raise ValueError("not an audit count record")
    fields = (("acknowledged", "unacknowledged") if record["source"] == PRODUCER
              else ("consumed",))
    for name in ("window_start", "window_ms") + fields:
        if isinstance(record.get(name), bool) or not isinstance(record.get(name), int):
            raise ValueError(f"audit record without an integer {name}")
    if not isinstance(record.get("topic"), str):
        raise ValueError("audit record without a topic")
    if record["source"] == CONSUMER and not isinstance(record.get("group"), str):
        raise ValueError("consumer audit record without a group")
    return record


class Publisher:
    """Sends count records to ``__audit`` through a producer of its own (acks=1, not audited),
    made by ``prepare()`` or on first use; creates the topic when it is missing.

    ``session_of``: the client's BrokerPool, whose ZooKeeper session and cluster view that
    producer uses (sockets of its own): a second session costs a client a connect and a watch
    on every topic's config node, which on a cluster of a few dozen topics is tens of ms.
    ``ready``: whether that producer and its connection are made."""

    def __init__(self, zookeeper, data_dir, credentials, source: dict, window_ms: int,
                 session_of=None):
        self._where = (zookeeper, data_dir, credentials)
        self._session_of = session_of
        self.source = source
        self.window_ms = window_ms
        self.key = "-".join(str(v) for k, v in source.items() if k != "source").encode()
        self._producer = None
        self._lock = threading.Lock()
        self.published = 0
        self.ready = False

    def prepare(self) -> bool:
        """Make the producer, ``__audit`` and the connection to the leader of this source's
        partition of it now (an audited producer does this as it starts, on its audit
        thread), so that a publish, the one at the final flush too, is a send and its round
        trip. Whether that worked; when not, the first publish tries again and keeps the
        counts if it cannot."""
        try:
            with self._lock:
                producer = self._open()
                pool = producer._pool
                pool.connection(AUDIT_TOPIC, hash_partition(self.key,
                                                            pool.partitions(AUDIT_TOPIC)))
                self.ready = True
                return True
        except (SluiceError, KazooException) as exc:
            log.warning("audit publisher not set up yet (%s: %s); the first publish tries "
                        "again", type(exc).__name__, exc)
            return False

    def publish(self, counts: dict[tuple[str, int], list[int]]) -> None:
        """Send one record per (topic, window) and wait up to PUBLISH_WAIT_S for the
        acknowledgements. Raises only when nothing was sent (no __audit, no broker to send
        to): the caller keeps the counts. Records sent but not yet acknowledged stay with the
        producer, which sends them again on its next flush (never twice: it is idempotent);
        records it gives up on are logged as lost (their windows may show a loss that was
        not one, never hide one)."""
        if not counts:
            return
        with self._lock:
            producer = self._open()
            records = encode_records(self.source, counts, self.window_ms)
            producer.send(AUDIT_TOPIC, records[0], key=self.key)
            try:
                for record in records[1:]:
                    producer.send(AUDIT_TOPIC, record, key=self.key)
                producer.flush(timeout_s=PUBLISH_WAIT_S)
            except RequestTimedOut:
                log.warning("audit records for %d window(s) not acknowledged yet; they go with "
                            "the next publish", len(counts))
            except SluiceError as exc:
                log.error("audit records given up (%s): windows they counted may show a loss "
                          "that was not one", exc)
            self.published += len(counts)

    def _open(self):
        if self._producer is None:
            from clients.producer import Producer
            from coordinator import topics
            zookeeper, data_dir, credentials = self._where
            producer = Producer(zookeeper, data_dir=data_dir, credentials=credentials, acks=1,
                                linger_ms=0, batch_size=64, retries=PUBLISH_RETRIES,
                                session_of=self._session_of)
            try:
                topics.get(producer._pool.zk, AUDIT_TOPIC)
            except topics.UnknownTopic:
                try:
                    topics.create(producer._pool.zk, AUDIT_TOPIC, AUDIT_PARTITIONS)
                    log.info("created the audit topic %s", AUDIT_TOPIC)
                except topics.TopicExists:
                    pass
            self._producer = producer
        return self._producer

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.close(timeout_s=CLOSE_WAIT_S)
                except SluiceError as exc:
                    log.error("audit records still unacknowledged at close are lost (%s): "
                              "windows they counted may show a loss that was not one", exc)
                finally:
                    self._producer = None
                    self.ready = False


def publish_or_keep(publisher: Publisher, tally: Tally, counts, lock) -> bool:
    """Publish ``counts``; when that fails, log it and merge them back into ``tally`` (under
    ``lock``) so the next publish carries them. Whether they went."""
    try:
        publisher.publish(counts)
        return True
    except (SluiceError, KazooException) as exc:
        log.warning("audit counts for %d window(s) not published yet (%s: %s); kept for the "
                    "next try", len(counts), type(exc).__name__, exc)
        with lock:
            tally.merge(counts)
        return False


def now_ms() -> int:
    return int(time.time() * 1000)
