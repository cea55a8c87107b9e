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
    magic 2 payload: attributes (1 byte, bit 0: the value is null) | timestamp (8, signed ms)
                     key length (4 bytes, 0xFFFFFFFF: null key) | key
                     headers length (4 bytes) | headers | value
                     headers: per header, name length (2) | name (UTF-8)
                              value length (4, 0xFFFFFFFF: null) | value
    magic 3 payload: resume offset (8): a gap marker, written only by the log cleaner
                     (broker/cleaner.py), never accepted from a producer

A gap marker stands where log compaction removed messages: the next entry after it is at
partition offset ``resume``, not at the marker's end. It is 17 bytes on disk and on the wire, so
a compacted segment stays one run of entries that a fetch reads with one ``pread`` and a
consumer decodes in one walk; it is never handed to an application.

An unkeyed message costs 9 bytes of overhead, as in the paper; a keyed one 14 plus its key.
Unlike Kafka 0.7's magic 1, the attributes byte sits inside the CRC. Magic 2 carries what a
Kafka record has and magic 0/1 lack (a timestamp, a null key apart from an empty one, a null
value, headers), 26 bytes of framing: the Kafka listener (broker/kafka/records.py) stores each
Kafka record as one magic 2 message, and ``encode_record`` lets native producers write them.

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
MAGIC_RECORD = 2
MAGIC_GAP = 3
MAX_MAGIC = MAGIC_RECORD                # what a producer may send
GAP_SIZE = 13                           # a gap marker's size field: magic, crc, resume offset
GAP_ENTRY = SIZE_FIELD + GAP_SIZE       # 17 bytes
RECORD_HEADER = struct.Struct(">BqI")   # attributes, timestamp, key length
NULL_LENGTH = 0xFFFFFFFF
NULL_VALUE = 0x01                       # magic 2 attributes bit
_HEADER_NAME = struct.Struct(">H")
_U32 = struct.Struct(">I")
MIN_SIZE = 5                            # magic + crc, empty value
RECORD_MIN_SIZE = MIN_SIZE + RECORD_HEADER.size + 4     # 22: empty key, no headers, empty value
ENTRY_OVERHEAD = SIZE_FIELD + MIN_SIZE + KEY_HEADER.size   # 14: a keyed message's framing
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20

_crc32 = zlib.crc32
_pack_header = HEADER.pack
_unpack_header = HEADER.unpack_from
_RECORD_HEADER_PACK = RECORD_HEADER.pack
_NO_HEADERS = b"\0\0\0\0"
# an unkeyed, headerless record's prefix: attributes, timestamp, key length, headers length
_RECORD_PREFIX_PACK = struct.Struct(">BqII").pack
_NULL_KEY_NO_HEADERS = struct.Struct(">II").unpack_from
_PLAIN_RECORD = (NULL_LENGTH, 0)     # a magic 2 record with a null key and no headers
STAMPED_PREFIX_SIZE = 17             # its payload before the value (stamped_prefix)
_new_tuple = tuple.__new__
_unpack_size = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q")
# a plain record's framing through its headers length in one unpack: size, magic, crc, (the
# attributes and timestamp skipped), key length signed (-1: null, a cached int), headers length
_PLAIN_RECORD_HEAD = struct.Struct(">IBI9xiI")


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
    """One consumed message with its place in the partition. ``timestamp`` (ms) and
    ``headers`` ((name, value) pairs) are a magic 2 message's; ``value`` is None only for a
    magic 2 message written with a null value."""

    topic: str
    partition: int
    offset: int
    next_offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
    headers: tuple = ()


def encode(value: bytes, key: bytes | None = None) -> bytes:
    """Frame one message (the producer calls this once per send(): one pack, one CRC)."""
    if key is None:
        if type(value) is not bytes:
            value = bytes(value)
        return _pack_header(MIN_SIZE + len(value), MAGIC_VALUE, _crc32(value)) + value
    payload = KEY_HEADER.pack(0, len(key)) + bytes(key) + bytes(value)
    return _pack_header(MIN_SIZE + len(payload), MAGIC_KEYED, _crc32(payload)) + payload


