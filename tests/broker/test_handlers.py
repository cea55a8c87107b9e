"""The request handlers, through a real broker process: what many acks=0 produce requests
brought is written with one write per log, and a bad set among them is still rejected alone;
OFFSET_FOR_EPOCH answers from the log's leader epochs."""
import doctest
import json

import pytest

from broker import message, protocol
from coordinator.errors import UnknownTopicOrPartition
from tests.broker.logs import make_log
from tests.helpers import RawClient, wait_for

TOPIC = "joined"


def test_a_bad_set_among_many_acks0_requests_is_dropped_alone(hosting_broker):
    proc = hosting_broker(TOPIC, 1, log={"segment_bytes": 2048, "visible_after_flush": False})
    raw = RawClient(proc.endpoint)
    try:
        header = protocol.encode_produce(0, TOPIC, 0, 0)
        frames = []
        for i in range(300):
            frames.append([header, message.encode(b"%04d" % i)])
            if i == 150:
                bad = bytearray(message.encode(b"bad"))
                bad[-1] ^= 1
                frames.append([header, bytes(bad)])
                frames.append([header, message.encode(b"cut")[:-2]])
        _push_all(proc.produce_endpoint, frames)

        def fetched():
            got, offset = [], 0
            while True:
                reply = raw.request(protocol.encode_fetch(1, TOPIC, 0, offset, 1 << 20))
                batch = list(message.decode_set(reply[1], TOPIC, 0, offset))
                if not batch:
                    return got
                got += batch
                offset = batch[-1].next_offset
        def all_good():
            got = fetched()
            return got if len(got) >= 300 else None
        got = wait_for(all_good, what="the 300 good messages")
        assert [m.value for m in got] == [b"%04d" % i for i in range(300)]
        meta = json.loads(protocol.decode_metadata_response(
            raw.request(protocol.encode_metadata(2))[0])[1])
        assert meta["errors"] == {"corrupt_message": 2}
        assert meta["partitions"][0]["segments"] > 1, "the joined writes rolled segments"
    finally:
        raw.close()
        assert proc.stop() == 0, proc.log_text()[-2000:]


def test_metadata_of_a_broker_hosting_many_partitions_is_whole(hosting_broker):
    """200 partitions make a METADATA document of more than 64 KiB; it comes whole."""
    proc = hosting_broker("wide", 200)
    raw = RawClient(proc.endpoint)
    try:
        def all_open():
            frame = raw.request(protocol.encode_metadata(3))[0]
            rows = json.loads(protocol.decode_metadata_response(frame)[1])["partitions"]
            return (len(frame), rows) if len(rows) == 200 else None
        size, rows = wait_for(all_open, what="the 200 partitions in METADATA")
        assert size > 0xFFFF
        assert sorted(row["partition"] for row in rows) == list(range(200))
    finally:
        raw.close()


def test_offset_for_epoch_answers_where_the_asked_epoch_ends(hosting_broker, tmp_path):
    """The partition's log and its epochs are written on the broker's data dir before it
    starts (what a broker that led epochs 0, 2 and 5 leaves behind)."""
    log = make_log(tmp_path / "broker-0" / "epochs" / "0")
    offsets = [log.append(message.encode(b"%04d" % i), 1)[0] for i in range(12)]
    for epoch, start in ((0, 0), (2, offsets[4]), (5, offsets[9])):
        log.epochs.assign(epoch, start)
    end = log.end_offset
    log.close()
    proc = hosting_broker("epochs", 1)
    raw = RawClient(proc.endpoint)
    try:
        def ask(epoch, partition=0):
            reply = raw.request(protocol.encode_offset_for_epoch(epoch + 10, "epochs",
                                                                 partition, epoch))
            corr, answer = protocol.decode_response(reply[0], protocol.EPOCH_ENTRY)
            assert corr == epoch + 10
            return answer
        assert ask(5) == (5, end)
        assert ask(7) == (5, end)
        assert ask(4) == (2, offsets[9])
        assert ask(2) == (2, offsets[9])
        assert ask(1) == (0, offsets[4])
        assert ask(-1) == (protocol.UNKNOWN_EPOCH, 0)
        with pytest.raises(UnknownTopicOrPartition):
            ask(5, partition=3)
    finally:
        raw.close()


def _push_all(endpoint: str, requests: list[list[bytes]]) -> None:
    """Queue every request on one PUSH socket, so the broker drains many at once."""
    import zmq
    context = zmq.Context()
    sock = context.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 5000)
    sock.connect(endpoint)
    for frames in requests:
        sock.send_multipart(frames)
    sock.close()
    context.term()


def test_a_parked_fetch_does_not_spin_the_loop_until_its_deadline(hosting_broker):
    """An idle broker with one parked fetch turns its loop about once a tick (0.25 s) and once
    at the deadline. ZeroMQ's poll takes whole milliseconds: a timeout cut down to 0 ms left
    the loop polling without waiting through the last millisecond before every deadline."""
    proc = hosting_broker(TOPIC, 1)
    raw = RawClient(proc.endpoint)
    try:
        def turns():
            doc = json.loads(protocol.decode_metadata_response(
                raw.request(protocol.encode_metadata(9))[0])[1])
            return doc["stats"].get("loop_turns", 0)
        before = turns()
        for corr in range(3):
            reply = raw.request(protocol.encode_fetch(corr, TOPIC, 0, 0, 1 << 20, 1, 600))
            assert reply is not None and reply[1] == b""        # empty, at its deadline
        spent = turns() - before
        assert spent <= 3 * 8, f"{spent} loop turns for three 0.6 s long polls"
    finally:
        raw.close()


def test_a_poll_timeout_is_rounded_up_to_whole_milliseconds():
    from broker import server
    assert doctest.testmod(server).failed == 0
    assert [server.poll_ms(s) for s in (0.0001, 0.0009999, 0.001, 0.2501)] == [1, 1, 1, 251]
