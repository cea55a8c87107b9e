"""Property-based fuzzing of a real broker: malformed and random frames for every request type.

The broker must answer every request-socket frame with a typed error (or a valid answer), drop
bad fire-and-forget frames with a counted reason, never crash, and keep the valid data beside the
garbage intact. A long run checks that 100,000 bad frames do not grow its memory.
"""
import json
import struct
import zlib

import psutil
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from broker import message, protocol
from broker.protocol import Api, ErrorCode
from coordinator import topics, zk as zkmod
from tests.helpers import BrokerProcess, RawClient, wait_for

TOPIC = "fuzz"
LEDGER = [b"ledger-%03d" % i for i in range(20)]


@pytest.fixture(scope="module")
def broker(zk_server, tmp_path_factory):
    import uuid
    connect = f"{zk_server.connect_string}/fuzz-{uuid.uuid4().hex[:8]}"
    proc = BrokerProcess(connect, tmp_path_factory.mktemp("fuzz"), 0,
                         log={"visible_after_flush": False, "max_message_bytes": 4096}).start()
    client = zkmod.connect(connect)
    topics.create(client, TOPIC, 2)
    client.stop()
    client.close()
    proc.wait_hosting(TOPIC, 2)
    raw = RawClient(proc.endpoint)
    reply = raw.request(protocol.encode_produce(1, TOPIC, 0, 1),
                        message.encode_set((None, v) for v in LEDGER))
    assert protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1][0] == 0
    proc.raw = raw
    yield proc
    raw.close()
    assert proc.stop() == 0, proc.log_text()[-3000:]


def ledger_intact(raw):
    reply = raw.request(protocol.encode_fetch(2, TOPIC, 0, 0, 1 << 20))
    protocol.decode_response(reply[0], protocol.FETCH_REPLY)
    got = [m.value for m in message.decode_set(reply[1], TOPIC, 0, 0)]
    return got[:len(LEDGER)] == LEDGER


def code_of(reply):
    assert reply is not None, "the broker answered nothing"
    assert len(reply[0]) >= 6
    return struct.unpack_from(">IH", reply[0])[1]


topic_names = st.one_of(st.just(TOPIC), st.text(max_size=20), st.just(""))
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
requests = st.one_of(
    st.builds(lambda c, t, p, a: [protocol.API.pack(Api.PRODUCE, c) + bytes([a])
                                  + protocol.pack_str(t) + struct.pack(">I", p)],
              u32, topic_names, u32, st.integers(0, 255)),
    st.builds(lambda c, t, p, o, m, n, w: [protocol.encode_fetch(c, t, p, o, m, n, w % 50)],
              u32, topic_names, st.integers(0, 3), u64, u32, u32, u32),
    st.builds(lambda c, t, p, tm: [protocol.encode_offsets(c, t, p, tm)],
              u32, topic_names, u32, st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda c, t, p, tm: [protocol.encode_offset_for_time(c, t, p, tm)],
              u32, topic_names, st.integers(0, 3), st.integers(-2**63, 2**63 - 1)),
    st.builds(lambda c, extra: [protocol.encode_metadata(c) + extra], u32, st.binary(max_size=8)),
    st.lists(st.binary(max_size=64), min_size=1, max_size=4),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=requests, cut=st.integers(0, 40))
def test_random_and_truncated_headers_get_an_answer(broker, frames, cut):
    if cut and len(frames[0]) > cut:
        frames = [frames[0][:-cut]] + frames[1:]
    reply = broker.raw.request(*frames)
    assert code_of(reply) in {c.value for c in ErrorCode}


entries = st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=16)), st.binary(max_size=64)),
                   min_size=1, max_size=8)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=entries, damage=st.sampled_from(["crc", "truncate", "size", "magic", "keylen"]),
       where=st.integers(0, 10_000))