def encode_stamped(value: bytes, key: bytes | None, timestamp: int) -> bytes:
    """Frame one magic 2 message with a timestamp and no headers: what an audited producer
    sends (one pack, one join, one CRC), the same bytes as ``encode_record(value, key, ts)``.

    >>> encode_stamped(b"v", b"k", 7) == encode_record(b"v", b"k", 7)
    True
    """
    if key is None:
        payload = b"".join((_RECORD_HEADER_PACK(0, timestamp, NULL_LENGTH), _NO_HEADERS,
                            value))
    else:
        payload = b"".join((_RECORD_HEADER_PACK(0, timestamp, len(key)), key, _NO_HEADERS,
                            value))
    return _pack_header(MIN_SIZE + len(payload), MAGIC_RECORD, _crc32(payload)) + payload


def stamped_prefix(timestamp: int) -> tuple[bytes, int]:
    """The payload bytes before the value of an unkeyed, headerless magic 2 message stamped
    ``timestamp``, and their CRC: shared by every message of an audited producer's batch."""
    prefix = _RECORD_PREFIX_PACK(0, timestamp, NULL_LENGTH, 0)
    return prefix, _crc32(prefix)


def encode_prefixed(value: bytes, prefix: bytes, prefix_crc: int) -> bytes:
    """Frame one unkeyed magic 2 message from its ``stamped_prefix``: the CRC goes on from
    the prefix's, one join.

    >>> encode_prefixed(b"v", *stamped_prefix(7)) == encode_record(b"v", None, 7)
    True
    """
    return b"".join((_pack_header(MIN_SIZE + len(prefix) + len(value), MAGIC_RECORD,
                                  _crc32(value, prefix_crc)), prefix, value))


def encode_record(value: bytes | None, key: bytes | None, timestamp: int,
                  headers=()) -> bytes:
    """Frame one magic 2 message: a Kafka record's key, value (either may be None), timestamp
    and headers ((str name, bytes-or-None value) pairs).

    >>> m = encode_record(None, b"k", 1700000000000, [("h", b"v")])
    >>> [(x.key, x.value, x.timestamp, x.headers) for x in decode_set(m, "t", 0, 0)]
    [(b'k', None, 1700000000000, (('h', b'v'),))]
    """
    if headers:
        parts = []
        for name, hvalue in headers:
            raw = name.encode() if type(name) is str else bytes(name)
            parts.append(_HEADER_NAME.pack(len(raw)))
            parts.append(raw)
            if hvalue is None:
                parts.append(_U32.pack(NULL_LENGTH))
            else:
                parts.append(_U32.pack(len(hvalue)))
                parts.append(bytes(hvalue))
        section = b"".join(parts)
    else:
        section = b""
    payload = b"".join((
        RECORD_HEADER.pack(NULL_VALUE if value is None else 0, timestamp,
                           NULL_LENGTH if key is None else len(key)),
        b"" if key is None else bytes(key), _U32.pack(len(section)), section,
        b"" if value is None else bytes(value)))
    return _pack_header(MIN_SIZE + len(payload), MAGIC_RECORD, _crc32(payload)) + payload


def record_fields(payload) -> tuple:
    """(key, value, timestamp, headers) of a magic 2 payload (the bytes after the CRC);
    raises ValueError when its lengths run past it."""
    attributes, timestamp, keylen = RECORD_HEADER.unpack_from(payload, 0)
    pos = RECORD_HEADER.size
    if keylen == NULL_LENGTH:
        key = None
    else:
        key = payload[pos:pos + keylen]
        pos += keylen
    (hlen,) = _U32.unpack_from(payload, pos)
    pos += 4
    end = pos + hlen
    if end > len(payload):
        raise ValueError("headers run past the message")
    headers = _headers(payload, pos, end) if hlen else ()
    value = None if attributes & NULL_VALUE else payload[end:]
    return key, value, timestamp, headers


def _headers(payload, pos: int, end: int) -> tuple:
    out = []
    while pos < end:
        (nlen,) = _HEADER_NAME.unpack_from(payload, pos)
        pos += 2
        name = bytes(payload[pos:pos + nlen]).decode()
        pos += nlen
        (vlen,) = _U32.unpack_from(payload, pos)
        pos += 4
        if vlen == NULL_LENGTH:
            value = None
        else:
            value = bytes(payload[pos:pos + vlen])
            pos += vlen
        out.append((name, value))
    if pos != end:
        raise ValueError("headers run past their section")
    return tuple(out)


