"""PRODUCE_SETS on a real broker's acks=0 socket: several sets in one request, each judged and
stored as one (issue 16)."""
import json

import pytest
import zmq

from broker import message, protocol
from tests.helpers import wait_for

TOPIC = "sets"


@pytest.fixture
def broker(hosting_broker):
    return hosting_broker(TOPIC, 2, log={"segment_bytes": 1024, "visible_after_flush": False})


def push(broker, *requests):
    """Send requests (lists of frames) in order on one PUSH socket: one connection keeps
    their order."""
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(broker.produce_endpoint)
    for frames in requests:
        sock.send_multipart(frames)
    sock.close()
    context.term()


def sets_request(sets, partition=0):
    return [protocol.encode_produce_sets(0, TOPIC, partition),
            protocol.encode_set_sizes([len(s) for s in sets]), b"".join(sets)]


def one_request(one, partition=0):
    return [protocol.encode_produce(0, TOPIC, partition, 0), one]


def fetch_all(raw, partition=0):
    """Every value of the partition and its bytes (a fetch reads within one segment)."""
    data = b""
    while True:
        header, *rest = raw.request(protocol.encode_fetch(2, TOPIC, partition, len(data), 1 << 20))
        protocol.decode_response(header, protocol.FETCH_REPLY)
        if not rest or not rest[0]:
            return [m.value for m in message.decode_set(data, TOPIC, partition, 0)], data
        data += rest[0]


def errors(raw):
    reply = raw.request(protocol.encode_metadata(11))
    return json.loads(protocol.decode_metadata_response(reply[0])[1])["errors"]


def segments(tmp_path, partition):
    return sorted((p.name, p.stat().st_size)
                  for p in (tmp_path / "broker-0" / TOPIC / str(partition)).glob("*.log"))


def test_a_bad_set_between_good_ones_is_refused_alone(broker, raw):
    good = [message.encode(b"one"), message.encode_set([(None, b"two"), (b"k", b"three")]),
            message.encode(b"four")]
    bad = bytearray(message.encode(b"bad"))
    bad[-1] ^= 1
    push(broker, sets_request([good[0], good[1], bytes(bad), good[2]]),
         one_request(message.encode(b"after")))
    wait_for(lambda: len(fetch_all(raw)[0]) == 5, what="the good sets and the one after")
    assert fetch_all(raw)[0] == [b"one", b"two", b"three", b"four", b"after"]
    assert errors(raw)["corrupt_message"] == 1


def test_a_set_that_cuts_a_message_is_bad_and_so_is_the_rest_of_that_message():
    # judged without a broker: the sizes say 2 sets where the bytes hold one message and a half
    whole, other = message.encode(b"0123456789"), message.encode(b"x")
    count, bad = message.validate_sets(whole + other, [5, len(whole) - 5, len(other)])
    assert count == 1 and [index for index, _ in bad] == [0, 1]
    assert bad[0][1].reason == "truncated"


def test_sets_sent_together_are_stored_as_if_sent_one_by_one(broker, raw, tmp_path):
    sets = [message.encode_set([(None, b"%03d" % i * (1 + i % 7))] * (1 + i % 3))
            for i in range(80)]                   # ~3 KiB: several 1 KiB segment rolls
    push(broker, sets_request(sets, 0), *[one_request(one, 1) for one in sets])
    total = sum(map(len, sets))
    wait_for(lambda: len(fetch_all(raw, 0)[1]) == total == len(fetch_all(raw, 1)[1]),
             what="both partitions to hold every set")
    assert fetch_all(raw, 0)[1] == fetch_all(raw, 1)[1] == b"".join(sets)
    assert segments(tmp_path, 0) == segments(tmp_path, 1) and len(segments(tmp_path, 0)) > 2


@pytest.mark.parametrize("sizes_frame, reason", [
    (b"\x00\x00\x00", "not a whole number"),
    (b"", "names no set"),
    (protocol.encode_set_sizes([0, 14]), "is empty"),
    (protocol.encode_set_sizes([10, 10]), "add up to 20 bytes"),
])
def test_malformed_set_sizes_refuse_the_request_and_the_broker_keeps_serving(
        broker, raw, sizes_frame, reason):
    one, two = message.encode(b"a"), message.encode(b"bcdef")
    header = protocol.encode_produce_sets(0, TOPIC, 0)
    push(broker, [header, sizes_frame, one + two], [header, one + two],
         one_request(message.encode(b"kept")))
    wait_for(lambda: fetch_all(raw)[0] == [b"kept"], what="the good request after the bad ones")
    assert wait_for(lambda: errors(raw).get("malformed_request") == 2,
                    what="both malformed requests to be counted")
    assert reason in broker.log_text()