def test_damaged_message_sets_are_rejected_and_nothing_is_stored(broker, entries, damage, where):
    data = bytearray(message.encode_set(entries))
    pos = where % len(data)
    if damage == "crc":
        first = message.encode(entries[0][1], entries[0][0])
        assume(len(first) > message.HEADER_SIZE)
        data[message.HEADER_SIZE + where % (len(first) - message.HEADER_SIZE)] ^= 0x55
    elif damage == "truncate":
        boundaries = set()
        offset = 0
        for key, value in entries:
            offset += len(message.encode(value, key))
            boundaries.add(offset)
        assume(0 < pos and pos not in boundaries)
        data = data[:pos]
    elif damage == "size":
        struct.pack_into(">I", data, 0, 0xFFFFFF00 | (where & 0xFF))
    elif damage == "magic":
        data[4] = 2 + where % 200
    else:
        payload = b"\x00" + struct.pack(">I", 10_000 + where) + b"k"
        data = bytearray(struct.pack(">IBI", 5 + len(payload), 1, zlib.crc32(payload)) + payload)
    before = end_offset(broker.raw, 1)
    reply = broker.raw.request(protocol.encode_produce(3, TOPIC, 1, 1), bytes(data))
    assert code_of(reply) in (ErrorCode.CORRUPT_MESSAGE, ErrorCode.MESSAGE_TOO_LARGE)
    assert end_offset(broker.raw, 1) == before


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(offset=u64, max_bytes=st.integers(1, 2**32 - 1))
def test_absurd_offsets_and_sizes(broker, offset, max_bytes):
    reply = broker.raw.request(protocol.encode_fetch(4, TOPIC, 0, offset, max_bytes))
    code = code_of(reply)
    if code == ErrorCode.NONE:
        list(message.decode_set(reply[1], TOPIC, 0, offset))
    else:
        assert code in (ErrorCode.OFFSET_OUT_OF_RANGE, ErrorCode.INVALID_OFFSET)


def end_offset(raw, partition):
    reply = raw.request(protocol.encode_offsets(5, TOPIC, partition, protocol.LATEST))
    return protocol.decode_response(reply[0], protocol.OFFSETS_REPLY)[1][0]


def test_100k_bad_frames_do_not_grow_memory_or_hurt_the_ledger(broker):
    """Bad frames to both sockets; the broker's RSS after the second 50,000 is no higher than
    after the first 50,000 plus a small allowance, and the ledger reads back whole."""
    import zmq
    proc = psutil.Process(broker.proc.pid)
    bad_set = bytearray(message.encode(b"x" * 100))
    bad_set[-1] ^= 1
    frames = [[b"\x02\x00"], [protocol.encode_fetch(6, "nope", 0, 0, 100)],
              [protocol.encode_produce(7, TOPIC, 0, 1), bytes(bad_set)], [b"\xff" * 40]]
    context = zmq.Context()
    pusher = context.socket(zmq.PUSH)
    pusher.connect(broker.produce_endpoint)

    def blast(count):
        sent = 0
        while sent < count:
            for i in range(200):
                broker.raw.socket.send_multipart(frames[i % len(frames)])
                pusher.send_multipart([protocol.encode_produce(0, TOPIC, 0, 0), bytes(bad_set)])
            for _ in range(200):
                assert broker.raw.reply(10) is not None
            sent += 400
        return proc.memory_info().rss

    first = blast(50_000)
    second = blast(50_000)
    pusher.close(0)
    context.term()
    assert second <= first + 8 * 1024 * 1024, (first, second)
    assert broker.proc.poll() is None
    assert ledger_intact(broker.raw)

    def counted():
        reply = broker.raw.request(protocol.encode_metadata(8))
        errors = json.loads(protocol.decode_metadata_response(reply[0])[1])["errors"]
        return errors.get("corrupt_message", 0) >= 50_000 and errors
    errors = wait_for(counted, 30, what="the acks=0 bad frames to be counted")
    assert errors["malformed_request"] > 0 and errors["unknown_topic_or_partition"] > 0


def test_ledger_survives_the_fuzzing(broker):
    assert ledger_intact(broker.raw)