def _bad_record(mv, pos: int, nxt: int) -> bool:
    """Whether the magic 2 entry at ``pos`` (CRC already good) has lengths that do not fit.
    The usual record, without headers, is checked from its two lengths alone (no slice, no
    decode: this runs per message on the broker's produce path); headers are walked.

    >>> m = encode_record(b"v", b"k", 1)
    >>> long_key = m[:18] + bytes([0, 0, 0, 99]) + m[22:]     # a key length past the end
    >>> _bad_record(m, 0, len(m)), _bad_record(long_key, 0, len(m))
    (False, True)
    """
    if nxt - pos < SIZE_FIELD + RECORD_MIN_SIZE:
        return True
    keylen = _unpack_size(mv, pos + HEADER_SIZE + 9)[0]
    headers_at = pos + HEADER_SIZE + RECORD_HEADER.size + (0 if keylen == NULL_LENGTH
                                                           else keylen)
    if headers_at + 4 > nxt:
        return True
    hlen = _unpack_size(mv, headers_at)[0]
    if headers_at + 4 + hlen > nxt:
        return True
    if not hlen:
        return False
    try:
        record_fields(mv[pos + HEADER_SIZE:nxt])
    except (ValueError, struct.error, UnicodeDecodeError):
        return True
    return False


def encode_set(messages: Iterable[tuple[bytes | None, bytes]]) -> bytes:
    """Frame (key, value) pairs into one MessageSet."""
    return b"".join([encode(value, key) for key, value in messages])


def encode_gap(resume: int) -> bytes:
    """A gap marker: the next entry is at offset ``resume``.

    >>> list(decode_set(encode(b"a") + encode_gap(100) + encode(b"b"), "t", 0, 0))[1][2:4]
    (100, 110)
    """
    payload = _U64.pack(resume)
    return _pack_header(GAP_SIZE, MAGIC_GAP, _crc32(payload)) + payload


def gap_resume(buf, pos: int = 0) -> int:
    """The resume offset of the gap marker at ``pos`` (framing assumed checked)."""
    return _U64.unpack_from(buf, pos + HEADER_SIZE)[0]


def split_at_gaps(buf, base_offset: int) -> list[tuple[int, memoryview]]:
    """The runs of messages in a set read from a compacted segment: ``(offset, bytes)`` of
    each stretch between gap markers (framing only; empty stretches left out).

    >>> [(o, len(b)) for o, b in split_at_gaps(encode(b"a") + encode_gap(50) + encode(b"b"), 0)]
    [(0, 10), (50, 10)]
    """
    view = memoryview(buf)
    end = len(view)
    runs = []
    pos = run_start = 0
    offset = base_offset
    while end - pos >= HEADER_SIZE:
        size, magic, _ = _unpack_header(view, pos)
        nxt = pos + SIZE_FIELD + size
        if nxt > end:
            break
        if magic == MAGIC_GAP and size == GAP_SIZE:
            if pos > run_start:
                runs.append((offset, view[run_start:pos]))
            offset, run_start = gap_resume(view, pos), nxt
        pos = nxt
    if pos > run_start:
        runs.append((offset, view[run_start:pos]))
    return runs


def entry_key(buf, pos: int) -> tuple[bytes | None, bool]:
    """``(key, tombstone)`` of the checked entry at ``pos``, for the log cleaner: magic 0 has
    no key; a magic 2 message with a null value is a tombstone."""
    magic = buf[pos + 4]
    if magic == MAGIC_KEYED:
        keylen = _unpack_size(buf, pos + 10)[0]
        return bytes(buf[pos + 14:pos + 14 + keylen]), False
    if magic == MAGIC_RECORD:
        attributes, _, keylen = RECORD_HEADER.unpack_from(buf, pos + HEADER_SIZE)
        key = None if keylen == NULL_LENGTH else bytes(buf[pos + 22:pos + 22 + keylen])
        return key, bool(attributes & NULL_VALUE)
    return None, False


def first_unkeyed(buf) -> tuple[int, int] | None:
    """``(index, position)`` of the first message of a validated set that has no key (magic 0,
    or magic 2 with a null key), None when every one has a key: a compacted log refuses such a
    set (nothing could ever supersede the message; Kafka refuses it as INVALID_RECORD). One
    unpack per message, so the broker calls it for compacted topics only.

    >>> first_unkeyed(encode(b"v", b"k") + encode_record(b"v", b"", 0))      # b"" is a key
    >>> first_unkeyed(encode(b"v", b"k") + encode_record(b"v", None, 0))
    (1, 16)
    """
    pos, index, end = 0, 0, len(buf)
    unpack = _unpack_header
    unpack_size = _unpack_size
    while pos < end:
        size, magic, _ = unpack(buf, pos)
        if magic == MAGIC_VALUE or (magic == MAGIC_RECORD
                                    and unpack_size(buf, pos + 18)[0] == NULL_LENGTH):
            return index, pos
        pos += SIZE_FIELD + size
        index += 1
    return None


