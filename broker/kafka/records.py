"""Kafka record batches <-> sluice MessageSets, and the offset mapping.

Storage: each Kafka record is stored as one sluice message of magic 2 (broker/message.py: key,
value, timestamp, headers; null key and null value kept apart from empty ones), so it has its
own byte offset, native consumers read Kafka clients' messages and the reverse, and retention,
replication, scrub and recovery work on Kafka data unchanged. The cost: a produced batch is
decompressed and re-framed record by record, a fetch framed into one uncompressed record batch
v2, both in one pass per batch by broker/kafka/record_batch.py. Compression is undone on the
way in (the log stores records uncompressed).

Offsets: a batch handed to a Kafka client has base_offset = its first message's byte offset,
each record's offset_delta = its offset - base, and last_offset_delta = (the next message
boundary after the batch - 1) - base, so the client's next fetch at last_offset + 1 lands on a
boundary. ``resolve_offset`` maps an offset a Kafka client sends (a fetch position, a committed
"last consumed + 1") to a boundary, without an offset index.
"""
from __future__ import annotations

import struct
import time

from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.record.memory_records import MemoryRecords

from broker import message
from broker.kafka import record_batch
from broker.log import Log
from coordinator.errors import CorruptMessage, InvalidOffset, MessageTooLarge, OffsetOutOfRange

_BATCH_PREFIX = struct.Struct(">iib")   # length, -, magic: where every batch and message set
_BATCH_PREFIX_AT = 8                    # has them, after the base offset


class ProducedBatch:
    """What one produced record batch said about its producer (idempotence): producer id,
    epoch, base sequence and record count (-1s when the batch is not sequenced); the lowest
    and highest timestamp its messages got, and, when asked for (``spans``), how many bytes of
    the MessageSet they are (else None): the audit's window counts (broker/kafka/audit_tally.py)
    count a batch within one window whole and walk only the others."""

    __slots__ = ("producer_id", "producer_epoch", "base_sequence", "count", "lowest",
                 "highest", "size")

    def __init__(self, producer_id: int, producer_epoch: int, base_sequence: int, count: int,
                 lowest: int = 0, highest: int = 0, size: int | None = None):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.count = count
        self.lowest = lowest
        self.highest = highest
        self.size = size


