"""Request and response frames round-trip, and malformed ones raise typed errors."""
import json

import pytest

from broker import protocol
from broker.protocol import Api, ErrorCode


def test_requests_round_trip():
    req = protocol.decode_request(protocol.encode_produce(7, "clicks", 3, 1))
    assert (req.api, req.correlation_id, req.topic, req.partition, req.acks) == (
        Api.PRODUCE, 7, "clicks", 3, 1)
    req = protocol.decode_request(protocol.encode_fetch(8, "t", 0, 2**40, 1 << 20, 1, 500))
    assert (req.api, req.offset, req.max_bytes, req.min_bytes, req.max_wait_ms) == (
        Api.FETCH, 2**40, 1 << 20, 1, 500)
    req = protocol.decode_request(protocol.encode_offsets(9, "t", 1, protocol.EARLIEST))
    assert (req.api, req.time) == (Api.OFFSETS, -2)
    assert protocol.decode_request(protocol.encode_metadata(10)).api is Api.METADATA
    req = protocol.decode_request(protocol.encode_offset_for_time(11, "t", 2, 1_700_000_000_000))
    assert (req.api, req.partition, req.time) == (Api.OFFSET_FOR_TIME, 2, 1_700_000_000_000)


def test_replication_fields_round_trip():
    req = protocol.decode_request(protocol.encode_produce(1, "t", 0, protocol.ACKS_ALL, 5, 2, 1))
    assert (req.acks, req.producer_id, req.sequence, req.first_unacked) == (255, 5, 2, 1)
    consumer = protocol.decode_request(protocol.encode_fetch(2, "t", 0, 9, 100))
    assert (consumer.replica_id, consumer.leader_epoch) == (protocol.CONSUMER,
                                                            protocol.UNKNOWN_EPOCH)
    follower = protocol.decode_request(protocol.encode_fetch(3, "t", 1, 9, 100, 1, 50, 2, 7))
    assert (follower.replica_id, follower.leader_epoch, follower.max_wait_ms) == (2, 7, 50)
    req = protocol.decode_request(protocol.encode_offset_for_epoch(4, "t", 3, 6))
    assert (req.api, req.partition, req.leader_epoch) == (Api.OFFSET_FOR_EPOCH, 3, 6)
    entries = [(0, 0), (3, 4096), (7, 2**40)]
    assert protocol.decode_epochs(protocol.encode_epochs(entries)) == entries
    with pytest.raises(protocol.MalformedRequest):
        protocol.decode_epochs(protocol.encode_epochs(entries)[:-1])


@pytest.mark.parametrize("error,code", [
    (protocol.NotEnoughReplicas("isr [1] is below min_insync_replicas 2"),
     ErrorCode.NOT_ENOUGH_REPLICAS),
    (protocol.FencedLeaderEpoch("epoch 3 is behind 4"), ErrorCode.FENCED_LEADER_EPOCH),
])
def test_replication_errors_travel_typed_and_retriable(error, code):
    frame = protocol.encode_response(8, error=error, fill=protocol.PRODUCE_REPLY)
    with pytest.raises(type(error)) as info:
        protocol.decode_response(frame, protocol.PRODUCE_REPLY)
    assert info.value.code == code and info.value.retriable


@pytest.mark.parametrize("header,code", [
    (b"", ErrorCode.MALFORMED_REQUEST),
    (b"\x01\x00\x00", ErrorCode.MALFORMED_REQUEST),
    (b"\x63\x00\x00\x00\x01", ErrorCode.UNKNOWN_API),
    (protocol.encode_produce(1, "t", 0, 1)[:-2], ErrorCode.MALFORMED_REQUEST),
    (protocol.encode_fetch(1, "t", 0, 0, 10) + b"extra", ErrorCode.MALFORMED_REQUEST),
    (protocol.encode_produce(1, "t", 0, 2), ErrorCode.MALFORMED_REQUEST),
    (protocol.encode_offset_for_epoch(1, "t", 0, 1)[:-1], ErrorCode.MALFORMED_REQUEST),
    (b"\x01\x00\x00\x00\x01\x05" + protocol.pack_str("t") + b"\x00\x00\x00\x00", ErrorCode.MALFORMED_REQUEST),
    (b"\x02\x00\x00\x00\x01\x00\x02\xff\xfe" + bytes(24), ErrorCode.MALFORMED_REQUEST),
])
def test_malformed_requests_raise_typed_errors(header, code):
    with pytest.raises(protocol.SluiceError) as info:
        protocol.decode_request(header)
    assert info.value.code == code


