"""The message format: one module shared by producer, broker and consumer.

A message on the wire and on disk is one entry of a MessageSet (all integers big-endian)::

    offset  size  field
    0       4     size    number of bytes that follow this field (5 + payload length)
    4       1     magic   0: payload is the value; 1: payload starts with attributes and a key
    5       4     crc     CRC32 (zlib) of every byte after this field, i.e. the whole payload
    9       ...   payload

    magic 0 payload: value
    magic 1 payload: attributes (1 byte, bits 0-2 compression codec, 0 = none)
                     key length (4 bytes) | key | value

An unkeyed message costs 9 bytes of overhead, as in the paper; a keyed one 14 plus its key.
Unlike Kafka 0.7's magic 1, the attributes byte sits inside the CRC.

A message has no id: its offset is its byte position in the partition, and the next message
starts at ``offset + 4 + size``. A MessageSet is a run of whole messages back to back.

The functions here work on a whole MessageSet at once (one pass, C-speed CRCs over memoryview
slices, no per-message objects) because the broker calls them on its hot path.
"""
from __future__ import annotations

import struct
import zlib
from typing import Iterable, Iterator, NamedTuple

from coordinator.errors import ErrorCode, SluiceError

HEADER = struct.Struct(">IBI")          # size, magic, crc
KEY_HEADER = struct.Struct(">BI")       # attributes, key length
HEADER_SIZE = HEADER.size               # 9: the per-message overhead of an unkeyed message
SIZE_FIELD = 4
MAGIC_VALUE = 0
MAGIC_KEYED = 1
MIN_SIZE = 5                            # magic + crc, empty value
ENTRY_OVERHEAD = SIZE_FIELD + MIN_SIZE + KEY_HEADER.size   # 14: a keyed message's framing
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20

_crc32 = zlib.crc32
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_new_tuple = tuple.__new__
_unpack_size = struct.Struct(">I").unpack_from
_unpack_size_magic = struct.Struct(">IB").unpack_from


class InvalidMessage(SluiceError, ValueError):
    """A MessageSet that is not a run of whole, valid messages (a ValueError too, as before).

    ``position`` is the byte position inside the set where the first bad entry starts, and
    ``reason`` one of ``"truncated"``, ``"crc"``, ``"magic"``, ``"size"``, ``"too_large"``.
    """

    code = ErrorCode.CORRUPT_MESSAGE

    def __init__(self, reason: str, position: int, detail: str):
        super().__init__(f"{detail} at byte {position} of the message set")
        self.reason = reason
        self.position = position
        self.valid_count = 0


class Message(NamedTuple):
    """One consumed message with its place in the partition."""

    topic: str
    partition: int
    offset: int
    next_offset: int
    key: bytes | None
    value: bytes


def encode(value: bytes, key: bytes | None = None) -> bytes:
    """Frame one message (the producer calls this once per send(): one pack, one CRC)."""
    if key is None:
        if type(value) is not bytes:
            value = bytes(value)
        return _pack_header(MIN_SIZE + len(value), MAGIC_VALUE, _crc32(value)) + value
    payload = KEY_HEADER.pack(0, len(key)) + bytes(key) + bytes(value)
    return _pack_header(MIN_SIZE + len(payload), MAGIC_KEYED, _crc32(payload)) + payload


def encode_set(messages: Iterable[tuple[bytes | None, bytes]]) -> bytes:
    """Frame (key, value) pairs into one MessageSet."""
    return b"".join([encode(value, key) for key, value in messages])