def validate_set(buf, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 markers: list | None = None) -> int:
    """Check that ``buf`` is a run of whole valid messages; return how many there are.

    ``markers``: gap markers are accepted too (stored data, a follower's copy) and their
    positions appended to it; without it a marker is an unknown magic (a producer's set).

    Raises InvalidMessage at the first bad entry, with ``valid_count`` messages before it. This
    is the broker's produce-path check: one walk over the set, the CRC of each entry computed
    in C over a slice (of the bytes themselves when ``buf`` is bytes: zlib.crc32 takes a short
    bytes slice faster than a memoryview one). The loop tests the usual case with one chained
    comparison and leaves telling what exactly is wrong to ``_bad_entry``; a magic 2 record with
    a null key and no headers (an audited producer's) is told by one unpack of its two lengths.
    """
    mv = buf if type(buf) is bytes else memoryview(buf)
    end = len(mv)
    if end == 0:
        raise InvalidMessage("truncated", 0, "empty message set")
    limit = max_message_bytes + MIN_SIZE + KEY_HEADER.size
    if end >= _PLAIN_RECORD_HEAD.size and mv[SIZE_FIELD] == MAGIC_RECORD:
        pos, count = _plain_records(mv, end, limit)
    else:
        pos = count = 0
    unpack = _unpack_header
    unpack_size = _unpack_size
    crc32 = _crc32
    plain_record = _NULL_KEY_NO_HEADERS
    last_header = end - HEADER_SIZE
    while pos < end:
        if pos > last_header:
            raise _bad_entry(mv, pos, count, limit, max_message_bytes)
        size, magic, crc = unpack(mv, pos)
        nxt = pos + 4 + size
        if not (5 <= size <= limit and nxt <= end and magic <= 2) \
                or crc32(mv[pos + 9:nxt]) != crc \
                or magic == 1 and (size < 10 or 14 + unpack_size(mv, pos + 10)[0] > nxt - pos) \
                or magic == 2 and (size < RECORD_MIN_SIZE or plain_record(mv, pos + 18)
                                   != _PLAIN_RECORD) and _bad_record(mv, pos, nxt):
            if (markers is not None and magic == MAGIC_GAP and size == GAP_SIZE
                    and nxt <= end and crc32(mv[pos + 9:nxt]) == crc):
                markers.append(pos)
                pos = nxt
                continue
            raise _bad_entry(mv, pos, count, limit, max_message_bytes)
        pos = nxt
        count += 1
    return count


def validate_sets(buf, sizes, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
                  ) -> tuple[int, list[tuple[int, InvalidMessage]]]:
    """Judge ``buf``, MessageSets of ``sizes`` bytes back to back (an acks=0 PRODUCE_SETS
    request, broker/protocol.py), each set alone, in one walk: return the number of messages in
    the good sets and ``(index, InvalidMessage)`` for each bad one, its position inside its set.

    The verdict on each set is validate_set's on that set by itself: a message that runs past
    its set's end is truncated there (and the next set starts inside it, so is bad too), and an
    empty set is bad. The loop is validate_set's with the set's end as its bound, so when every
    set is good it costs what validate_set on the whole buffer does.

    >>> one, two = encode(b"a"), encode(b"bc")
    >>> validate_sets(one + two, [len(one), len(two)])
    (2, [])
    >>> count, bad = validate_sets(one + b"junk" + two, [len(one), 4, len(two)])
    >>> count, [(index, error.reason) for index, error in bad]
    (2, [(1, 'truncated')])
    """
    mv = buf if type(buf) is bytes else memoryview(buf)
    unpack = _unpack_header
    unpack_size = _unpack_size
    crc32 = _crc32
    plain_record = _NULL_KEY_NO_HEADERS
    limit = max_message_bytes + MIN_SIZE + KEY_HEADER.size
    pos = count = 0
    bad = []
    for index, set_size in enumerate(sizes):
        start = pos
        end = pos + set_size
        last_header = end - HEADER_SIZE
        n = 0
        while pos < end:
            if pos > last_header:
                break
            size, magic, crc = unpack(mv, pos)
            nxt = pos + 4 + size
            if not (5 <= size <= limit and nxt <= end and magic <= 2) \
                    or crc32(mv[pos + 9:nxt]) != crc \
                    or magic == 1 and (size < 10 or 14 + unpack_size(mv, pos + 10)[0] > nxt - pos) \
                    or magic == 2 and (size < RECORD_MIN_SIZE or plain_record(mv, pos + 18)
                                       != _PLAIN_RECORD) and _bad_record(mv, pos, nxt):
                break
            pos = nxt
            n += 1
        else:
            if n:
                count += n
                continue
        one = memoryview(mv)[start:end]
        if n == 0 and pos == end:
            error = InvalidMessage("truncated", 0, "empty message set")
        else:
            error = _bad_entry(one, pos - start, n, limit, max_message_bytes)
        bad.append((index, error))
        pos = end
    return count, bad
