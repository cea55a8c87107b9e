"""A real broker process over real sockets: the request types, long-poll, and bad input.

Every bad-input test ends by showing the broker still serves and stored data is unchanged.
"""
import json
import os
import struct
import time

import pytest

from broker import message, protocol
from broker.protocol import ErrorCode
from coordinator import topics, zk
from tests.helpers import BrokerProcess, RawClient, push, wait_for

TOPIC = "events"


@pytest.fixture
def broker(hosting_broker):
    return hosting_broker(TOPIC, 2, log={"segment_bytes": 4096, "visible_after_flush": False,
                                         "max_message_bytes": 10_000})


def zk_connect(connect):
    return zk.connect(connect)


def produce(raw, value_sets, partition=0, acks=1, corr=1):
    data = message.encode_set(value_sets)
    return raw.request(protocol.encode_produce(corr, TOPIC, partition, acks), data)


def fetch(raw, offset, partition=0, max_bytes=1 << 20, min_bytes=0, max_wait_ms=0, corr=2):
    header, *rest = raw.request(protocol.encode_fetch(corr, TOPIC, partition, offset, max_bytes,
                                                      min_bytes, max_wait_ms))
    _, (hw, start) = protocol.decode_response(header, protocol.FETCH_REPLY)
    body = rest[0] if rest else b""
    return hw, start, list(message.decode_set(body, TOPIC, partition, offset)), body


def error_code(frames):
    return struct.unpack_from(">IH", frames[0])[1]


def test_produce_then_fetch_by_byte_offset(raw):
    reply = produce(raw, [(None, b"a" * 10), (b"key", b"b" * 20)])
    _, (base, nxt) = protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
    assert (base, nxt) == (0, 19 + 14 + 3 + 20)
    hw, start, got, _ = fetch(raw, 0)
    assert (hw, start) == (nxt, 0)
    assert [(m.offset, m.key, m.value) for m in got] == [(0, None, b"a" * 10), (19, b"key", b"b" * 20)]
    _, _, again, _ = fetch(raw, got[1].offset)
    assert again == got[1:]


def test_fetch_returns_only_whole_messages_within_max_bytes(raw):
    produce(raw, [(None, b"x" * 100)] * 5)
    _, _, got, body = fetch(raw, 0, max_bytes=250)
    assert len(got) == 2 and len(body) == 218
    _, _, got, body = fetch(raw, 0, max_bytes=50)
    assert len(got) == 1, "a message larger than max_bytes still comes whole"


def test_fetch_continues_across_segments(raw):
    for _ in range(10):
        produce(raw, [(None, bytes(1000))])
    offset, seen = 0, 0
    while True:
        hw, _, got, _ = fetch(raw, offset)
        if not got:
            break
        seen += len(got)
        offset = got[-1].next_offset
    assert seen == 10 and offset == hw


def test_offsets_api(raw):
    produce(raw, [(None, b"abc")] * 3)
    for when, expected in ((protocol.EARLIEST, 0), (protocol.LATEST, 36)):
        reply = raw.request(protocol.encode_offsets(3, TOPIC, 0, when))
        assert protocol.decode_response(reply[0], protocol.OFFSETS_REPLY)[1] == (expected,)


def test_long_poll_waits_then_answers_when_data_arrives(raw, broker):
    t0 = time.monotonic()
    hw, _, got, _ = fetch(raw, 0, min_bytes=1, max_wait_ms=300)
    assert got == [] and hw == 0
    assert time.monotonic() - t0 >= 0.25, "an idle long-poll waits instead of returning at once"
    raw.socket.send_multipart([protocol.encode_fetch(9, TOPIC, 0, 0, 1 << 20, 1, 10_000)])
    time.sleep(0.2)
    push(broker.produce_endpoint, protocol.encode_produce(0, TOPIC, 0, 0), message.encode(b"wake"))
    reply = raw.reply(timeout=5)
    assert reply is not None, "the parked fetch is answered when data arrives, before max_wait"
    assert [m.value for m in message.decode_set(reply[1], TOPIC, 0, 0)] == [b"wake"]


