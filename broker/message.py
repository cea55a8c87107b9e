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

HEADER = struct.Struct(">IBI")          # size, magic, crc
KEY_HEADER = struct.Struct(">BI")       # attributes, key length
HEADER_SIZE = HEADER.size               # 9: the per-message overhead of an unkeyed message
SIZE_FIELD = 4
MAGIC_VALUE = 0
MAGIC_KEYED = 1
MIN_SIZE = 5                            # magic + crc, empty value
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20

_crc32 = zlib.crc32
_unpack_header = HEADER.unpack_from
_unpack_size = struct.Struct(">I").unpack_from


class InvalidMessage(ValueError):
    """A MessageSet that is not a run of whole, valid messages.

    ``position`` is the byte position inside the set where the first bad entry starts, and
    ``reason`` one of ``"truncated"``, ``"crc"``, ``"magic"``, ``"size"``, ``"too_large"``.
    """

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
    """Frame one message."""
    if key is None:
        payload = bytes(value)
        return HEADER.pack(MIN_SIZE + len(payload), MAGIC_VALUE, _crc32(payload)) + payload
    payload = KEY_HEADER.pack(0, len(key)) + bytes(key) + bytes(value)
    return HEADER.pack(MIN_SIZE + len(payload), MAGIC_KEYED, _crc32(payload)) + payload


def encode_set(messages: Iterable[tuple[bytes | None, bytes]]) -> bytes:
    """Frame (key, value) pairs into one MessageSet."""
    return b"".join([encode(value, key) for key, value in messages])


def validate_set(buf, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> int:
    """Check that ``buf`` is a run of whole valid messages; return how many there are.

    Raises InvalidMessage at the first bad entry, with ``valid_count`` messages before it. This
    is the broker's produce-path check: one walk over the set, the CRC of each entry computed
    in C over a memoryview slice.
    """
    mv = memoryview(buf)
    end = len(mv)
    if end == 0:
        raise InvalidMessage("truncated", 0, "empty message set")
    pos = 0
    count = 0
    unpack = _unpack_header
    crc32 = _crc32
    limit = max_message_bytes + MIN_SIZE + KEY_HEADER.size
    try:
        while pos < end:
            if end - pos < HEADER_SIZE:
                raise InvalidMessage("truncated", pos, "message header cut short")
            size, magic, crc = unpack(mv, pos)
            nxt = pos + SIZE_FIELD + size
            if size < MIN_SIZE:
                raise InvalidMessage("size", pos, f"message size {size} is below the minimum {MIN_SIZE}")
            if size > limit:
                raise InvalidMessage("too_large", pos,
                                     f"message of {size} bytes exceeds the limit of {max_message_bytes}")
            if nxt > end:
                raise InvalidMessage("truncated", pos, f"message of {size} bytes cut short")
            if magic > MAGIC_KEYED:
                raise InvalidMessage("magic", pos, f"unknown magic byte {magic}")
            if crc32(mv[pos + HEADER_SIZE:nxt]) != crc:
                raise InvalidMessage("crc", pos, "CRC mismatch")
            if magic == MAGIC_KEYED and (
                    size < MIN_SIZE + KEY_HEADER.size
                    or HEADER_SIZE + KEY_HEADER.size + _unpack_size(mv, pos + HEADER_SIZE + 1)[0]
                    > SIZE_FIELD + size):
                raise InvalidMessage("size", pos, "key length runs past the message")
            pos = nxt
            count += 1
    except InvalidMessage as bad:
        bad.valid_count = count
        raise
    return count


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
    """
    mv = memoryview(buf)
    end = len(mv)
    pos = 0
    unpack = _unpack_header
    crc32 = _crc32
    while end - pos >= HEADER_SIZE:
        size, magic, crc = unpack(mv, pos)
        nxt = pos + SIZE_FIELD + size
        if nxt > end:
            return
        payload = mv[pos + HEADER_SIZE:nxt]
        if size < MIN_SIZE or crc32(payload) != crc:
            raise InvalidMessage("crc", base_offset + pos, "CRC mismatch in fetched message")
        if magic == MAGIC_VALUE:
            key = None
            value = payload.tobytes()
        elif magic == MAGIC_KEYED:
            keylen = _unpack_size(payload, 1)[0]
            key = payload[5:5 + keylen].tobytes()
            value = payload[5 + keylen:].tobytes()
        else:
            raise InvalidMessage("magic", base_offset + pos, f"unknown magic byte {magic}")
        yield Message(topic, partition, base_offset + pos, base_offset + nxt, key, value)
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
