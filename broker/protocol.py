"""The wire protocol: request and response frames carried over ZeroMQ, and the error codes.

Clients talk to a broker with a DEALER socket; the broker answers from a ROUTER. Each request
is a ZeroMQ multipart message: frame 0 is a small binary header, frame 1 (produce requests and
fetch responses only) is a MessageSet, carried as its own frame so that neither side copies it.
All integers are big-endian; a string is a u16 length and UTF-8 bytes.

Requests (frame 0 starts with api u8, correlation id u32)::

    PRODUCE   acks u8, topic str, partition u32             + frame 1: MessageSet
              acks 1 and all only: producer_id u64, sequence u32, first_unacked u32
    FETCH     topic str, partition u32, offset u64, max_bytes u32, min_bytes u32, max_wait_ms u32,
              replica_id i32, leader_epoch i32
    OFFSETS   topic str, partition u32, time i64            (-1 latest, -2 earliest, else ms)
    METADATA  (nothing)
    OFFSET_FOR_EPOCH topic str, partition u32, leader_epoch i32
    OFFSET_FOR_TIME topic str, partition u32, time i64          (ms, >= 0)
    OFFSET_COMMIT group str, count u32, count x (topic str, partition u32, offset i64)
                                                          (offset -1: delete the commit)
    OFFSET_FETCH group str, count u32, count x (topic str, partition u32)   (0: all of the group's)
    PRODUCE_SETS topic str, partition u32                 (the acks=0 produce socket only)
              + frame 1: set sizes, u32 each + frame 2: those MessageSets back to back
    PRODUCE_SETS_ACKED acks u8 (1 only), topic str, partition u32, producer_id u64,
              first_sequence u32, first_unacked u32  + frames 1 and 2 as PRODUCE_SETS

Responses (frame 0 starts with correlation id u32, error u16, then the api's fields, then the
error message str; fields of a failed response are zero; an error that knows where readable data
resumes, OFFSET_OUT_OF_RANGE below the log start, OFFSET_GAP and CORRUPT_MESSAGE, adds
resume_offset u64 after its text)::

    PRODUCE   base_offset u64, next_offset u64              (only when acks is 1 or all)
    PRODUCE_SETS_ACKED count u32, count x (error u16, base_offset u64, next_offset u64);
              after the error text, the text (str) of each set whose error is not 0, in order
    FETCH     high_watermark u64, log_start u64             + frame 1: whole messages
                                         replica fetches only: + frame 2: leader epoch entries
              after the (empty) error text, only when frame 1 comes from a compacted segment:
              next_offset u64, the offset just past frame 1 (gap markers in it make the
              offsets jump: broker/message.py); absent, it is the fetch offset + frame 1's size
    OFFSETS   offset u64
    METADATA  json text: u32 length and UTF-8             (broker id, endpoint, partitions;
              a u16 str would cut it: it grows some 400 bytes per hosted partition)
    OFFSET_FOR_EPOCH leader_epoch i32, end_offset u64
    OFFSET_FOR_TIME offset i64, timestamp i64                 (-1, -1: no message that late)
    OFFSET_COMMIT base_offset u64, next_offset u64     (where the commit lies in the offsets log)
    OFFSET_FETCH (nothing)              + frame 1: (topic str, partition u32, offset i64,
                                          commit_time_ms i64) per committed partition asked

Replication (issue 12) adds to these, on the same sockets and with the same error codes:

- ``acks`` is 0, 1 or ``ACKS_ALL`` (255, a producer's ``"all"`` or -1): the answer comes once
  every in-sync replica has the set (the high watermark passed it); with fewer in-sync replicas
  than the topic's ``min_insync_replicas`` the set is refused, unwritten, with the retriable
  NOT_ENOUGH_REPLICAS.
- A FETCH names who fetches: ``replica_id`` is ``CONSUMER`` (-1) for clients, else the broker
  id of a follower copying the partition, and ``leader_epoch`` the epoch the fetcher believes
  current (``UNKNOWN_EPOCH``, -1: no check). A follower's fetch offset is its log end, which is
  how the leader learns it; a consumer sees only messages below the high watermark. A leader
  that finds the fetcher's epoch newer than its own answers FENCED_LEADER_EPOCH (it is the
  stale side); a broker that does not lead the partition answers NOT_LEADER.
- A replica fetch's answer carries, as frame 2, the leader's epoch entries (``EPOCH_ENTRY``
  pairs ``epoch i32, start_offset u64``, oldest first): the message format has no epoch field,
  so the follower learns from these which epoch wrote each byte it copies.
- OFFSET_FOR_EPOCH (Kafka's OffsetsForLeaderEpoch, KIP-101): for a follower's latest epoch,
  the leader answers the largest epoch it knows that is not after it and where that epoch's
  messages end on the leader (the start of the next epoch, or the log end for the current
  one). The follower truncates its log there before fetching: it keeps every message the
  leader has and drops what only it wrote.

OFFSET_FOR_TIME (Kafka's ListOffsets by timestamp, for ``sluice groups reset-offsets
--to-datetime``): the first message below the consumer's end whose timestamp (magic 2) is at
or after ``time``, and that timestamp; OFFSETS keeps the paper's segment granularity.

OFFSET_COMMIT and OFFSET_FETCH (issue 15) are a group's offsets in the log store
(coordinator/offset_store_choice.py): both go to the leader of the group's partition of
``__consumer_offsets``, which appends the commit as keyed messages with acks=all (answered once
every in-sync replica has them) and answers fetches from its memory of the partition
(broker/committed_offsets.py). Another broker answers NOT_COORDINATOR (retriable: look the leader
up again). Offsets are taken as given: callers commit message boundaries.

PRODUCE_SETS (issue 16) carries several acks=0 MessageSets of one partition in one ZeroMQ
message: a batch-1 producer's one-message sets that were already waiting when its sender took
them (clients/coalescer.py), so that each costs neither its own two sends nor its own two
receives. Each set is still judged and stored as one: the broker validates every set alone in
one walk of frame 2 (``message.validate_sets``) and appends them with one write when all are
good, which leaves the log as appending them one by one would; a bad set is refused (counted)
and its good neighbours are stored. Sizes that are not a whole number of u32, none at all, a
zero or a total other than frame 2's length make the request malformed (refused whole: the
sets cannot be told apart). The broker's error counts count a refusal of the whole request
(malformed, too large, authentication, authorization) once, and a set refused on its own
(invalid, backlog quota) once per set.

PRODUCE_SETS_ACKED (issue 16) is PRODUCE_SETS for acks=1, on the request socket: the acks=1
producer's sets of one partition that waited behind a full window (clients/producer.py) leave
in one request. Set i has sequence ``first_sequence + i``; each is judged, sequenced and stored
exactly as a PRODUCE of its own with that sequence and the request's ``first_unacked`` would be
(an older sequence a duplicate, a bad set refused alone), and the one answer carries each set's
offsets or error, in the order of the sets. A request-wide error (malformed, not the leader,
backlog quota) is the answer's own error, with count 0: no set was written.

Sequenced produce (acks=1 with a producer_id other than 0) keeps a partition's order across
retries and broker restarts: the producer numbers its requests per partition (``sequence``,
from 0) and says which is the oldest it has no answer for yet (``first_unacked``). The broker
expects ``max(next it expects, first_unacked)``: that request is appended, an older one is a
duplicate (answered with the offsets it got, not appended again), a newer one is refused with
the retriable OUT_OF_ORDER_SEQUENCE so that the producer sends again in order. A broker that
restarted knows nothing of the producer and starts from ``first_unacked``. producer_id 0 is
unsequenced (the paper's behaviour).
"""
from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass

# The errors that travel on the wire live in the one taxonomy; re-exported for the wire's users.
from coordinator.errors import (  # noqa: F401
    AuthenticationFailed, AuthorizationFailed, BacklogQuotaExceeded, BrokerUnavailable, CorruptMessage, ErrorCode, InvalidArgument, InvalidOffset, InvalidRecord,
    FencedLeaderEpoch, MalformedRequest, MessageTooLarge, NotEnoughReplicas, NotLeader,
    OffsetGap, OffsetOutOfRange, OutOfOrderSequence, RequestTimedOut, SluiceError, StorageError, UnknownTopicOrPartition,
    error_for)

API = struct.Struct(">BI")
PRODUCE_FIELDS = struct.Struct(">B")
SEQUENCE_FIELDS = struct.Struct(">QII")   # producer_id, sequence, first_unacked (acks 1, all)
SET_OUTCOME = struct.Struct(">HQQ")       # PRODUCE_SETS_ACKED answer: error, base, next per set
PARTITION = struct.Struct(">I")
FETCH_FIELDS = struct.Struct(">QIIIii")
OFFSETS_FIELDS = struct.Struct(">q")
RESPONSE = struct.Struct(">IH")
PRODUCE_REPLY = struct.Struct(">QQ")
FETCH_REPLY = struct.Struct(">QQ")
OFFSETS_REPLY = struct.Struct(">Q")
OFFSET_FOR_TIME_REPLY = struct.Struct(">qq")   # offset, timestamp (-1, -1: none)
RESUME = struct.Struct(">Q")
NEXT_OFFSET = struct.Struct(">Q")
EPOCH_REQUEST = struct.Struct(">i")
COUNT = struct.Struct(">I")
COMMIT_ENTRY = struct.Struct(">Iq")          # partition, offset (after the topic str)
COMMITTED_ENTRY = struct.Struct(">Iqq")      # partition, offset, commit_time_ms
EPOCH_ENTRY = struct.Struct(">iQ")       # leader_epoch, start_offset (OFFSET_FOR_EPOCH: end_offset)
_STR_LEN = struct.Struct(">H")
_TEXT_LEN = struct.Struct(">I")