def test_non_boundary_offset_is_a_typed_error(raw):
    produce(raw, [(None, b"hello world")] * 3)
    for offset in (1, 4, 9, 21):
        reply = raw.request(protocol.encode_fetch(4, TOPIC, 0, offset, 1000))
        assert error_code(reply) == ErrorCode.INVALID_OFFSET, offset
        with pytest.raises(protocol.InvalidOffset, match="message"):
            protocol.decode_response(reply[0], protocol.FETCH_REPLY)
    assert len(fetch(raw, 20)[2]) == 2


def test_offset_past_the_end_is_out_of_range(raw):
    produce(raw, [(None, b"x")])
    reply = raw.request(protocol.encode_fetch(5, TOPIC, 0, 10_000, 1000))
    assert error_code(reply) == ErrorCode.OFFSET_OUT_OF_RANGE
    assert len(fetch(raw, 0)[2]) == 1


def test_unknown_topic_and_partition(raw):
    for header in (protocol.encode_fetch(6, "nope", 0, 0, 100),
                   protocol.encode_fetch(6, TOPIC, 7, 0, 100),
                   protocol.encode_offsets(6, "nope", 0, -1)):
        assert error_code(raw.request(header)) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    reply = produce(raw, [(None, b"x")], partition=9)
    assert error_code(reply) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("frames,code", [
    ([b"\x00"], ErrorCode.MALFORMED_REQUEST),
    ([b"\x7f\x00\x00\x00\x01"], ErrorCode.UNKNOWN_API),
    ([protocol.encode_produce_sets(1, TOPIC, 0), b"\x00\x00\x00\x01", b"x"],
     ErrorCode.UNKNOWN_API),
    ([protocol.encode_fetch(1, TOPIC, 0, 0, 100)[:-3]], ErrorCode.MALFORMED_REQUEST),
    ([protocol.encode_produce(1, TOPIC, 0, 1)], ErrorCode.MALFORMED_REQUEST),
    ([protocol.encode_fetch(1, TOPIC, 0, 0, 100), b"extra"], ErrorCode.MALFORMED_REQUEST),
    ([protocol.encode_fetch(1, TOPIC, 0, 0, 0)], ErrorCode.MALFORMED_REQUEST),
    ([b""], ErrorCode.MALFORMED_REQUEST),
])
def test_malformed_frames_get_an_error_code(raw, frames, code):
    produce(raw, [(None, b"kept")])
    reply = raw.request(*frames)
    assert reply is not None and error_code(reply) == code
    assert [m.value for m in fetch(raw, 0)[2]] == [b"kept"]


def test_wrong_crc_is_rejected_and_nothing_is_stored(raw):
    produce(raw, [(None, b"good")])
    bad = bytearray(message.encode_set([(None, b"one"), (None, b"two")]))
    bad[-1] ^= 0xFF
    reply = raw.request(protocol.encode_produce(7, TOPIC, 0, 1), bytes(bad))
    assert error_code(reply) == ErrorCode.CORRUPT_MESSAGE
    with pytest.raises(protocol.CorruptMessage, match="CRC"):
        protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
    hw, _, got, _ = fetch(raw, 0)
    assert [m.value for m in got] == [b"good"] and hw == 13


def test_truncated_message_set_and_oversized_message(raw):
    data = message.encode_set([(None, b"abc")] * 2)
    assert error_code(raw.request(protocol.encode_produce(8, TOPIC, 0, 1), data[:-1])) == \
        ErrorCode.CORRUPT_MESSAGE
    reply = raw.request(protocol.encode_produce(8, TOPIC, 0, 1), message.encode(bytes(20_000)))
    assert error_code(reply) == ErrorCode.MESSAGE_TOO_LARGE
    assert fetch(raw, 0)[0] == 0, "nothing was stored"