def validate_set(buf, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> int:
    """Check that ``buf`` is a run of whole valid messages; return how many there are.

    Raises InvalidMessage at the first bad entry, with ``valid_count`` messages before it. This
    is the broker's produce-path check: one walk over the set, the CRC of each entry computed
    in C over a slice (of the bytes themselves when ``buf`` is bytes: zlib.crc32 takes a short
    bytes slice faster than a memoryview one). The loop tests the usual case with one chained
    comparison and leaves telling what exactly is wrong to ``_bad_entry``.
    """
    mv = buf if type(buf) is bytes else memoryview(buf)
    end = len(mv)
    if end == 0:
        raise InvalidMessage("truncated", 0, "empty message set")
    pos = 0
    count = 0
    unpack = _unpack_header
    unpack_size = _unpack_size
    crc32 = _crc32
    limit = max_message_bytes + MIN_SIZE + KEY_HEADER.size
    last_header = end - HEADER_SIZE
    while pos < end:
        if pos > last_header:
            raise _bad_entry(mv, pos, count, limit, max_message_bytes)
        size, magic, crc = unpack(mv, pos)
        nxt = pos + 4 + size
        if not (5 <= size <= limit and nxt <= end and magic <= 1) \
                or crc32(mv[pos + 9:nxt]) != crc \
                or magic and (size < 10 or 14 + unpack_size(mv, pos + 10)[0] > nxt - pos):
            raise _bad_entry(mv, pos, count, limit, max_message_bytes)
        pos = nxt
        count += 1
    return count


def _bad_entry(mv, pos: int, count: int, limit: int, max_message_bytes: int) -> InvalidMessage:
    """The InvalidMessage for the entry at ``pos``, which validate_set found wrong."""
    end = len(mv)
    if end - pos < HEADER_SIZE:
        bad = InvalidMessage("truncated", pos, "message header cut short")
    else:
        size, magic, crc = _unpack_header(mv, pos)
        nxt = pos + SIZE_FIELD + size
        if size < MIN_SIZE:
            bad = InvalidMessage("size", pos, f"message size {size} is below the minimum {MIN_SIZE}")
        elif size > limit:
            bad = InvalidMessage("too_large", pos,
                                 f"message of {size} bytes exceeds the limit of {max_message_bytes}")
        elif nxt > end:
            bad = InvalidMessage("truncated", pos, f"message of {size} bytes cut short")
        elif magic > MAGIC_KEYED:
            bad = InvalidMessage("magic", pos, f"unknown magic byte {magic}")
        elif _crc32(mv[pos + HEADER_SIZE:nxt]) != crc:
            bad = InvalidMessage("crc", pos, "CRC mismatch")
        else:
            bad = InvalidMessage("size", pos, "key length runs past the message")
    bad.valid_count = count
    return bad


def valid_prefix(buf) -> tuple[int, int]:
    """Return (bytes, messages) of the longest run of whole valid messages at the start of buf.

    Recovery uses it to find where a torn or corrupt tail begins.
    """
    if len(buf) == 0:
        return 0, 0
    try:
        return len(buf), validate_set(buf, max_message_bytes=1 << 31)
    except InvalidMessage as bad:
        return bad.position, bad.valid_count


def whole_prefix(buf) -> int:
    """Bytes of whole messages at the start of buf (framing only, CRCs not checked).

    The fetch path uses it to cut a read of up to max-bytes back to a message boundary; the
    entries were checked when they were appended or recovered.
    """
    end = len(buf)
    pos = 0
    unpack = _unpack_size
    while end - pos >= SIZE_FIELD:
        nxt = pos + SIZE_FIELD + unpack(buf, pos)[0]
        if nxt > end:
            break
        pos = nxt
    return pos


def count_set(buf, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> int:
    """Check the framing of a run of whole messages (sizes, magic bytes; CRCs not checked)
    and return how many there are; InvalidMessage (as ``validate_set``) when it is not one.

    The follower's check of what it fetched (broker/replica_fetcher.py): the leader checked
    every CRC when the set was produced, and consumers check them again on every read; the
    follower needs the count (its flush policy, its counters) and the certainty that the bytes
    are whole messages. A set of equal-sized messages, what a producer of fixed-size records
    sends, is checked without Python per message: each header byte position is compared at
    once over the whole set with a strided slice. Other sets walk their size fields.

    >>> one = encode(b"x" * 10)
    >>> count_set(one * 3), count_set(one + encode(b"yy", key=b"k"))
    (3, 2)
    >>> try:
    ...     count_set(one * 2 + one[:5])
    ... except InvalidMessage as bad:
    ...     print(bad.reason, bad.position, bad.valid_count)
    truncated 38 2
    """
    end = len(buf)
    if end < HEADER_SIZE:
        raise _bad_entry(memoryview(buf), 0, 0, 0, max_message_bytes)
    size = _unpack_size(buf, 0)[0]
    stride = SIZE_FIELD + size
    limit = max_message_bytes + MIN_SIZE + KEY_HEADER.size
    if MIN_SIZE <= size <= limit and end % stride == 0 and buf[4] == MAGIC_VALUE:
        data = buf if type(buf) is bytes else bytes(buf)
        count = end // stride
        if all(data[at::stride] == data[at:at + 1] * count for at in range(SIZE_FIELD + 1)):
            return count
    pos = count = 0
    unpack = _unpack_size_magic
    last_header = end - HEADER_SIZE
    while pos < end:
        if pos > last_header:
            raise _bad_entry(memoryview(buf), pos, count, limit, max_message_bytes)
        size, magic = unpack(buf, pos)
        nxt = pos + 4 + size
        if not (5 <= size <= limit and nxt <= end and magic <= 1) \
                or magic and (size < 10 or 14 + _unpack_size(buf, pos + 10)[0] > nxt - pos):
            raise _bad_entry(memoryview(buf), pos, count, limit, max_message_bytes)
        pos = nxt
        count += 1
    return count


def check_entry(buf, max_message_bytes: int = 1 << 31) -> int:
    """Validate the single message at the start of buf (which may hold more); return its length.

    The fetch path uses it to tell an offset that starts a message from one that does not.
    Raises InvalidMessage.
    """
    mv = memoryview(buf)
    if len(mv) < HEADER_SIZE:
        raise InvalidMessage("truncated", 0, "message header cut short")
    size = _unpack_size(mv, 0)[0]
    length = SIZE_FIELD + size
    if size < MIN_SIZE or length > len(mv):
        raise InvalidMessage("size", 0, "no message starts here")
    validate_set(mv[:length], max_message_bytes)
    return length


def decode_set(buf, topic: str, partition: int, base_offset: int) -> Iterator[Message]:
    """Yield the messages of a fetched MessageSet, checking each CRC.

    ``base_offset`` is the partition offset of ``buf[0]``. A trailing partial entry is ignored
    (it cannot occur from a sluice broker, which only returns whole messages).

    This is the consumer's per-message loop: the set is made ``bytes`` once (one copy of the
    whole fetch), so a value is one slice of it, CRC-checked where it lies; the Message is
    built with ``tuple.__new__``, skipping NamedTuple's Python-level ``__new__``.
    """
    data = buf if type(buf) is bytes else bytes(buf)
    end = len(data)
    pos = 0
    unpack = _unpack_header
    crc32 = _crc32
    new = _new_tuple
    while end - pos >= HEADER_SIZE:
        size, magic, crc = unpack(data, pos)
        nxt = pos + SIZE_FIELD + size
        if nxt > end:
            return
        payload = data[pos + HEADER_SIZE:nxt]
        if size < MIN_SIZE or crc32(payload) != crc:
            raise InvalidMessage("crc", base_offset + pos, "CRC mismatch in fetched message")
        if magic == MAGIC_VALUE:
            yield new(Message, (topic, partition, base_offset + pos, base_offset + nxt, None,
                                payload))
        elif magic == MAGIC_KEYED:
            keylen = _unpack_size(payload, 1)[0]
            yield new(Message, (topic, partition, base_offset + pos, base_offset + nxt,
                                payload[5:5 + keylen], payload[5 + keylen:]))
        else:
            raise InvalidMessage("magic", base_offset + pos, f"unknown magic byte {magic}")
        pos = nxt


def check_crc(buf, pos: int = 0) -> bool:
    """Whether the entry at ``pos`` matches its CRC (dump-log shows bad entries, not raises)."""
    size, _, crc = _unpack_header(buf, pos)
    return _crc32(memoryview(buf)[pos + HEADER_SIZE:pos + SIZE_FIELD + size]) == crc


def key_value(buf, pos: int = 0) -> tuple[bytes | None, bytes]:
    """(key, value) of the entry at ``pos``, framing assumed whole."""
    size, magic, _ = _unpack_header(buf, pos)
    payload = memoryview(buf)[pos + HEADER_SIZE:pos + SIZE_FIELD + size]
    if magic == MAGIC_KEYED and len(payload) >= KEY_HEADER.size:
        keylen = _unpack_size(payload, 1)[0]
        return payload[5:5 + keylen].tobytes(), payload[5 + keylen:].tobytes()
    return None, payload.tobytes()