def to_message_set(records, now_ms: int | None = None,
                   max_message_bytes: int = message.DEFAULT_MAX_MESSAGE_BYTES,
                   spans: bool = False) -> tuple[bytes, int, list[ProducedBatch]]:
    """A produce request's record data (record batches v2, or message sets v0/v1; any codec
    kafka-python decodes) as one sluice MessageSet of magic 2 messages: ``(set, count,
    batches)``. Batches v2 go through broker/kafka/record_batch.py in one pass each; a legacy
    message set through kafka-python's classes. A record without a timestamp gets ``now_ms``.
    Raises CorruptMessage for data that does not decode or whose CRC fails, MessageTooLarge
    for a record over ``max_message_bytes``: the whole request is refused, none of it
    written. The set is built here, so it needs no validation after. ``spans``: give each
    batch its ``size`` in the set (summed from its pieces, only for the audit)."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    data = records if type(records) is bytes else bytes(records)
    view = memoryview(data)     # each batch v2 is sliced without a copy (decode copies once)
    out: list = []
    batches = []
    pos, end = 0, len(data)
    try:
        while pos < end:
            if end - pos < _BATCH_PREFIX_AT + _BATCH_PREFIX.size:
                raise CorruptMessage(f"{end - pos} bytes after the last whole record batch")
            length, _, magic = _BATCH_PREFIX.unpack_from(data, pos + _BATCH_PREFIX_AT)
            nxt = pos + record_batch.LOG_OVERHEAD + length
            if length < 0 or nxt > end:
                raise CorruptMessage(f"a record batch of {length} bytes runs past the request")
            pieces = len(out)
            if magic == record_batch.MAGIC:
                batch = ProducedBatch(*record_batch.decode(view[pos:nxt], now_ms,
                                                           max_message_bytes, out))
            else:
                batch = ProducedBatch(-1, -1, -1, *_legacy(data[pos:nxt], now_ms, out))
            if spans:
                batch.size = sum(map(len, out[pieces:]))
            batches.append(batch)
            pos = nxt
    except record_batch.RecordTooLarge as exc:
        raise MessageTooLarge(str(exc)) from None
    except record_batch.BatchError as exc:
        raise CorruptMessage(f"produced records do not decode: {exc}") from None
    return b"".join(out), sum(b.count for b in batches), batches


def _legacy(data: bytes, now_ms: int, out: list) -> tuple[int, int, int]:
    """A message set v0/v1 (kafka-python's reader) onto ``out`` as magic 2 messages; the
    number of records and their lowest and highest timestamp."""
    count = 0
    lowest, highest = 1 << 63, -1
    try:
        for batch in MemoryRecords(data):
            if not batch.validate_crc():
                raise CorruptMessage("a produced message set failed its CRC check")
            for record in batch:
                timestamp = record.timestamp
                if timestamp is None or timestamp < 0:
                    timestamp = now_ms
                lowest, highest = min(lowest, timestamp), max(highest, timestamp)
                framed = message.encode_record(record.value, record.key, timestamp,
                                               record.headers)
                out.append(framed)
                count += 1
    except (CorruptRecordError, UnsupportedCodecError, ValueError, struct.error,
            AssertionError) as exc:
        raise CorruptMessage(f"produced records do not decode: {type(exc).__name__}: {exc}") \
            from None
    return count, lowest, highest


def to_record_batch(data, base: int, leader_epoch: int = -1) -> tuple[bytes, int]:
    """The whole messages of ``data`` (a fetched MessageSet starting at offset ``base``) as one
    uncompressed record batch v2 with byte offsets (broker/kafka/record_batch.py):
    ``(batch, messages)``. A corrupt message ends the batch before it (the client's next
    fetch there gets CORRUPT_MESSAGE); an empty batch is ``b""``.

    >>> data = message.encode(b"a") + message.encode(b"b", b"k")
    >>> batch, n = to_record_batch(data, 100)
    >>> from kafka.record.default_records import DefaultRecordBatch
    >>> b = DefaultRecordBatch(batch)
    >>> n, b.base_offset, b.last_offset, [(r.offset, r.key, r.value) for r in b]
    (2, 100, 125, [(100, None, b'a'), (110, b'k', b'b')])
    """
    return record_batch.encode(data, base, leader_epoch)


def read_batches(log: Log, offset: int, max_bytes: int, end: int,
                 leader_epoch: int = -1) -> tuple[bytes, int]:
    """What a Kafka fetch at ``offset`` gets from ``log`` below ``end``: ``(record batches,
    bytes read)``. From a compacted segment (``Log.read_span`` says so) each stretch between
    gap markers becomes a batch of its own at its own base offset, and a gap at the end of the
    read an empty batch up to where the read ends, as Kafka leaves of a batch compaction
    emptied: the client's offsets jump over the gaps, and one that fetches into a gap moves on
    to the next kept message.

    >>> import tempfile
    >>> from broker.config import LogConfig
    >>> log = Log(tempfile.mkdtemp(), LogConfig(visible_after_flush=False))
    >>> _ = log.append(message.encode(b"a") + message.encode_gap(60), 1, markers=[10])
    >>> from kafka.record.default_records import DefaultRecordBatch
    >>> b = DefaultRecordBatch(read_batches(log, 10, 100, 60)[0])
    >>> b.base_offset, b.next_offset, list(b)
    (10, 60, [])
    """
    data, data_end, gapped = log.read_span(offset, max_bytes, upto=end)
    if not gapped:
        return (to_record_batch(data, offset, leader_epoch)[0] if data else b""), len(data)
    batches = []
    covered = offset
    for at, run in message.split_at_gaps(data, offset):
        batch, _ = to_record_batch(run, at, leader_epoch)
        batches.append(batch)
        covered = at + len(run)
    if data_end > covered:
        batches.append(record_batch.empty_batch(covered, data_end - 1, leader_epoch))
    return b"".join(batches), len(data)


def resolve_offset(log: Log, offset: int, end: int) -> int:
    """The message boundary a Kafka client means by ``offset`` on ``log``, readable below
    ``end`` (the consumer's end: high watermark and visible end).

    A boundary (a message start, the log start, ``end``) is itself; an offset just past a
    message start (a client that asks for "last record offset + 1", as a commit does) is the
    boundary after that message; anything else raises OffsetOutOfRange (below the start with
    ``resume_offset``, the start), which a Kafka client answers with its reset policy.

    Both candidates are probed with ``Log.message_length_at`` (no segment walk: commits of
    "last consumed + 1" come many a second); only an offset that is neither pays for ``read``'s
    walk, to raise its precise error (CorruptMessage, OffsetGap); an offset inside a gap
    of a compacted segment is itself (a read there starts at the gap's marker).

    With messages of 15 bytes at 100 and 115::

        100 -> 100, 101 -> 115, 115 -> 115, 116 -> 130, 130 (end) -> 130, 107 -> error
    """
    if offset == end or offset == log.start_offset:
        return offset
    if offset > end or offset < log.start_offset:
        below = offset < log.start_offset
        raise OffsetOutOfRange(
            f"offset {offset} is outside the readable range [{log.start_offset}, {end}]",
            resume_offset=log.start_offset if below else None)
    if log.message_length_at(offset, upto=end) is not None:
        return offset
    before = log.message_length_at(offset - 1, upto=end)
    if before is not None:
        return offset - 1 + before
    try:    # neither: only now pay for read's precise error (a corrupt message, a gap)
        data, _, gapped = log.read_span(offset, 1, upto=end)
        if gapped and data and data[4] == message.MAGIC_GAP:
            return offset       # inside a gap the cleaner left: the read there moves on
    except InvalidOffset:
        pass
    raise OffsetOutOfRange(f"offset {offset} is neither a message boundary nor just past "
                           f"a message start in [{log.start_offset}, {end}]")
