"""Kafka clients' produces counted for the audit trail, on the broker (``kafka_audit``): per
topic and window of the records' own timestamps (their CreateTime, kept in the magic 2 messages
the listener stores), what was acknowledged (acks 1 and all, once answered without error) and
what came with acks=0. Kafka clients know nothing of ``__audit``; the broker cannot publish
either (it uses no client), so ``METADATA`` carries the running totals (``kafka_audit``) and the
supervisor's sampler publishes what each closed window gained (cluster/observe/audit_counts.py).
A retried batch the broker answers as a duplicate is not counted again.

>>> from broker.message import encode_record
>>> s = b"".join(encode_record(b"v", None, t) for t in (1500, 1999, 2000))
>>> window_counts(s, 1000)
{1000: 2, 2000: 1}
>>> tally = AuditTally(1000)
>>> tally.add("t", {1000: 2}, acknowledged=True); tally.add("t", {1000: 1}, acknowledged=False)
>>> tally.describe()["counts"]
[['t', 1000, 2, 1]]
"""
from __future__ import annotations

import os
import struct

_SIZE = struct.Struct(">I").unpack_from
_TIMESTAMP = struct.Struct(">q").unpack_from
_TIMESTAMP_AT = 10          # size 4, magic 1, crc 4, attributes 1, then the timestamp
KEEP_WINDOWS = 120          # per topic: older windows are dropped (long since published)


def window_counts(message_set: bytes, window_ms: int, batches=None) -> dict[int, int]:
    """Messages of a MessageSet of magic 2 messages (the listener's) per window start.

    ``batches``: the record batches the set was made from (records.ProducedBatch, with their
    sizes), in order: a batch whose lowest and highest timestamp share a window is counted
    whole from its record count; only a batch across a window edge is walked message by
    message. Without them every message is read.

    >>> from broker.kafka.records import ProducedBatch
    >>> from broker.message import encode_record
    >>> stamps = (1500, 1999, 1999, 2000)
    >>> s = b"".join(encode_record(b"v", None, t) for t in stamps)
    >>> one = len(s) // 4
    >>> whole = ProducedBatch(-1, -1, -1, 2, 1500, 1999, 2 * one)
    >>> across = ProducedBatch(-1, -1, -1, 2, 1999, 2000, 2 * one)
    >>> window_counts(s, 1000, [whole, across]) == window_counts(s, 1000) == {1000: 3, 2000: 1}
    True
    """
    if batches is None:
        return _walk(message_set, 0, len(message_set), window_ms, {})
    counts: dict[int, int] = {}
    pos = 0
    for batch in batches:
        if batch.count:
            window = batch.lowest - batch.lowest % window_ms
            if batch.highest < window + window_ms:
                counts[window] = counts.get(window, 0) + batch.count
            else:
                _walk(message_set, pos, pos + batch.size, window_ms, counts)
        pos += batch.size
    return counts


def _walk(message_set: bytes, pos: int, end: int, window_ms: int,
          counts: dict[int, int]) -> dict[int, int]:
    """Add the messages from ``pos`` to ``end`` to ``counts`` by their own timestamps."""
    while pos < end:
        stamp = _TIMESTAMP(message_set, pos + _TIMESTAMP_AT)[0]
        window = stamp - stamp % window_ms
        counts[window] = counts.get(window, 0) + 1
        pos += 4 + _SIZE(message_set, pos)[0]
    return counts


class AuditTally:
    """Running totals per (topic, window): [acknowledged, unacknowledged], since the broker
    started; the newest ``KEEP_WINDOWS`` windows of each topic are kept."""

    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        self.pid = os.getpid()      # the sampler tells a restarted broker's totals apart by it
        self.counts: dict[str, dict[int, list[int]]] = {}

    def add(self, topic: str, counts: dict[int, int], acknowledged: bool) -> None:
        windows = self.counts.setdefault(topic, {})
        slot = 0 if acknowledged else 1
        for window, n in counts.items():
            entry = windows.get(window)
            if entry is None:
                entry = windows[window] = [0, 0]
            entry[slot] += n
        if len(windows) > KEEP_WINDOWS:
            for window in sorted(windows)[:len(windows) - KEEP_WINDOWS]:
                del windows[window]

    def describe(self) -> dict:
        return {"window_ms": self.window_ms, "pid": self.pid,
                "counts": [[topic, window, a, u] for topic, windows in sorted(self.counts.items())
                           for window, (a, u) in sorted(windows.items())]}