def test_fire_and_forget_errors_are_counted_and_the_broker_keeps_serving(raw, broker):
    bad = bytearray(message.encode(b"x"))
    bad[-1] ^= 1
    push(broker.produce_endpoint, protocol.encode_produce(0, TOPIC, 0, 0), bytes(bad))
    push(broker.produce_endpoint, b"garbage")
    push(broker.produce_endpoint, protocol.encode_produce(0, "nope", 0, 0), message.encode(b"x"))
    push(broker.produce_endpoint, protocol.encode_produce(0, TOPIC, 0, 0), message.encode(b"ok"))

    def metadata():
        reply = raw.request(protocol.encode_metadata(11))
        return json.loads(protocol.decode_metadata_response(reply[0])[1])
    meta = wait_for(lambda: (m := metadata())["errors"].get("unknown_topic_or_partition") and m,
                    what="acks=0 errors to be counted")
    assert meta["errors"]["corrupt_message"] == 1
    assert meta["errors"]["malformed_request"] == 1
    assert [m.value for m in fetch(raw, 0)[2]] == [b"ok"]
    assert "corrupt_message" in broker.log_text()


def test_metadata_lists_hosted_partitions(raw):
    reply = raw.request(protocol.encode_metadata(12))
    meta = json.loads(protocol.decode_metadata_response(reply[0])[1])
    assert meta["broker"] == 0
    assert [(p["topic"], p["partition"]) for p in meta["partitions"]] == [(TOPIC, 0), (TOPIC, 1)]


# --- recovery seen through the wire: gaps, corrupt messages, the start-up scrub ------------

def own_broker(zk, tmp_path, topic=TOPIC, partitions=1, **log_settings):
    proc = BrokerProcess(zk, tmp_path, 0, log=log_settings).start()
    client = zk_connect(zk)
    try:
        if not client.exists(f"/config/topics/{topic}"):
            topics.create(client, topic, partitions)
    finally:
        client.stop()
    proc.wait_hosting(topic, partitions)
    return proc


def restart(proc):
    proc.start()
    proc.wait_hosting(TOPIC, 1)
    return RawClient(proc.endpoint)


def partition_dir(tmp_path, partition=0):
    return tmp_path / "broker-0" / TOPIC / str(partition)


def metadata_of(raw, partition=0):
    reply = raw.request(protocol.encode_metadata(13))
    meta = json.loads(protocol.decode_metadata_response(reply[0])[1])
    return next(p for p in meta["partitions"] if p["partition"] == partition), meta


def test_a_cut_acknowledged_tail_is_a_gap_and_its_offsets_are_never_reused(zk, tmp_path):
    """Hole 4: acks=1 told the producer offsets up to 3 * 19; a crash and a torn tail cut the
    log below that. The broker goes on at the highest offset it told anyone."""
    proc = own_broker(zk, tmp_path, flush_ms=60_000, flush_messages=10_000)
    raw = RawClient(proc.endpoint)
    try:
        nexts = []
        for i in range(3):
            reply = produce(raw, [(None, b"value-%04d" % i)])
            nexts.append(protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1][1])
        assert nexts == [19, 38, 57]
        raw.close()
        proc.kill()
        os.truncate(partition_dir(tmp_path) / ("0" * 20 + ".log"), 38 + 10)
        raw = restart(proc)
        reply = raw.request(protocol.encode_fetch(2, TOPIC, 0, 38, 1000))
        assert error_code(reply) == ErrorCode.OFFSET_GAP
        with pytest.raises(protocol.OffsetGap) as gap:
            protocol.decode_response(reply[0], protocol.FETCH_REPLY)
        assert gap.value.resume_offset == 57
        assert [m.value for m in fetch(raw, 0)[2]] == [b"value-0000", b"value-0001"]
        reply = produce(raw, [(None, b"after")])
        base = protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1][0]
        assert base == 57, "offset 38 was acknowledged before the crash: never again"
        part, _ = metadata_of(raw)
        assert part["gap_bytes"] == 57 - 38
    finally:
        raw.close()
        assert proc.stop() == 0, proc.log_text()[-2000:]
    assert "gap of 19 bytes" in proc.log_text()


