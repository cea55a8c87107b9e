"""Kafka record batches <-> sluice MessageSets, and the offset mapping.

Storage: each Kafka record is stored as one sluice message of magic 2 (broker/message.py: key,
value, timestamp, headers; null key and null value kept apart from empty ones), so it has its
own byte offset, native consumers read Kafka clients' messages and the reverse, and retention,
replication, scrub and recovery work on Kafka data unchanged. The cost: a produced batch is
decoded record by record (kafka.record, decompressing it first) and re-framed; a fetch is
framed into one uncompressed record batch v2 record by record. Compression is undone on the way
in (the log stores records uncompressed).

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
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords

from broker import message
from broker.log import Log
from coordinator.errors import CorruptMessage, InvalidOffset, OffsetOutOfRange

_BASE_OFFSET = struct.Struct(">q")
_LEADER_EPOCH_AT = 12
_UNBOUNDED = 1 << 62


class ProducedBatch:
    """What one produced record batch said about its producer (idempotence): producer id,
    epoch, base sequence and record count (-1s when the batch is not sequenced)."""

    __slots__ = ("producer_id", "producer_epoch", "base_sequence", "count")

    def __init__(self, producer_id: int, producer_epoch: int, base_sequence: int, count: int):
        self.producer_id = producer_id
        self.producer_epoch = producer_epoch
        self.base_sequence = base_sequence
        self.count = count


def to_message_set(records, now_ms: int | None = None) -> tuple[bytes, int, list[ProducedBatch]]:
    """A produce request's record data (record batches v2, or message sets v0/v1; any codec
    kafka-python decodes) as one sluice MessageSet of magic 2 messages: ``(set, count,
    batches)``. A record without a timestamp (v0) gets ``now_ms``. Raises CorruptMessage for
    data that does not decode or whose CRC fails: the whole request is refused, none of it
    written."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    encode = message.encode_record
    out = []
    batches = []
    try:
        for batch in MemoryRecords(bytes(records)):
            if not batch.validate_crc():
                raise CorruptMessage("a produced record batch failed its CRC check")
            count = 0
            for record in batch:
                timestamp = record.timestamp
                out.append(encode(record.value, record.key,
                                  now_ms if timestamp is None or timestamp < 0 else timestamp,
                                  record.headers))
                count += 1
            if batch.magic >= 2:
                batches.append(ProducedBatch(batch.producer_id, batch.producer_epoch,
                                             batch.base_sequence, count))
            else:
                batches.append(ProducedBatch(-1, -1, -1, count))
    except (CorruptRecordError, UnsupportedCodecError, ValueError, struct.error,
            AssertionError) as exc:
        raise CorruptMessage(f"produced records do not decode: {type(exc).__name__}: {exc}") \
            from None
    return b"".join(out), len(out), batches


def to_record_batch(data, base: int, topic: str = "", partition: int = 0,
                    leader_epoch: int = -1) -> tuple[bytes, int]:
    """The whole messages of ``data`` (a fetched MessageSet starting at offset ``base``) as one
    uncompressed record batch v2 with byte offsets: ``(batch, messages)``. A corrupt message
    ends the batch before it (the client's next fetch there gets CORRUPT_MESSAGE); an empty
    batch is ``b""``.

    >>> data = message.encode(b"a") + message.encode(b"b", b"k")
    >>> batch, n = to_record_batch(data, 100)
    >>> from kafka.record.default_records import DefaultRecordBatch
    >>> b = DefaultRecordBatch(batch)
    >>> n, b.base_offset, b.last_offset, [(r.offset, r.key, r.value) for r in b]
    (2, 100, 125, [(100, None, b'a'), (110, b'k', b'b')])
    """
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=_UNBOUNDED)
    append = builder.append
    count = 0
    end = base
    try:
        for m in message.decode_set(data, topic, partition, base):
            ts = m.timestamp
            append(m.offset - base, -1 if ts is None else ts, m.key, m.value, m.headers)
            count += 1
            end = m.next_offset
    except message.InvalidMessage:
        pass
    if not count:
        return b"", 0
    builder._last_offset = end - 1 - base    # the field a next fetch follows: at the boundary
    batch = builder.build()
    _BASE_OFFSET.pack_into(batch, 0, base)
    struct.pack_into(">i", batch, _LEADER_EPOCH_AT, leader_epoch)
    return bytes(batch), count


def resolve_offset(log: Log, offset: int, end: int) -> int:
    """The message boundary a Kafka client means by ``offset`` on ``log``, readable below
    ``end`` (the consumer's end: high watermark and visible end).

    A boundary (a message start, the log start, ``end``) is itself; an offset just past a
    message start (a client that asks for "last record offset + 1", as a commit does) is the
    boundary after that message; anything else raises OffsetOutOfRange (below the start with
    ``resume_offset``, the start), which a Kafka client answers with its reset policy.

    Both candidates are probed with ``Log.message_length_at`` (no segment walk: commits of
    "last consumed + 1" come many a second); only an offset that is neither pays for ``read``'s
    walk, to raise its precise error (CorruptMessage, OffsetGap).

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
        log.read(offset, 1, upto=end)
    except InvalidOffset:
        pass
    raise OffsetOutOfRange(f"offset {offset} is neither a message boundary nor just past "
                           f"a message start in [{log.start_offset}, {end}]")
