"""Sequenced acks=1 produce against a real broker process, spoken by hand over a raw socket.

A producer numbers its requests per partition and says which is the oldest it has no answer
for (``first_unacked``); the broker appends the one it expects, answers an older one as a
duplicate with the offsets it got (never appending it again), and refuses a newer one with the
retriable OUT_OF_ORDER_SEQUENCE. A restarted broker starts from ``first_unacked``.
"""
import json
import struct

import pytest

from broker import message, protocol
from broker.protocol import ErrorCode
from tests.helpers import RawClient

TOPIC = "seq"
PRODUCER = 0x5EC0_0000_0000_0001
OTHER = 0x5EC0_0000_0000_0002


@pytest.fixture
def broker(hosting_broker):
    return hosting_broker(TOPIC, 2, log={"visible_after_flush": False})


def produce_frames(value: bytes, sequence: int, first_unacked: int, producer_id=PRODUCER,
                   partition=0, corr=1) -> list[bytes]:
    return [protocol.encode_produce(corr, TOPIC, partition, 1, producer_id, sequence,
                                    first_unacked), message.encode(value)]


def produce(raw, value: bytes, sequence: int, first_unacked: int, **kwargs):
    """(base, next) of the reply, or the error code it carries."""
    reply = raw.request(*produce_frames(value, sequence, first_unacked, **kwargs))
    assert reply is not None, "no reply"
    try:
        _, offsets = protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
    except protocol.SluiceError as exc:
        return exc.code
    return offsets


def stored(raw, partition=0) -> list[bytes]:
    header, *rest = raw.request(protocol.encode_fetch(9, TOPIC, partition, 0, 1 << 20))
    protocol.decode_response(header, protocol.FETCH_REPLY)
    return [m.value for m in message.decode_set(rest[0] if rest else b"", TOPIC, partition, 0)]


def metadata(raw) -> dict:
    frames = raw.request(protocol.encode_metadata(7))
    return json.loads(protocol.decode_metadata_response(frames[0])[1])


def size(value: bytes) -> int:
    return len(message.encode(value))


def test_the_expected_sequence_is_appended_an_older_one_answered_a_newer_one_refused(raw):
    assert produce(raw, b"a", 0, 0) == (0, size(b"a"))
    assert produce(raw, b"b", 1, 0) == (size(b"a"), size(b"a") + size(b"b"))
    assert produce(raw, b"a", 0, 0) == (0, size(b"a")), "a duplicate gets its first offsets"
    assert produce(raw, b"b", 1, 1) == (size(b"a"), size(b"a") + size(b"b"))
    assert produce(raw, b"d", 3, 2) == ErrorCode.OUT_OF_ORDER_SEQUENCE
    assert protocol.OutOfOrderSequence.retriable
    assert produce(raw, b"c", 2, 2)[0] == size(b"a") + size(b"b")
    assert produce(raw, b"d", 3, 2)[0] == size(b"a") + size(b"b") + size(b"c")
    assert stored(raw) == [b"a", b"b", b"c", b"d"]
    info = metadata(raw)
    assert info["stats"]["duplicates"] == 2
    assert info["errors"] == {"out_of_order_sequence": 1}
    assert info["partitions"][0]["duplicates"] == 2


def test_a_duplicate_in_the_same_turn_as_its_original_is_stored_once(raw):
    produce(raw, b"first", 0, 0)
    frames = produce_frames(b"twice", 1, 1, corr=5)
    for _ in range(3):
        raw.socket.send_multipart(frames)
    replies = [raw.reply() for _ in range(3)]
    offsets = {protocol.decode_response(r[0], protocol.PRODUCE_REPLY)[1] for r in replies}
    assert offsets == {(size(b"first"), size(b"first") + size(b"twice"))}
    assert stored(raw) == [b"first", b"twice"]


def test_first_unacked_moves_past_a_sequence_the_producer_gave_up_on(raw):
    assert produce(raw, b"a", 0, 0) == (0, size(b"a"))
    assert produce(raw, b"c", 2, 1) == ErrorCode.OUT_OF_ORDER_SEQUENCE   # 1 is still awaited
    assert produce(raw, b"c", 2, 2) == (size(b"a"), size(b"a") + size(b"c"))  # 1 given up
    # A late copy of the abandoned request is never appended; its offsets are unknown (the
    # empty range), since it was never stored here.
    base, nxt = produce(raw, b"b", 1, 1)
    assert base == nxt
    assert stored(raw) == [b"a", b"c"]


def test_producers_and_partitions_are_sequenced_apart(raw):
    assert produce(raw, b"p0", 0, 0)[0] == 0
    assert produce(raw, b"q0", 0, 0, producer_id=OTHER)[0] == size(b"p0")
    assert produce(raw, b"p0 on 1", 0, 0, partition=1) == (0, size(b"p0 on 1"))
    assert produce(raw, b"p1", 1, 1) == (size(b"p0") + size(b"q0"),
                                         size(b"p0") + size(b"q0") + size(b"p1"))
    assert stored(raw) == [b"p0", b"q0", b"p1"]
    assert stored(raw, 1) == [b"p0 on 1"]


def test_producer_id_0_is_unsequenced(raw):
    for _ in range(2):
        assert produce(raw, b"raw", 0, 0, producer_id=0)[1] > 0
    assert produce(raw, b"raw", 7, 0, producer_id=0)[1] > 0
    assert stored(raw) == [b"raw"] * 3


def test_a_restarted_broker_starts_from_first_unacked(broker):
    raw = RawClient(broker.endpoint)
    try:
        for seq in range(3):
            produce(raw, b"%d" % seq, seq, seq)
    finally:
        raw.close()
    broker.kill()
    broker.start()
    broker.wait_hosting(TOPIC, 2)
    raw = RawClient(broker.endpoint)
    try:
        # Answers for 3 and 4 were lost with the old broker; the producer still waits for 3.
        assert produce(raw, b"5", 5, 3) == ErrorCode.OUT_OF_ORDER_SEQUENCE
        end = 3 * size(b"0")
        assert produce(raw, b"3", 3, 3) == (end, end + size(b"3"))
        assert produce(raw, b"4", 4, 3)[0] == end + size(b"3")
        assert produce(raw, b"3", 3, 3) == (end, end + size(b"3"))
        assert stored(raw) == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        raw.close()


def test_first_unacked_after_the_sequence_is_malformed(raw):
    reply = raw.request(*produce_frames(b"x", 1, 2))
    assert struct.unpack_from(">IH", reply[0])[1] == ErrorCode.MALFORMED_REQUEST
    assert stored(raw) == []
