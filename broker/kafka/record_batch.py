"""Kafka's record batch v2, decoded into and encoded from sluice MessageSets by hand.

A batch (all integers big-endian)::

    0   base_offset int64      12  leader_epoch int32   16  magic int8 (2)
    8   batch_length int32     17  crc uint32: CRC-32C of every byte from 21 to the end
    21  attributes int16 (bits 0-2 codec, 3 log-append time, 4 transactional, 5 control)
    23  last_offset_delta int32, first_timestamp int64, max_timestamp int64,
        producer_id int64, producer_epoch int16, base_sequence int32, records count int32
    61  records (compressed as one block when the codec is not 0), each:
        length varint | attributes int8 | timestamp_delta varint | offset_delta varint |
        key_length varint (-1: null) | key | value_length varint (-1: null) | value |
        headers count varint | per header: name_length varint | name | value_length | value

(varints are zigzag, as protobuf's sint64). The broker's hot path converts every produced
record to a magic 2 message and every fetched message to a record, so both directions are one
pass per batch with as little Python per record as it takes: precompiled structs, varints
read with a fast path for one byte (two for a record's length and a 200-byte value's),
varints written from a table, one ``bytes`` join per set, one CRC-32C call (the ``crc32c``
package, in C) per batch and one ``zlib.crc32`` per message. kafka-python's ``kafka.codec``
functions undo compression; its classes are left for the rare legacy message sets v0/v1
(broker/kafka/records.py).
"""
from __future__ import annotations

import struct
import zlib

from crc32c import crc32c
from kafka import codec as kafka_codec

from broker import message
from coordinator.errors import ErrorCode, SluiceError

MAGIC = 2
HEADER = struct.Struct(">qiibIhiqqqhii")
HEAD = struct.Struct(">qiibI")          # base offset .. crc: the bytes the CRC leaves out
TAIL = struct.Struct(">hiqqqhii")       # attributes .. records count: the CRC's first bytes
HEADER_SIZE = HEADER.size               # 61
CRC_FROM = HEAD.size                    # 21
LOG_OVERHEAD = 12                       # base offset and batch length: not in batch_length
CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
CONTROL = 0x20
NO_PRODUCER = -1

_MESSAGE_HEADER = message.HEADER.pack
_RECORD_HEADER = message.RECORD_HEADER.pack
_UNKEYED_RECORD = struct.Struct(">BqII").pack    # attributes, timestamp, null key, no headers
_RECORD_FIELDS_AND_HEADERS = struct.Struct(">BqII").unpack_from   # the headers length if no key
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_NO_HEADERS = b"\x00\x00\x00\x00"
_NULL = message.NULL_LENGTH
_NULL_VALUE = message.NULL_VALUE
_MAGIC_RECORD = message.MAGIC_RECORD
_crc32 = zlib.crc32

_DECOMPRESS = {1: kafka_codec.gzip_decode, 2: kafka_codec.snappy_decode,
               3: kafka_codec.lz4_decode, 4: kafka_codec.zstd_decode}