def test_a_corrupt_message_is_skipped_with_its_resume_offset(zk, tmp_path):
    """Hole 5, broker side: one flipped byte in the middle of the last segment costs only
    that message; a fetch before it gets the good prefix, one at it a typed error."""
    proc = own_broker(zk, tmp_path, visible_after_flush=False)
    raw = RawClient(proc.endpoint)
    values = [b"message-%02d" % i for i in range(6)]
    try:
        produce(raw, [(None, v) for v in values])
        raw.close()
        assert proc.stop() == 0
        segment = partition_dir(tmp_path) / ("0" * 20 + ".log")
        size = len(message.encode(values[0]))
        data = bytearray(segment.read_bytes())
        data[2 * size + 12] ^= 0x20
        segment.write_bytes(bytes(data))
        raw = restart(proc)
        hw, _, _, body = fetch_raw(raw, 0)
        assert hw == 6 * size
        good = []
        with pytest.raises(message.InvalidMessage):
            for m in message.decode_set(body, TOPIC, 0, 0):
                good.append(m.value)
        assert good == values[:2]
        reply = raw.request(protocol.encode_fetch(3, TOPIC, 0, 2 * size, 1000))
        assert error_code(reply) == ErrorCode.CORRUPT_MESSAGE
        with pytest.raises(protocol.CorruptMessage, match=f"offset {2 * size}") as bad:
            protocol.decode_response(reply[0], protocol.FETCH_REPLY)
        assert bad.value.resume_offset == 3 * size
        assert [m.value for m in fetch(raw, 3 * size)[2]] == values[3:]
        reply = raw.request(protocol.encode_fetch(4, TOPIC, 0, 4 * size + 3, 1000))
        with pytest.raises(protocol.InvalidOffset, match=f"at {4 * size}.*at {5 * size}"):
            protocol.decode_response(reply[0], protocol.FETCH_REPLY)
        part, meta = metadata_of(raw)
        assert part["corrupt_messages"] == 1
    finally:
        raw.close()
        assert proc.stop() == 0, proc.log_text()[-2000:]
    assert f"corrupt message at offset {2 * size}" in proc.log_text()


def fetch_raw(raw, offset):
    header, body = raw.request(protocol.encode_fetch(2, TOPIC, 0, offset, 1 << 20))
    _, (hw, start) = protocol.decode_response(header, protocol.FETCH_REPLY)
    return hw, start, None, body


def test_the_start_up_scrub_finds_a_flipped_byte_in_a_sealed_segment(zk, tmp_path):
    """After an unclean shutdown the broker CRC-checks its sealed segments in the background:
    each bad message is logged by offset and counted in METADATA."""
    proc = own_broker(zk, tmp_path, segment_bytes=1024, visible_after_flush=False)
    raw = RawClient(proc.endpoint)
    try:
        for i in range(30):
            produce(raw, [(None, b"%03d" % i + b"." * 100)])
        raw.close()
        proc.kill()
        first = partition_dir(tmp_path) / ("0" * 20 + ".log")
        data = bytearray(first.read_bytes())
        data[3 * 112 + 30] ^= 0x04
        first.write_bytes(bytes(data))
        raw = restart(proc)
        part = wait_for(lambda: (p := metadata_of(raw)[0])["scrub"] == "done" and p,
                        what="the start-up scrub to finish")
        assert part["corrupt_messages"] == 1
        assert part["segments"] > 3
        reply = raw.request(protocol.encode_fetch(3, TOPIC, 0, 3 * 112, 1000))
        with pytest.raises(protocol.CorruptMessage) as bad:
            protocol.decode_response(reply[0], protocol.FETCH_REPLY)
        assert bad.value.resume_offset == 4 * 112
    finally:
        raw.close()
        assert proc.stop() == 0, proc.log_text()[-2000:]
    assert "scrub found a corrupt message at offset 336" in proc.log_text()
    raw = restart(proc)
    try:
        part, _ = metadata_of(raw)
        assert part["scrub"] == "not needed", "a clean restart needs no scrub"
    finally:
        raw.close()
        assert proc.stop() == 0