def test_error_responses_carry_a_code_and_a_line():
    frame = protocol.encode_response(5, error=protocol.OffsetOutOfRange("offset 9 is past the end"),
                                     fill=protocol.FETCH_REPLY)
    with pytest.raises(protocol.OffsetOutOfRange, match="past the end") as info:
        protocol.decode_response(frame, protocol.FETCH_REPLY)
    assert info.value.correlation_id == 5


def test_ok_response_round_trip():
    frame = protocol.encode_response(6, protocol.PRODUCE_REPLY.pack(100, 300))
    assert protocol.decode_response(frame, protocol.PRODUCE_REPLY) == (6, (100, 300))
    corr, text = protocol.decode_metadata_response(protocol.encode_metadata_response(4, '{"a": 1}'))
    assert (corr, text) == (4, '{"a": 1}')


def test_a_metadata_document_past_64_kib_comes_whole():
    """A broker's METADATA document grows with the partitions it hosts (some 400 bytes each):
    a u16-length string cut it at 65,535 bytes, past about 150 partitions."""
    text = json.dumps({"partitions": [{"topic": "wide", "partition": p, "note": "é" * 300}
                                      for p in range(300)]})
    assert len(text.encode()) > 0xFFFF
    assert protocol.decode_metadata_response(protocol.encode_metadata_response(4, text)) == (
        4, text)


def test_unknown_error_code_still_gives_a_readable_error():
    error = protocol.error_for(999, "something new")
    assert "999" in str(error) and "something new" in str(error)


def test_an_error_can_say_where_data_resumes():
    gap = protocol.OffsetGap("offset 90 lies in a gap", resume_offset=4096)
    frame = protocol.encode_response(7, error=gap, fill=protocol.FETCH_REPLY)
    with pytest.raises(protocol.OffsetGap) as info:
        protocol.decode_response(frame, protocol.FETCH_REPLY)
    assert info.value.resume_offset == 4096 and info.value.code == ErrorCode.OFFSET_GAP
    plain = protocol.encode_response(8, error=protocol.InvalidOffset("no"), fill=protocol.FETCH_REPLY)
    with pytest.raises(protocol.InvalidOffset) as info:
        protocol.decode_response(plain, protocol.FETCH_REPLY)
    assert info.value.resume_offset is None


def test_errors_say_whether_trying_again_can_help():
    assert protocol.BrokerUnavailable("x").retriable and protocol.OutOfOrderSequence("x").retriable
    assert not protocol.CorruptMessage("x").retriable and not protocol.MessageTooLarge("x").retriable
    assert protocol.error_for(ErrorCode.REQUEST_TIMED_OUT, "slow").retriable


def test_sequenced_produce_header_round_trips():
    req = protocol.decode_request(protocol.encode_produce(3, "t", 2, 1, producer_id=2**60,
                                                          sequence=41, first_unacked=38))
    assert (req.producer_id, req.sequence, req.first_unacked) == (2**60, 41, 38)
    plain = protocol.decode_request(protocol.encode_produce(4, "t", 2, 0))
    assert (plain.acks, plain.producer_id) == (0, 0)
    with pytest.raises(protocol.MalformedRequest):
        protocol.decode_request(protocol.encode_produce(5, "t", 2, 1, producer_id=9, sequence=1,
                                                        first_unacked=2))


def test_produce_sets_round_trips():
    req = protocol.decode_request(protocol.encode_produce_sets(0, "clicks", 3))
    assert (req.api, req.topic, req.partition, req.acks) == (Api.PRODUCE_SETS, "clicks", 3, 0)
    assert protocol.decode_set_sizes(protocol.encode_set_sizes([221, 9, 4096]), 4326) == (
        221, 9, 4096)


@pytest.mark.parametrize("frame, body_bytes, reason", [
    (b"\x00\x00\x00\xdd\x00", 221, "not a whole number of u32"),
    (b"", 0, "names no set"),
    (protocol.encode_set_sizes([221, 0, 9]), 230, "set 1 of 3 is empty"),
    (protocol.encode_set_sizes([221, 9]), 231, "add up to 230 bytes, the sets are 231"),
    (protocol.encode_set_sizes([0xFFFFFFFF, 0xFFFFFFFF]), 2, "add up to 8589934590 bytes"),
])
def test_malformed_set_sizes_raise_a_clear_error(frame, body_bytes, reason):
    with pytest.raises(protocol.MalformedRequest, match=reason) as caught:
        protocol.decode_set_sizes(frame, body_bytes)
    assert caught.value.code == ErrorCode.MALFORMED_REQUEST
