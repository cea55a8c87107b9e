"""No request is bigger than ``max_request_bytes`` (default 4 MiB).

A frame up to twice that gets a typed MESSAGE_TOO_LARGE (acks=0: counted); ZeroMQ drops a
connection that sends a bigger one before the broker allocates it. So a garbage frame of any
size leaves the broker up, serving, and small.
"""
from __future__ import annotations

import json
import struct

import psutil
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from broker import message, protocol
from broker.config import BrokerConfig
from broker.protocol import ErrorCode
from tests.helpers import RawClient, push, wait_for

TOPIC = "sized"
MIB = 1 << 20
DEFAULT_MAX = 4 * MIB                   # BrokerConfig.max_request_bytes by default
RSS_BOUND = 200 * MIB


@pytest.fixture
def broker(hosting_broker):
    return hosting_broker(TOPIC, 1)


def code_of(reply) -> int:
    assert reply is not None, "no answer"
    return struct.unpack_from(">IH", reply[0])[1]


def end_offset(raw) -> int:
    reply = raw.request(protocol.encode_offsets(5, TOPIC, 0, protocol.LATEST))
    return protocol.decode_response(reply[0], protocol.OFFSETS_REPLY)[1][0]


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def a_set_of(total: int) -> bytes:
    """Valid messages (each well under max_message_bytes) adding up to at least ``total``."""
    one = message.encode(b"v" * (256 * 1024))
    return one * (total // len(one) + 1)


def test_the_default_leaves_room_for_a_full_producer_set():
    config = BrokerConfig(0, "d", "z")
    assert config.max_request_bytes == 4 * MIB
    assert config.max_request_bytes >= MIB + config.log.max_message_bytes + message.ENTRY_OVERHEAD
    with pytest.raises(ValueError, match="max_request_bytes"):
        BrokerConfig(0, "d", "z", max_request_bytes=MIB)
    with pytest.raises(ValueError, match="max_request_bytes"):
        BrokerConfig.from_dict({"broker_id": 0, "data_dir": "d", "zookeeper": "z",
                                "max_request_bytes": 0})


def send_until_settled(endpoint: str, frames: list) -> str:
    """Send one request on a connection of its own and wait until the broker has dealt with
    it: "answered" (a reply came) or "dropped" (the broker closed the connection)."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    monitor = dealer.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    dealer.connect(endpoint)
    try:
        dealer.send_multipart(frames, copy=False)
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        events = dict(poller.poll(60_000))
        if dealer in events:
            return "answered"
        if monitor in events and recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED:
            return "dropped"
        raise AssertionError("the broker neither answered nor dropped the connection")
    finally:
        dealer.disable_monitor()
        monitor.close(0)
        dealer.close(0)
        context.term()


def test_garbage_frames_of_64_and_256_mib_leave_the_broker_up_and_small(broker):
    outcomes = []
    for size in (64 * MIB, 256 * MIB):
        outcome = send_until_settled(broker.endpoint,
                                     [protocol.encode_produce(1, TOPIC, 0, 1), b"\xff" * size])
        raw = RawClient(broker.endpoint)
        try:
            reply = raw.request(protocol.encode_metadata(2), timeout=30)
            assert code_of(reply) == ErrorCode.NONE, "the next request is served"
        finally:
            raw.close()
        assert broker.alive()
        assert psutil.Process(broker.proc.pid).memory_info().rss < RSS_BOUND
        assert peak_rss(broker.proc.pid) < RSS_BOUND, f"after a {size >> 20} MiB frame"
        outcomes.append(outcome)
    assert outcomes == ["dropped", "dropped"], "ZeroMQ refuses a frame above its MAXMSGSIZE"


def test_a_request_just_above_the_limit_is_message_too_large(broker):
    raw = RawClient(broker.endpoint)
    try:
        body = a_set_of(DEFAULT_MAX + 1)
        assert DEFAULT_MAX < len(body) < 2 * DEFAULT_MAX
        reply = raw.request(protocol.encode_produce(3, TOPIC, 0, 1), body)
        assert code_of(reply) == ErrorCode.MESSAGE_TOO_LARGE
        with pytest.raises(protocol.MessageTooLarge, match="max_request_bytes"):
            protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)
        garbage = raw.request(protocol.encode_produce(4, TOPIC, 0, 1), b"\x00" * (5 * MIB))
        assert code_of(garbage) == ErrorCode.MESSAGE_TOO_LARGE
        push(broker.produce_endpoint, protocol.encode_produce(0, TOPIC, 0, 0), body)

        def counted():
            reply = raw.request(protocol.encode_metadata(6))
            errors = json.loads(protocol.decode_metadata_response(reply[0])[1])["errors"]
            return errors.get("message_too_large", 0) >= 3
        wait_for(counted, 20, what="the acks=0 request to be counted")
        assert end_offset(raw) == 0, "nothing was stored"
        fits = a_set_of(DEFAULT_MAX - 300 * 1024)
        assert len(fits) <= DEFAULT_MAX
        reply = raw.request(protocol.encode_produce(7, TOPIC, 0, 1), fits)
        assert protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1] == (0, len(fits))
    finally:
        raw.close()