def _plain_records(mv, end: int, limit: int) -> tuple[int, int]:
    """(bytes, messages) of the run of valid plain records (magic 2, null key, no headers: an
    audited producer's messages) at the start of ``mv``; validate_set goes on after it.

    One unpack per message reads its size, magic, CRC and both lengths, where the general
    loop needs a second unpack (and a tuple compare) for a record's lengths: a third of the
    instructions of validating an audited set. The first entry that is anything else, valid
    or not, ends the run, and the general loop judges it.

    >>> stamped = encode_prefixed(b"v", *stamped_prefix(7))
    >>> data = stamped * 2 + encode(b"x") + stamped
    >>> _plain_records(data, len(data), 1 << 20)
    (54, 2)
    """
    unpack = _PLAIN_RECORD_HEAD.unpack_from
    crc32 = _crc32
    last = end - _PLAIN_RECORD_HEAD.size
    pos = count = 0
    while pos <= last:
        size, magic, crc, keylen, hlen = unpack(mv, pos)
        nxt = pos + 4 + size
        if not (RECORD_MIN_SIZE <= size <= limit and nxt <= end and magic == MAGIC_RECORD
                and keylen == -1 and hlen == 0) or crc32(mv[pos + 9:nxt]) != crc:
            break
        pos = nxt
        count += 1
    return pos, count


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
        elif magic > MAX_MAGIC:
            bad = InvalidMessage("magic", pos, f"unknown magic byte {magic}")
        elif _crc32(mv[pos + HEADER_SIZE:nxt]) != crc:
            bad = InvalidMessage("crc", pos, "CRC mismatch")
        elif magic == MAGIC_RECORD:
            bad = InvalidMessage("size", pos, "a record's key or headers run past the message")
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
    validate_set(mv[:length], max_message_bytes, markers=[])
    return length


def decode_set(buf, topic: str, partition: int, base_offset: int,
               end_out: list | None = None) -> Iterator[Message]:
    """Yield the messages of a fetched MessageSet, checking each CRC, one at a time.

    ``base_offset`` is the partition offset of ``buf[0]``. A trailing partial entry is ignored
    (it cannot occur from a sluice broker, which only returns whole messages). A gap marker
    (a compacted log) is not yielded: the entries after it are at its resume offset on.
    ``end_out``: the offset just past the set is appended to it once the walk is done.

    The set is made ``bytes`` once (one copy of the whole fetch), so a value is one slice of
    it, CRC-checked where it lies; each Message is dropped as soon as its reader does, so a
    long set costs no more memory than one message. A reader that wants the whole set in a
    list calls ``decode_into``.
    """
    data = buf if type(buf) is bytes else bytes(buf)
    return _entries(data, 0, topic, partition, base_offset, end_out)


def decode_into(out: list, buf, topic: str, partition: int, base_offset: int,
                end_out: list | None = None) -> None:
    """Append the messages of a fetched MessageSet to ``out``: ``out.extend(decode_set(...))``
    for the consumer, which wants every set whole, with the usual run of unkeyed messages
    walked by ``_plain_run`` (no generator switch per message, the fewest steps each). A bad
    entry raises InvalidMessage with every good message before it already in ``out``.

    >>> out = []
    >>> decode_into(out, encode(b"a") + encode(b"v", b"k") + encode(b"b"), "t", 0, 100)
    >>> [(m.offset, m.next_offset, m.key, m.value) for m in out]
    [(100, 110, None, b'a'), (110, 126, b'k', b'v'), (126, 136, None, b'b')]
    """
    data = buf if type(buf) is bytes else bytes(buf)
    pos = _plain_run(out, data, topic, partition, base_offset)
    if pos < len(data) or end_out is not None:
        out.extend(_entries(data, pos, topic, partition, base_offset, end_out))