_CODEC_NAMES = {1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


class BatchError(SluiceError, ValueError):
    """A produced batch that does not decode (framing, CRC, lengths, codec)."""

    code = ErrorCode.CORRUPT_MESSAGE


class RecordTooLarge(BatchError):
    """A record whose magic 2 message would exceed the log's max message bytes."""

    code = ErrorCode.MESSAGE_TOO_LARGE


def zigzag_varint(value: int) -> bytes:
    """``value`` as Kafka's zigzag varint.

    >>> [zigzag_varint(v).hex() for v in (0, -1, 1, 63, 64, 300)]
    ['00', '01', '02', '7e', '8001', 'd804']
    """
    z = (value << 1) ^ (value >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_VARINT_TABLE_SIZE = 1 << 14            # every zigzag value of one or two bytes
_VARINT = [zigzag_varint((z >> 1) ^ -(z & 1)) for z in range(_VARINT_TABLE_SIZE)]
_VARINT_LOW = [bytes((z & 0x7F | 0x80, z >> 7 | 0x80)) for z in range(_VARINT_TABLE_SIZE)]
_BYTE = [bytes((b,)) for b in range(128)]


def _varint_of_zigzag(z: int) -> bytes:
    """The varint of a zigzag value ``z`` >= 0 (three bytes from two tables, else a loop)."""
    if z < _VARINT_TABLE_SIZE:
        return _VARINT[z]
    if z < 1 << 21:
        return _VARINT_LOW[z & 0x3FFF] + _BYTE[z >> 14]
    return zigzag_varint((z >> 1) ^ -(z & 1))


def read_varint(buf, pos: int) -> tuple[int, int]:
    """(value, next position) of the zigzag varint at ``pos``; the long form of the per-record
    fast paths below.

    >>> read_varint(bytes.fromhex("d804ff"), 0)
    (300, 2)
    """
    z = 0
    shift = 0
    while True:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos
        shift += 7
        if shift > 63:
            raise BatchError("a varint longer than 10 bytes")


def decode(batch, now_ms: int, max_message_bytes: int, out: list
           ) -> tuple[int, int, int, int, int, int]:
    """Append to ``out`` the magic 2 messages of one whole record batch v2 (``batch`` its
    bytes, CRC and all) as pieces to join; return ``(producer_id, producer_epoch,
    base_sequence, records, lowest, highest)``: the last two bound the timestamps the
    messages got (the audit counts a batch whose bounds share a window whole).

    A record's timestamp is the batch's max timestamp under log-append time, else the first
    timestamp plus its delta, and ``now_ms`` when that is negative (no timestamp). The header's
    first and max timestamps do not bound the records: CreateTime need not rise within a batch
    (a delta may be negative) and nothing checks the max a client wrote, so the bounds come from
    the deltas, taken where the loop already reads them. Raises
    BatchError for a batch that does not decode or whose CRC fails (RecordTooLarge for a
    record past ``max_message_bytes``), having appended nothing the caller keeps: the caller
    refuses the whole request.

    >>> from kafka.record.default_records import DefaultRecordBatchBuilder
    >>> b = DefaultRecordBatchBuilder(2, 0, False, 7, 0, 0, 1 << 20)
    >>> _ = b.append(0, 1000, None, b"v", []); _ = b.append(1, 1001, b"k", None, [("h", b"")])
    >>> out = []
    >>> decode(bytes(b.build()), 0, 1 << 20, out)
    (7, 0, 0, 2, 1000, 1001)
    >>> [(m.key, m.value, m.timestamp, m.headers)
    ...  for m in message.decode_set(b"".join(out), "t", 0, 0)]
    [(None, b'v', 1000, ()), (b'k', None, 1001, (('h', b''),))]
    """
    if len(batch) < HEADER_SIZE:
        raise BatchError(f"a record batch of {len(batch)} bytes is shorter than its header")
    (_, length, _, magic, crc, attributes, _, first_ts, max_ts, producer_id, producer_epoch,
     base_sequence, count) = HEADER.unpack_from(batch, 0)
    if magic != MAGIC or length + LOG_OVERHEAD != len(batch):
        raise BatchError(f"not a whole record batch v2 (magic {magic}, length {length})")
    view = memoryview(batch)
    if crc32c(view[CRC_FROM:]) != crc:
        raise BatchError("a produced record batch failed its CRC check")
    if attributes & CONTROL:
        raise BatchError("a control batch: only a broker writes those")
    codec = attributes & CODEC_MASK
    if codec == 0:
        buf = bytes(view[HEADER_SIZE:])
    else:
        decompress = _DECOMPRESS.get(codec)
        if decompress is None:
            raise BatchError(f"unknown compression codec {codec}")
        try:
            buf = decompress(bytes(view[HEADER_SIZE:]))
        except Exception as exc:   # each codec library raises its own types on bad input
            raise BatchError(f"{_CODEC_NAMES[codec]} data does not decompress: "
                             f"{type(exc).__name__}: {exc}") from None
        if type(buf) is not bytes:
            buf = bytes(buf)
    if count < 0:
        raise BatchError(f"a negative record count {count}")
    try:
        pos, lowest, highest = _records(
            buf, count, first_ts, max_ts if attributes & LOG_APPEND_TIME else None, now_ms,
            max_message_bytes + message.MIN_SIZE + message.KEY_HEADER.size, out)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise BatchError(f"a record runs past its batch: {type(exc).__name__}") from None
    if pos != len(buf):
        raise BatchError(f"{len(buf) - pos} bytes after the batch's {count} records")
    return producer_id, producer_epoch, base_sequence, count, lowest, highest


def _records(buf: bytes, count: int, first_ts: int, append_time: int | None, now_ms: int,
             limit: int, out: list) -> tuple[int, int, int]:
    """The per-record loop of ``decode``: ``count`` records from ``buf`` as messages onto
    ``out``; returns where they end and the lowest and highest timestamp given (an unkeyed
    run of one timestamp compares once, where its prefix is made). Raises IndexError (or
    BatchError) for what runs past."""
    append = out.append
    header = _MESSAGE_HEADER
    unkeyed = _UNKEYED_RECORD
    keyed = _RECORD_HEADER
    crc32 = _crc32
    varint = read_varint
    pos = 0
    extend = out.extend
    prefix = b""
    prefix_crc = prefix_delta = prefix_attributes = None
    lowest, highest = 1 << 63, -1
    for _ in range(count):
        b = buf[pos]                                    # length: 1 or 2 bytes, or more
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            c = buf[pos + 1]
            if c < 0x80:
                z = (b & 0x7F) | (c << 7)
                length = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                length, pos = varint(buf, pos)
        end = pos + length
        b = buf[pos + 1]                                # after the attributes: timestamp delta
        if b < 0x80:
            delta = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            c = buf[pos + 2]
            if c < 0x80:
                z = (b & 0x7F) | (c << 7)
                delta = (z >> 1) ^ -(z & 1)
                pos += 3
            else:
                delta, pos = varint(buf, pos + 1)
        if buf[pos] < 0x80:                             # offset delta: offsets are ours
            pos += 1
        elif buf[pos + 1] < 0x80:
            pos += 2
        else:
            pos = varint(buf, pos)[1]
        b = buf[pos]                                    # key length: 1 (null) or more
        if b == 1:
            key = None
            pos += 1
        else:
            if b < 0x80:
                keylen = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                keylen, pos = varint(buf, pos)
            if keylen >= 0:
                key = buf[pos:pos + keylen]
                pos += keylen
            elif keylen == -1:
                key = None
            else:
                raise BatchError(f"a key length of {keylen}")
        b = buf[pos]                                    # value length: 1 or 2 bytes, or more
        if b < 0x80:
            valuelen = (b >> 1) ^ -(b & 1)
            pos += 1
        else:
            c = buf[pos + 1]
            if c < 0x80:
                z = (b & 0x7F) | (c << 7)
                valuelen = (z >> 1) ^ -(z & 1)
                pos += 2
            else:
                valuelen, pos = varint(buf, pos)
        if valuelen >= 0:
            value = buf[pos:pos + valuelen]
            pos += valuelen
            attributes = 0
        elif valuelen == -1:
            value = b""
            attributes = _NULL_VALUE
        else:
            raise BatchError(f"a value length of {valuelen}")
        if key is None and buf[pos] == 0:               # no key, no headers: the usual record
            pos += 1
            if delta != prefix_delta or attributes != prefix_attributes:
                ts = first_ts + delta if append_time is None else append_time
                if ts < 0:
                    ts = now_ms
                if ts < lowest:
                    lowest = ts
                if ts > highest:
                    highest = ts
                prefix = unkeyed(attributes, ts, _NULL, 0)
                prefix_crc = crc32(prefix)              # shared by a run of one timestamp
                prefix_delta, prefix_attributes = delta, attributes
            size = 22 + len(value)
            if pos != end or size > limit:
                _refuse(length, pos - end, size, limit)
            extend((header(size, _MAGIC_RECORD, crc32(value, prefix_crc)), prefix, value))
            continue
        ts = first_ts + delta if append_time is None else append_time
        if ts < 0:
            ts = now_ms
        if ts < lowest:
            lowest = ts
        if ts > highest:
            highest = ts
        if buf[pos] == 0:
            pos += 1
            payload = b"".join((keyed(attributes, ts, keylen), key, _NO_HEADERS, value))
        else:
            section, pos = _headers(buf, pos)
            payload = b"".join((keyed(attributes, ts, _NULL if key is None else keylen),
                                key or b"", _U32.pack(len(section)), section, value))
        size = len(payload) + 5
        if pos != end or size > limit:
            _refuse(length, pos - end, size, limit)
        append(header(size, _MAGIC_RECORD, crc32(payload)))
        append(payload)
    return pos, lowest, highest


def _refuse(length: int, over: int, size: int, limit: int):
    """Raise what is wrong with a record that ends ``over`` bytes past its length or whose
    message of ``size`` bytes exceeds ``limit``."""
    if over:
        raise BatchError(f"a record of {length} bytes whose fields take {length + over}")
    raise RecordTooLarge(f"a record's message of {size} bytes exceeds the limit of "
                         f"{limit - message.MIN_SIZE - message.KEY_HEADER.size}")


def _headers(buf: bytes, pos: int) -> tuple[bytes, int]:
    """A record's Kafka headers at ``pos`` as a magic 2 headers section, and where they end."""
    n, pos = read_varint(buf, pos)
    if n < 0:
        raise BatchError(f"a header count of {n}")
    parts = []
    for _ in range(n):
        namelen, pos = read_varint(buf, pos)
        if not 0 <= namelen <= 0xFFFF:
            raise BatchError(f"a header name length of {namelen}")
        name = buf[pos:pos + namelen]
        name.decode()                                   # a header name is UTF-8
        pos += namelen
        valuelen, pos = read_varint(buf, pos)
        parts.append(_U16.pack(namelen))
        parts.append(name)
        if valuelen >= 0:
            parts.append(_U32.pack(valuelen))
            parts.append(buf[pos:pos + valuelen])
            pos += valuelen
        elif valuelen == -1:
            parts.append(_U32.pack(_NULL))
        else:
            raise BatchError(f"a header value length of {valuelen}")
    return b"".join(parts), pos


def encode(data, base: int, leader_epoch: int = -1) -> tuple[bytes, int]:
    """The whole messages of ``data`` (a fetched MessageSet starting at offset ``base``) as one
    uncompressed record batch v2 with byte offsets: ``(batch, messages)``. Each record's
    offset delta is its message's position in ``data``; last_offset_delta is the position of
    the last byte of the last message, so the client's next fetch (last offset + 1) lands on
    the next message. A message that fails its CRC or framing ends the batch before it; no
    message, ``b""``.

    >>> batch, n = encode(message.encode(b"a") + message.encode(b"b", b"k"), 100)
    >>> from kafka.record.default_records import DefaultRecordBatch
    >>> b = DefaultRecordBatch(batch)
    >>> n, b.validate_crc(), b.last_offset, [(r.offset, r.key, r.value) for r in b]
    (2, True, 125, [(100, None, b'a'), (110, b'k', b'b')])
    """
    buf = data if type(data) is bytes else bytes(data)
    end = len(buf)
    pos = 0
    count = 0
    first_ts = max_ts = None
    parts: list = []
    extend = parts.extend
    unpack = message.HEADER.unpack_from
    fields = _RECORD_FIELDS_AND_HEADERS
    u32 = _U32.unpack_from
    crc32 = _crc32
    table = _VARINT
    table_size = _VARINT_TABLE_SIZE
    long_varint = _varint_of_zigzag
    low = _VARINT_LOW
    byte = _BYTE
    head = tail = b""
    head_ts = tail_len = None
    while end - pos >= message.HEADER_SIZE:
        size, magic, crc = unpack(buf, pos)
        nxt = pos + 4 + size
        if size < message.MIN_SIZE or nxt > end or crc32(buf[pos + 9:nxt]) != crc:
            break
        headers = b"\x00"
        if magic == _MAGIC_RECORD:                      # what Kafka clients wrote: first
            if size < message.RECORD_MIN_SIZE:
                break
            attributes, ts, keylen, hlen = fields(buf, pos + 9)
            if keylen == _NULL and not hlen and not attributes:
                # The usual record (no key, no headers, a value): its attributes and
                # timestamp delta are framed once for a run of one timestamp, its null key
                # and value length once for a run of one value length.
                if first_ts is None:
                    first_ts = max_ts = ts
                elif ts > max_ts:
                    max_ts = ts
                if ts != head_ts:
                    delta = ts - first_ts
                    z = (delta << 1) ^ (delta >> 63)
                    head = b"\x00" + (table[z] if z < table_size else long_varint(z))
                    head_ts = ts
                valuelen = nxt - pos - 26
                if valuelen != tail_len:
                    z = valuelen << 1
                    tail = b"\x01" + (table[z] if z < table_size else long_varint(z))
                    tail_len = valuelen
                z = pos << 1
                if z < table_size:
                    offv = table[z]
                elif z < 0x200000:
                    offv = low[z & 0x3FFF] + byte[z >> 14]
                else:
                    offv = long_varint(z)
                z = (len(head) + len(offv) + len(tail) + valuelen + 1) << 1
                extend((table[z] if z < table_size else long_varint(z), head, offv, tail,
                        buf[pos + 26:nxt], b"\x00"))
                count += 1
                pos = nxt
                continue
            if keylen == _NULL:
                key = None
                at = pos + 26
            else:
                key = buf[pos + 22:pos + 22 + keylen]
                if pos + 26 + keylen > nxt:
                    break
                hlen = u32(buf, pos + 22 + keylen)[0]
                at = pos + 26 + keylen
            if at + hlen > nxt:
                break
            if hlen:
                try:
                    headers = _kafka_headers(buf, at, at + hlen)
                except (ValueError, struct.error):
                    break
            value = None if attributes & _NULL_VALUE else buf[at + hlen:nxt]
        elif magic == 0:
            ts = -1
            key = None
            value = buf[pos + 9:nxt]
        elif magic == 1:
            if size < 10:
                break
            keylen = u32(buf, pos + 10)[0]
            if pos + 14 + keylen > nxt:
                break
            ts = -1
            key = buf[pos + 14:pos + 14 + keylen]
            value = buf[pos + 14 + keylen:nxt]
        else:
            break
        if first_ts is None:
            first_ts = max_ts = ts
        elif ts > max_ts:
            max_ts = ts
        delta = ts - first_ts
        z = (delta << 1) ^ (delta >> 63)
        tsv = table[z] if z < table_size else long_varint(z)
        z = pos << 1
        if z < table_size:
            offv = table[z]
        elif z < 0x200000:                              # three bytes: offsets up to 1 MiB
            offv = low[z & 0x3FFF] + byte[z >> 14]
        else:
            offv = long_varint(z)
        if key is None:
            keyv = b"\x01"
            key = b""
        else:
            z = len(key) << 1
            keyv = table[z] if z < table_size else long_varint(z)
        if value is None:
            valuev = b"\x01"
            value = b""
        else:
            z = len(value) << 1
            valuev = table[z] if z < table_size else long_varint(z)
        z = (1 + len(tsv) + len(offv) + len(keyv) + len(key) + len(valuev) + len(value)
             + len(headers)) << 1
        extend((table[z] if z < table_size else long_varint(z), b"\x00", tsv, offv, keyv, key,
                valuev, value, headers))
        count += 1
        pos = nxt
    if not count:
        return b"", 0
    body = b"".join(parts)
    tail = TAIL.pack(0, pos - 1, first_ts, max_ts, NO_PRODUCER, -1, -1, count)
    head = HEAD.pack(base, HEADER_SIZE - LOG_OVERHEAD + len(body), leader_epoch, MAGIC,
                     crc32c(body, crc32c(tail)))
    return b"".join((head, tail, body)), count


def empty_batch(base: int, last: int, leader_epoch: int = -1) -> bytes:
    """A record batch v2 with no records covering offsets ``base..last``: what Kafka leaves
    of a batch compaction emptied; a client's next fetch is at ``last + 1``.

    >>> from kafka.record.default_records import DefaultRecordBatch
    >>> b = DefaultRecordBatch(empty_batch(100, 159))
    >>> b.validate_crc(), b.base_offset, b.next_offset, list(b)
    (True, 100, 160, [])
    """
    tail = TAIL.pack(0, last - base, -1, -1, NO_PRODUCER, -1, -1, 0)
    return HEAD.pack(base, HEADER_SIZE - LOG_OVERHEAD, leader_epoch, MAGIC, crc32c(tail)) + tail


def _kafka_headers(buf: bytes, pos: int, end: int) -> bytes:
    """A magic 2 headers section (``buf[pos:end]``) as a Kafka record's headers: the count
    and each header's name and value with varint lengths."""
    parts = []
    n = 0
    while pos < end:
        (namelen,) = _U16.unpack_from(buf, pos)
        pos += 2
        parts.append(zigzag_varint(namelen))
        parts.append(buf[pos:pos + namelen])
        pos += namelen
        (valuelen,) = _U32.unpack_from(buf, pos)
        pos += 4
        if valuelen == _NULL:
            parts.append(b"\x01")
        else:
            parts.append(zigzag_varint(valuelen))
            parts.append(buf[pos:pos + valuelen])
            pos += valuelen
        n += 1
    if pos != end:
        raise ValueError("headers run past their section")
    return zigzag_varint(n) + b"".join(parts)