LATEST = -1
EARLIEST = -2
ACKS_ALL = 255           # acks on the wire for "all" (-1)
CONSUMER = -1            # FETCH replica_id of a client
UNKNOWN_EPOCH = -1       # FETCH leader_epoch that asks for no check


class Api(enum.IntEnum):
    PRODUCE = 1
    FETCH = 2
    OFFSETS = 3
    METADATA = 4
    OFFSET_FOR_EPOCH = 5
    OFFSET_FOR_TIME = 6
    OFFSET_COMMIT = 7
    OFFSET_FETCH = 8
    PRODUCE_SETS = 9
    PRODUCE_SETS_ACKED = 10


def pack_str(text: str) -> bytes:
    data = text.encode()[:0xFFFF]
    return _STR_LEN.pack(len(data)) + data


def unpack_str(buf, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise MalformedRequest("string length cut short")
    (n,) = _STR_LEN.unpack_from(buf, pos)
    end = pos + 2 + n
    if end > len(buf):
        raise MalformedRequest("string cut short")
    try:
        return bytes(buf[pos + 2:end]).decode(), end
    except UnicodeDecodeError:
        raise MalformedRequest("string is not UTF-8") from None


def _unpack(fmt: struct.Struct, buf, pos: int) -> tuple[tuple, int]:
    if pos + fmt.size > len(buf):
        raise MalformedRequest("request header cut short")
    return fmt.unpack_from(buf, pos), pos + fmt.size


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request header; ``messages`` is frame 1 of a produce request.

    ``principal`` is who sent it: the name of the CURVE key its connection authenticated with
    (the ZAP handler's User-Id), "" when the broker is not secured. It never travels in the
    header: the broker sets it from the received frame."""

    api: Api
    correlation_id: int
    topic: str = ""
    partition: int = 0
    acks: int = 0
    producer_id: int = 0
    sequence: int = 0
    first_unacked: int = 0
    offset: int = 0
    max_bytes: int = 0
    min_bytes: int = 0
    max_wait_ms: int = 0
    time: int = 0
    replica_id: int = CONSUMER
    leader_epoch: int = UNKNOWN_EPOCH
    principal: str = ""
    group: str = ""
    entries: tuple = ()    # OFFSET_COMMIT: (topic, partition, offset); OFFSET_FETCH: (topic, p)


def encode_produce(correlation_id: int, topic: str, partition: int, acks: int,
                   producer_id: int = 0, sequence: int = 0, first_unacked: int = 0) -> bytes:
    header = (API.pack(Api.PRODUCE, correlation_id) + PRODUCE_FIELDS.pack(acks)
              + pack_str(topic) + PARTITION.pack(partition))
    if acks:
        header += SEQUENCE_FIELDS.pack(producer_id, sequence, first_unacked)
    return header


def encode_produce_sets(correlation_id: int, topic: str, partition: int) -> bytes:
    """Frame 0 of a PRODUCE_SETS request (acks=0, the produce socket only)."""
    return API.pack(Api.PRODUCE_SETS, correlation_id) + pack_str(topic) + PARTITION.pack(partition)


def encode_produce_sets_acked(correlation_id: int, topic: str, partition: int,
                              producer_id: int = 0, first_sequence: int = 0,
                              first_unacked: int = 0) -> bytes:
    """Frame 0 of a PRODUCE_SETS_ACKED request (acks=1, the request socket)."""
    return (API.pack(Api.PRODUCE_SETS_ACKED, correlation_id) + PRODUCE_FIELDS.pack(1)
            + pack_str(topic) + PARTITION.pack(partition)
            + SEQUENCE_FIELDS.pack(producer_id, first_sequence, first_unacked))


def encode_sets_reply(correlation_id: int, outcomes) -> bytes:
    """Frame 0 of a PRODUCE_SETS_ACKED answer: ``outcomes`` holds, per set in order, its
    ``(base, next)`` or its SluiceError.

    >>> decode_sets_reply(encode_sets_reply(3, [(0, 9), MessageTooLarge("too big")]))
    [(0, 9), MessageTooLarge('too big')]
    """
    parts = [RESPONSE.pack(correlation_id, ErrorCode.NONE), COUNT.pack(len(outcomes))]
    texts = []
    for outcome in outcomes:
        if type(outcome) is tuple:
            parts.append(SET_OUTCOME.pack(ErrorCode.NONE, *outcome))
        else:
            parts.append(SET_OUTCOME.pack(outcome.code, 0, 0))
            texts.append(pack_str(str(outcome)))
    parts.append(pack_str(""))
    return b"".join(parts + texts)


def decode_sets_reply(header) -> list:
    """The outcomes of a PRODUCE_SETS_ACKED answer, per set: ``(base, next)`` or the typed
    error (not raised); raises the answer's own error, when it has one."""
    _, (count,) = decode_response(header, COUNT)
    pos = RESPONSE.size + COUNT.size
    if len(header) < pos + count * SET_OUTCOME.size:
        raise MalformedRequest("set outcomes cut short")
    rows = [SET_OUTCOME.unpack_from(header, pos + i * SET_OUTCOME.size) for i in range(count)]
    _, pos = unpack_str(header, pos + count * SET_OUTCOME.size)
    outcomes = []
    for code, base, nxt in rows:
        if code == ErrorCode.NONE:
            outcomes.append((base, nxt))
        else:
            text, pos = unpack_str(header, pos)
            outcomes.append(error_for(code, text, None))
    return outcomes


def encode_set_sizes(sizes) -> bytes:
    """Frame 1 of a PRODUCE_SETS request: the size of each set of frame 2, in order.

    >>> decode_set_sizes(encode_set_sizes([221, 9]), 230)
    (221, 9)
    """
    return struct.pack(f">{len(sizes)}I", *sizes)


def decode_set_sizes(frame, body_bytes: int) -> tuple[int, ...]:
    """The set sizes of a PRODUCE_SETS request whose frame 2 is ``body_bytes`` long; raises
    MalformedRequest when they cannot cut it into non-empty sets.

    >>> decode_set_sizes(encode_set_sizes([221, 9]), 231)
    Traceback (most recent call last):
    ...
    coordinator.errors.MalformedRequest: set sizes add up to 230 bytes, the sets are 231
    """
    n, rest = divmod(len(frame), COUNT.size)
    if rest:
        raise MalformedRequest(f"set sizes of {len(frame)} bytes: not a whole number of u32")
    if not n:
        raise MalformedRequest("a PRODUCE_SETS request names no set")
    sizes = struct.unpack(f">{n}I", frame)
    if min(sizes) == 0:
        raise MalformedRequest(f"set {sizes.index(0)} of {n} is empty")
    total = sum(sizes)
    if total != body_bytes:
        raise MalformedRequest(f"set sizes add up to {total} bytes, the sets are {body_bytes}")
    return sizes


def encode_fetch(correlation_id: int, topic: str, partition: int, offset: int, max_bytes: int,
                 min_bytes: int = 0, max_wait_ms: int = 0, replica_id: int = CONSUMER,
                 leader_epoch: int = UNKNOWN_EPOCH) -> bytes:
    return (API.pack(Api.FETCH, correlation_id) + pack_str(topic) + PARTITION.pack(partition)
            + FETCH_FIELDS.pack(offset, max_bytes, min_bytes, max_wait_ms, replica_id,
                                leader_epoch))


def encode_offset_for_epoch(correlation_id: int, topic: str, partition: int,
                            leader_epoch: int) -> bytes:
    return (API.pack(Api.OFFSET_FOR_EPOCH, correlation_id) + pack_str(topic)
            + PARTITION.pack(partition) + EPOCH_REQUEST.pack(leader_epoch))


def encode_epochs(entries) -> bytes:
    """Frame 2 of a replica fetch's answer: ``(epoch, start_offset)`` pairs, oldest first."""
    return b"".join(EPOCH_ENTRY.pack(epoch, start) for epoch, start in entries)


def decode_epochs(frame) -> list[tuple[int, int]]:
    if len(frame) % EPOCH_ENTRY.size:
        raise MalformedRequest("leader epoch entries cut short")
    return [entry for entry in EPOCH_ENTRY.iter_unpack(frame)]


SEQUENCED_SET = struct.Struct(">QiIIQQ")   # producer_id, epoch, first_seq, last_seq, base, next


def encode_sets(entries) -> bytes:
    """Frame 3 of a replica fetch's answer (present only when not empty): the sequenced sets
    the leader appended in the answer's byte range (broker/producer_state.py), oldest first."""
    return b"".join(SEQUENCED_SET.pack(*entry) for entry in entries)


def decode_sets(frame) -> list[tuple[int, int, int, int, int, int]]:
    if len(frame) % SEQUENCED_SET.size:
        raise MalformedRequest("sequenced set entries cut short")
    return list(SEQUENCED_SET.iter_unpack(frame))


APPEND_CHECKSUM = struct.Struct(">III")      # length, message count, CRC32


def encode_checksums(entries) -> bytes:
    """Frame 4 of a replica fetch's answer: the leader's append checksums that tile the
    answer's bytes from its start, ``(length, count, crc)`` each (broker/append_checksums.py).
    Frame 3 is then present, empty when there are no sequenced sets."""
    return b"".join(APPEND_CHECKSUM.pack(*entry) for entry in entries)


def decode_checksums(frame) -> list[tuple[int, int, int]]:
    if len(frame) % APPEND_CHECKSUM.size:
        raise MalformedRequest("append checksum entries cut short")
    return list(APPEND_CHECKSUM.iter_unpack(frame))


def encode_offsets(correlation_id: int, topic: str, partition: int, time: int) -> bytes:
    return (API.pack(Api.OFFSETS, correlation_id) + pack_str(topic) + PARTITION.pack(partition)
            + OFFSETS_FIELDS.pack(time))


def encode_offset_for_time(correlation_id: int, topic: str, partition: int,
                           time_ms: int) -> bytes:
    return (API.pack(Api.OFFSET_FOR_TIME, correlation_id) + pack_str(topic)
            + PARTITION.pack(partition) + OFFSETS_FIELDS.pack(time_ms))


def encode_offset_commit(correlation_id: int, group: str, offsets) -> bytes:
    """``offsets``: ``{(topic, partition): offset}`` (offset -1 deletes the commit)."""
    parts = [API.pack(Api.OFFSET_COMMIT, correlation_id), pack_str(group), COUNT.pack(len(offsets))]
    for (topic, partition), offset in offsets.items():
        parts += (pack_str(topic), COMMIT_ENTRY.pack(partition, offset))
    return b"".join(parts)


def encode_offset_fetch(correlation_id: int, group: str, partitions=()) -> bytes:
    """``partitions``: ``(topic, partition)`` pairs; none asks for all of the group's."""
    parts = [API.pack(Api.OFFSET_FETCH, correlation_id), pack_str(group),
             COUNT.pack(len(partitions))]
    for topic, partition in partitions:
        parts += (pack_str(topic), PARTITION.pack(partition))
    return b"".join(parts)


def encode_committed(entries) -> bytes:
    """Frame 1 of an OFFSET_FETCH answer: ``(topic, partition, offset, commit_time_ms)``s.

    >>> decode_committed(encode_committed([("t", 1, 4096, 1700000000000)]))
    [('t', 1, 4096, 1700000000000)]
    """
    return b"".join(pack_str(topic) + COMMITTED_ENTRY.pack(partition, offset, at)
                    for topic, partition, offset, at in entries)


def decode_committed(frame) -> list[tuple[str, int, int, int]]:
    found, pos = [], 0
    while pos < len(frame):
        topic, pos = unpack_str(frame, pos)
        (partition, offset, at), pos = _unpack(COMMITTED_ENTRY, frame, pos)
        found.append((topic, partition, offset, at))
    return found


def encode_metadata(correlation_id: int) -> bytes:
    return API.pack(Api.METADATA, correlation_id)


def peek_correlation_id(header) -> int:
    """The correlation id of a request whose header may be malformed (0 when unreadable)."""
    return API.unpack_from(header)[1] if len(header) >= API.size else 0


def decode_request(header, principal: str = "") -> Request:
    """Parse frame 0 of a request, sent by ``principal``. Raises MalformedRequest with a reason
    a person can read."""
    (api, corr), pos = _unpack(API, header, 0)
    try:
        api = Api(api)
    except ValueError:
        raise SluiceError(f"unknown api {api}", ErrorCode.UNKNOWN_API) from None
    if api is Api.METADATA:
        request = Request(api, corr)
    elif api is Api.PRODUCE or api is Api.PRODUCE_SETS_ACKED:
        (acks,), pos = _unpack(PRODUCE_FIELDS, header, pos)
        if api is Api.PRODUCE_SETS_ACKED and acks != 1:
            raise MalformedRequest(f"PRODUCE_SETS_ACKED is acks=1 only, not acks {acks}")
        if acks not in (0, 1, ACKS_ALL):
            raise MalformedRequest(f"acks must be 0, 1 or {ACKS_ALL} (all), not {acks}")
        topic, pos = unpack_str(header, pos)
        (partition,), pos = _unpack(PARTITION, header, pos)
        producer_id = sequence = first_unacked = 0
        if acks:        # PRODUCE_SETS_ACKED: the first set's sequence
            (producer_id, sequence, first_unacked), pos = _unpack(SEQUENCE_FIELDS, header, pos)
            if producer_id and first_unacked > sequence:
                raise MalformedRequest(f"first_unacked {first_unacked} is after the request's "
                                       f"own sequence {sequence}")
        request = Request(api, corr, topic, partition, acks=acks, producer_id=producer_id,
                          sequence=sequence, first_unacked=first_unacked)
    elif api is Api.PRODUCE_SETS:
        topic, pos = unpack_str(header, pos)
        (partition,), pos = _unpack(PARTITION, header, pos)
        request = Request(api, corr, topic, partition)
    elif api is Api.FETCH:
        topic, pos = unpack_str(header, pos)
        (partition,), pos = _unpack(PARTITION, header, pos)
        (offset, max_bytes, min_bytes, max_wait, replica_id, leader_epoch), pos = _unpack(
            FETCH_FIELDS, header, pos)
        request = Request(api, corr, topic, partition, offset=offset, max_bytes=max_bytes,
                          min_bytes=min_bytes, max_wait_ms=max_wait, replica_id=replica_id,
                          leader_epoch=leader_epoch)
    elif api in (Api.OFFSET_COMMIT, Api.OFFSET_FETCH):
        group, pos = unpack_str(header, pos)
        (count,), pos = _unpack(COUNT, header, pos)
        entries = []
        for _ in range(count):
            topic, pos = unpack_str(header, pos)
            if api is Api.OFFSET_COMMIT:
                (partition, offset), pos = _unpack(COMMIT_ENTRY, header, pos)
                if offset < -1:
                    raise MalformedRequest(f"cannot commit {topic}/{partition} at {offset}: an "
                                           f"offset is >= 0 (-1 deletes the commit)")
                entries.append((topic, partition, offset))
            else:
                (partition,), pos = _unpack(PARTITION, header, pos)
                entries.append((topic, partition))
        request = Request(api, corr, group=group, entries=tuple(entries))
    elif api is Api.OFFSET_FOR_EPOCH:
        topic, pos = unpack_str(header, pos)
        (partition,), pos = _unpack(PARTITION, header, pos)
        (leader_epoch,), pos = _unpack(EPOCH_REQUEST, header, pos)
        request = Request(api, corr, topic, partition, leader_epoch=leader_epoch)
    else:
        topic, pos = unpack_str(header, pos)
        (partition,), pos = _unpack(PARTITION, header, pos)
        (time,), pos = _unpack(OFFSETS_FIELDS, header, pos)
        request = Request(api, corr, topic, partition, time=time)
    if pos != len(header):
        raise MalformedRequest(f"{len(header) - pos} unexpected bytes after the request header")
    return dataclasses.replace(request, principal=principal) if principal else request


def encode_response(correlation_id: int, fields: bytes = b"", error: SluiceError | None = None,
                    fill: struct.Struct | None = None) -> bytes:
    """Frame 0 of a response. On error, ``fill`` gives the size of the zeroed api fields, and
    the error's ``resume_offset``, when it has one, follows its text."""
    if error is None:
        return RESPONSE.pack(correlation_id, ErrorCode.NONE) + fields + pack_str("")
    zeros = bytes(fill.size) if fill is not None else b""
    resume = b"" if error.resume_offset is None else RESUME.pack(error.resume_offset)
    return RESPONSE.pack(correlation_id, error.code) + zeros + pack_str(str(error)) + resume


def decode_response(header, fields: struct.Struct | None = None) -> tuple[int, tuple]:
    """Parse frame 0 of a response: (correlation id, api fields); raises the typed error."""
    if len(header) < RESPONSE.size:
        raise MalformedRequest("response header cut short")
    corr, code = RESPONSE.unpack_from(header)
    pos = RESPONSE.size
    values: tuple = ()
    if fields is not None:
        values, pos = _unpack(fields, header, pos)
    if code != ErrorCode.NONE:
        message, pos = unpack_str(header, pos)
        resume = RESUME.unpack_from(header, pos)[0] if len(header) - pos >= RESUME.size else None
        error = error_for(code, message, resume)
        error.correlation_id = corr
        raise error
    return corr, values


def fetch_next_offset(header, offset: int, nbytes: int) -> int:
    """The offset just past a successful FETCH answer's set of ``nbytes`` read at ``offset``:
    the trailing ``next_offset`` when the set came from a compacted segment."""
    pos = RESPONSE.size + FETCH_REPLY.size + _STR_LEN.size
    if len(header) >= pos + NEXT_OFFSET.size:
        return NEXT_OFFSET.unpack_from(header, pos)[0]
    return offset + nbytes


def decode_metadata_response(header) -> tuple[int, str]:
    corr, _ = decode_response(header)
    pos = RESPONSE.size + _TEXT_LEN.size
    if len(header) < pos:
        raise MalformedRequest("metadata text length cut short")
    end = pos + _TEXT_LEN.unpack_from(header, RESPONSE.size)[0]
    if end > len(header):
        raise MalformedRequest("metadata text cut short")
    try:
        return corr, bytes(header[pos:end]).decode()
    except UnicodeDecodeError:
        raise MalformedRequest("metadata text is not UTF-8") from None


def encode_metadata_response(correlation_id: int, text: str) -> bytes:
    data = text.encode()
    return RESPONSE.pack(correlation_id, ErrorCode.NONE) + _TEXT_LEN.pack(len(data)) + data
