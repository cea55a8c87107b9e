"""PRODUCE_SETS_ACKED on a real broker's request socket: several acks=1 sets of one partition in
one request, each sequenced, judged and stored as the PRODUCE of its own sequence, and one answer
with each set's offsets or error (issue 16)."""
import json

import pytest

from broker import message, protocol

TOPIC = "acked-sets"
PRODUCER = 0x5E75


@pytest.fixture
def broker(hosting_broker):
    return hosting_broker(TOPIC, 1, log={"visible_after_flush": False})


def send_sets(raw, sets, corr=1, producer_id=PRODUCER, first_sequence=0, first_unacked=0):
    """One request; the answer's outcomes, per set."""
    header = protocol.encode_produce_sets_acked(corr, TOPIC, 0, producer_id, first_sequence,
                                                first_unacked)
    reply = raw.request(header, protocol.encode_set_sizes([len(s) for s in sets]), b"".join(sets))
    assert reply is not None, "no answer"
    assert protocol.RESPONSE.unpack_from(reply[0])[0] == corr
    return protocol.decode_sets_reply(reply[0])


def stored(raw):
    header, data = raw.request(protocol.encode_fetch(2, TOPIC, 0, 0, 1 << 20))
    protocol.decode_response(header, protocol.FETCH_REPLY)
    return [m.value for m in message.decode_set(data, TOPIC, 0, 0)]


def metadata(raw):
    doc = json.loads(protocol.decode_metadata_response(raw.request(protocol.encode_metadata(9))[0])[1])
    return doc["errors"], doc["stats"]


def corrupt(value: bytes) -> bytes:
    bad = bytearray(message.encode(value))
    bad[-1] ^= 1
    return bytes(bad)


def test_each_set_gets_its_own_offsets_in_one_answer(raw):
    sets = [message.encode(b"one"), message.encode_set([(None, b"two"), (b"k", b"three")]),
            message.encode(b"four")]
    outcomes = send_sets(raw, sets)
    ends = [sum(map(len, sets[:i + 1])) for i in range(3)]
    assert outcomes == [(0, ends[0]), (ends[0], ends[1]), (ends[1], ends[2])]
    assert stored(raw) == [b"one", b"two", b"three", b"four"]


def test_a_bad_set_among_good_ones_is_refused_alone(raw):
    """Unsequenced, the sets after the bad one are stored at once; its slot holds its error."""
    good = [message.encode(b"a"), message.encode(b"b"), message.encode(b"c")]
    outcomes = send_sets(raw, [good[0], corrupt(b"x"), good[1], good[2]], producer_id=0)
    assert isinstance(outcomes[1], protocol.CorruptMessage) and not outcomes[1].retriable
    assert [type(o) for o in outcomes] == [tuple, protocol.CorruptMessage, tuple, tuple]
    assert stored(raw) == [b"a", b"b", b"c"]
    assert metadata(raw)[0]["corrupt_message"] == 1


def test_sequenced_sets_after_a_bad_one_wait_for_the_producer_to_send_again_in_order(raw):
    """The bad set's sequence is never appended, so the later ones are out of order (retriable,
    unwritten); sent again with first_unacked past the bad one, they are stored, once."""
    a, b, c = (message.encode(v) for v in (b"a", b"b", b"c"))
    outcomes = send_sets(raw, [a, corrupt(b"x"), b, c])
    assert type(outcomes[0]) is tuple and type(outcomes[1]) is protocol.CorruptMessage
    assert all(type(o) is protocol.OutOfOrderSequence and o.retriable for o in outcomes[2:])
    assert stored(raw) == [b"a"]
    again = send_sets(raw, [b, c], corr=2, first_sequence=2, first_unacked=2)
    assert all(type(o) is tuple for o in again)
    assert stored(raw) == [b"a", b"b", b"c"]


def test_a_request_sent_again_after_a_lost_answer_is_not_stored_twice(raw):
    sets = [message.encode(b"%d" % i) for i in range(5)]
    first = send_sets(raw, sets, corr=1)
    again = send_sets(raw, sets, corr=2)
    assert again == first, "a duplicate is answered with its original's offsets"
    assert stored(raw) == [b"%d" % i for i in range(5)]
    assert metadata(raw)[1]["duplicates"] == 5


def test_malformed_set_sizes_refuse_the_request_and_the_broker_keeps_serving(raw):
    header = protocol.encode_produce_sets_acked(3, TOPIC, 0, PRODUCER, 0, 0)
    reply = raw.request(header, protocol.encode_set_sizes([4, 4]), b"123456789")
    with pytest.raises(protocol.MalformedRequest, match="add up to 8 bytes"):
        protocol.decode_sets_reply(reply[0])
    assert send_sets(raw, [message.encode(b"after")], corr=4) == [(0, len(message.encode(b"after")))]
    assert stored(raw) == [b"after"]


def test_acks_other_than_1_are_refused(raw):
    header = bytearray(protocol.encode_produce_sets_acked(5, TOPIC, 0, PRODUCER, 0, 0))
    header[protocol.API.size] = protocol.ACKS_ALL
    one = message.encode(b"v")
    reply = raw.request(bytes(header), protocol.encode_set_sizes([len(one)]), one)
    with pytest.raises(protocol.MalformedRequest, match="acks=1 only"):
        protocol.decode_sets_reply(reply[0])
    assert stored(raw) == []


def test_the_header_and_the_answer_round_trip():
    request = protocol.decode_request(protocol.encode_produce_sets_acked(7, TOPIC, 2, PRODUCER, 40, 38))
    assert (request.api, request.correlation_id, request.topic, request.partition, request.acks,
            request.producer_id, request.sequence, request.first_unacked) == (
        protocol.Api.PRODUCE_SETS_ACKED, 7, TOPIC, 2, 1, PRODUCER, 40, 38)
    with pytest.raises(protocol.MalformedRequest, match="first_unacked 41 is after"):
        protocol.decode_request(protocol.encode_produce_sets_acked(7, TOPIC, 2, PRODUCER, 40, 41))
    outcomes = protocol.decode_sets_reply(protocol.encode_sets_reply(7, [
        (0, 10), protocol.OutOfOrderSequence("send again from 3"), (10, 10)]))
    assert outcomes[0] == (0, 10) and outcomes[2] == (10, 10)
    assert type(outcomes[1]) is protocol.OutOfOrderSequence
    assert str(outcomes[1]) == "send again from 3" and outcomes[1].retriable
    refused = protocol.encode_response(7, error=protocol.NotLeader("not here"), fill=protocol.COUNT)
    with pytest.raises(protocol.NotLeader):
        protocol.decode_sets_reply(refused)
