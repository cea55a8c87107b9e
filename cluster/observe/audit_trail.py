"""Reading the audit trail: the count records of ``__audit`` and the stored counts of the logs.

Stored is counted by timestamp: every message of the topic's partitions, from the offsets API's
answer for ``since`` (segment granularity: at or before it) to the visible end, is put in the
window of its timestamp, as producers and consumers put it. Messages without a timestamp
(magic 0/1, from producers that do not audit) are not counted. The scan reads the whole range:
its cost is the log's size (``--since`` bounds it).
"""
from __future__ import annotations

import logging
from collections import Counter

from clients.audit import AUDIT_TOPIC, decode_record, window_of
from clients.simple_consumer import SimpleConsumer
from coordinator import topics

log = logging.getLogger(__name__)
READ_TIMEOUT_MS = 2000


def _read_partition(pool, topic: str, partition: int, since_ms: int | None):
    """The messages of one partition from ``since_ms`` (None: the log start) up to its
    visible end when the read began."""
    consumer = SimpleConsumer(topic, partition, "earliest", pool=pool, max_wait_ms=0,
                              timeout_ms=READ_TIMEOUT_MS)
    try:
        end = consumer.offset_of("latest")
        if since_ms is not None:
            consumer.seek(consumer.offset_of(since_ms))
        while consumer.position < end:
            messages = consumer.fetch()
            if not messages:
                break
            yield from messages
    finally:
        consumer.close()


def read_records(pool, since_ms: int | None = None) -> tuple[list[dict], int]:
    """Every count record of ``__audit`` (records written before ``since_ms`` are skipped by
    the window filter of the caller, not here: a late record of an old window is written
    late); and how many values were not count records."""
    try:
        partitions = pool.partitions(AUDIT_TOPIC)
    except topics.UnknownTopic:
        return [], 0
    records, bad = [], 0
    for partition in range(partitions):
        for m in _read_partition(pool, AUDIT_TOPIC, partition, None):
            try:
                records.append(decode_record(m.value))
            except ValueError:
                bad += 1
    return records, bad


def stored_counts(pool, topic: str, window_ms: int,
                  since_ms: int | None = None) -> Counter[tuple[str, int]]:
    """Messages in the log of ``topic`` per (topic, window start) of their timestamps."""
    counts: Counter[tuple[str, int]] = Counter()
    for partition in range(pool.partitions(topic)):
        for m in _read_partition(pool, topic, partition, since_ms):
            if m.timestamp is not None:
                counts[(topic, window_of(m.timestamp, window_ms))] += 1
    return counts