def _plain_run(out: list, data: bytes, topic: str, partition: int, base: int) -> int:
    """Append the run of valid magic 0 messages at the start of ``data`` to ``out``; return
    where it ends. The first entry that is anything else, valid or not, ends the run (and
    ``_entries`` judges it). A Message is built with ``tuple.__new__``, skipping NamedTuple's
    Python-level ``__new__``.

    >>> out = []
    >>> _plain_run(out, encode(b"a") * 2 + encode(b"v", b"k"), "t", 0, 0), len(out)
    (20, 2)
    """
    add = out.append
    unpack = _unpack_header
    crc32 = _crc32
    new = _new_tuple
    end = len(data)
    last = end - HEADER_SIZE
    pos = 0
    while pos <= last:
        size, magic, crc = unpack(data, pos)
        nxt = pos + SIZE_FIELD + size
        value = data[pos + HEADER_SIZE:nxt]
        if magic or size < MIN_SIZE or nxt > end or crc32(value) != crc:
            break
        add(new(Message, (topic, partition, base + pos, base + nxt, None, value, None, ())))
        pos = nxt
    return pos


def _entries(data: bytes, pos: int, topic: str, partition: int, base: int,
             end_out: list | None) -> Iterator[Message]:
    """The messages of ``data`` from ``pos`` on, every kind, one entry at a time."""
    end = len(data)
    unpack = _unpack_header
    crc32 = _crc32
    new = _new_tuple
    while end - pos >= HEADER_SIZE:
        size, magic, crc = unpack(data, pos)
        nxt = pos + SIZE_FIELD + size
        if nxt > end:
            break
        payload = data[pos + HEADER_SIZE:nxt]
        if size < MIN_SIZE or crc32(payload) != crc:
            raise InvalidMessage("crc", base + pos, "CRC mismatch in fetched message")
        if magic == MAGIC_VALUE:
            yield new(Message, (topic, partition, base + pos, base + nxt, None,
                                payload, None, ()))
        elif magic == MAGIC_KEYED:
            keylen = _unpack_size(payload, 1)[0] if size >= MIN_SIZE + KEY_HEADER.size else -1
            if not 0 <= keylen <= size - MIN_SIZE - KEY_HEADER.size:
                raise InvalidMessage("size", base + pos, "key length runs past the message")
            yield new(Message, (topic, partition, base + pos, base + nxt,
                                payload[5:5 + keylen], payload[5 + keylen:], None, ()))
        elif magic == MAGIC_RECORD:
            try:
                fields = record_fields(payload)
            except (ValueError, struct.error, UnicodeDecodeError):
                raise InvalidMessage("size", base + pos,
                                     "a record's key or headers run past the message") from None
            yield new(Message, (topic, partition, base + pos, base + nxt,
                                *fields))
        elif magic == MAGIC_GAP and size == GAP_SIZE:
            base = _U64.unpack_from(data, pos + HEADER_SIZE)[0] - nxt
        else:
            raise InvalidMessage("magic", base + pos, f"unknown magic byte {magic}")
        pos = nxt
    if end_out is not None:
        end_out.append(base + pos)


def check_crc(buf, pos: int = 0) -> bool:
    """Whether the entry at ``pos`` matches its CRC (dump-log shows bad entries, not raises)."""
    size, _, crc = _unpack_header(buf, pos)
    return _crc32(memoryview(buf)[pos + HEADER_SIZE:pos + SIZE_FIELD + size]) == crc


def key_value(buf, pos: int = 0) -> tuple[bytes | None, bytes | None]:
    """(key, value) of the entry at ``pos``, framing assumed whole."""
    size, magic, _ = _unpack_header(buf, pos)
    payload = memoryview(buf)[pos + HEADER_SIZE:pos + SIZE_FIELD + size]
    if magic == MAGIC_RECORD:
        key, value = record_fields(payload.tobytes())[:2]
        return key, value
    if magic == MAGIC_KEYED and len(payload) >= KEY_HEADER.size:
        keylen = _unpack_size(payload, 1)[0]
        return payload[5:5 + keylen].tobytes(), payload[5 + keylen:].tobytes()
    return None, payload.tobytes()
