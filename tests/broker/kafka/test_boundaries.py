"""A Kafka offset ("last consumed + 1" or a boundary) resolved to a message boundary on a real
broker that leads the partition (broker/kafka/boundaries.py; the local rule is records.py's)."""
import doctest
import time

import pytest

from broker.kafka import boundaries
from broker.kafka.boundaries import RemoteBoundaries
from coordinator.errors import InvalidOffset, OffsetOutOfRange


def test_docstring_examples():
    assert doctest.testmod(boundaries).failed == 0


def test_remote_boundaries_on_a_real_broker(hosting_broker, zk):
    from clients.producer import Producer
    from clients.simple_consumer import SimpleConsumer
    proc = hosting_broker("t", 1)
    with Producer(zk, acks=1) as producer:
        for i in range(5):
            producer.send("t", b"v" * (10 + i), partition=0)
        producer.flush()
    consumer = SimpleConsumer("t", 0, zookeeper=zk, timeout_ms=10_000)
    got = []
    while len(got) < 5:
        got += consumer.fetch()
    consumer.close()
    remote = RemoteBoundaries()
    answers = {}
    asked = {"after": got[2].offset + 1, "at": got[3].offset, "end": got[4].next_offset,
             "inside": got[1].offset + 4, "past": got[4].next_offset + 100}
    for name, offset in asked.items():
        remote.ask(proc.endpoint, "t", 0, offset,
                   lambda b, e, name=name: answers.__setitem__(name, (b, e)), time.monotonic())
    deadline = time.monotonic() + 20
    while len(answers) < len(asked) and time.monotonic() < deadline:
        remote.poll(time.monotonic())
        time.sleep(0.005)
    remote.close()
    assert answers["after"] == (got[2].next_offset, None)
    assert answers["at"] == (got[3].offset, None)
    assert answers["end"] == (got[4].next_offset, None)
    assert answers["inside"][0] is None and isinstance(answers["inside"][1], InvalidOffset)
    assert answers["past"][0] is None and isinstance(answers["past"][1], OffsetOutOfRange)
    assert not remote.waiting()


def test_resolving_a_commit_does_not_walk_the_segment(tmp_path, monkeypatch):
    """A commit of "last consumed + 1" (and of a boundary) is resolved from the bytes at those
    two offsets alone: the error path's segment walk (scrub.locate, up to a checkpoint interval
    of CRC checks, 20 ms a commit measured on 1 MiB of 109-byte messages) is not taken."""
    from broker import message, scrub
    from broker.kafka import records
    from tests.broker.logs import make_log
    log = make_log(tmp_path / "t-0")
    offsets = [log.append(message.encode(b"x" * (10 + i)), 1)[0] for i in range(50)]
    end = log.visible_end

    def no_walk(*args, **kwargs):
        raise AssertionError("the segment was walked")
    monkeypatch.setattr(scrub, "locate", no_walk)
    assert [records.resolve_offset(log, o + 1, end) for o in offsets] == offsets[1:] + [end]
    assert [records.resolve_offset(log, o, end) for o in offsets] == offsets
    log.close()


def test_an_empty_answer_past_the_high_watermark_is_no_boundary():
    """A leader answers a consumer fetch between its high watermark and its log end with no
    bytes and no error (nothing readable yet). Such an offset is no boundary a commit may
    store: records.py's ``resolve_offset`` raises OffsetOutOfRange past the consumer's end, and
    the lookup on another broker answers the same (only the high watermark itself is one)."""
    from broker import protocol
    remote = RemoteBoundaries()
    answers = {}
    hw = 500
    for name, offset in (("past", 531), ("at_hw", hw)):
        remote.ask("tcp://127.0.0.1:9", "t", 0, offset,
                   lambda b, e, name=name: answers.__setitem__(name, (b, e)), time.monotonic())
        reply = protocol.encode_response(remote.peers.last_corr, protocol.FETCH_REPLY.pack(hw, 0))
        remote._answered("tcp://127.0.0.1:9", [reply, b""])        # x - 1: nothing there
        reply = protocol.encode_response(remote.peers.last_corr, protocol.FETCH_REPLY.pack(hw, 0))
        remote._answered("tcp://127.0.0.1:9", [reply, b""])        # x: nothing there either
    remote.close()
    assert answers["at_hw"] == (hw, None)
    assert answers["past"][0] is None and isinstance(answers["past"][1], OffsetOutOfRange)
