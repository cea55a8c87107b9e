"""Fetch errors that say where data resumes, against a real broker whose segments are damaged.

The broker is stopped, a byte of a sealed segment flipped (or a tail torn, or a partition's
data wiped), and the broker started again: it answers CorruptMessage / OffsetGap with a resume
offset, and the consumers move there with a data-loss note.
"""
import logging
import shutil

import pytest

from broker import protocol
from clients import Consumer, Producer, SimpleConsumer
from coordinator import zk as zkmod
from coordinator.offsets import OffsetStore
from tests.helpers import GroupOffsets, create_topic
from tests.helpers import BrokerProcess, wait_for

ENTRY = 16                      # 9 bytes of header + b"m%06d"
PER_SEGMENT = 10
BAD = 5                         # the message whose payload gets a flipped byte
QUICK = dict(rebalance_backoff_ms=200, rebalance_max_tries=20, max_wait_ms=100,
             session_timeout_ms=4000, auto_commit_ms=200)


def value(i):
    return b"m%06d" % i


def produce(zk, topic, values):
    with Producer(zk, acks=1, batch_size=1, linger_ms=0) as producer:
        for v in values:
            producer.send(topic, v, partition=0)


def segment(tmp_path, topic, start):
    return tmp_path / "broker-0" / topic / "0" / f"{start:020d}.log"


def wait_visible(zk, topic, end):
    with SimpleConsumer(topic, 0, zookeeper=zk) as watch:
        wait_for(lambda: watch.offset_of("latest") == end, 30, what=f"{topic} to end at {end}")


@pytest.fixture
def damaged(zk, tmp_path):
    """A 1-partition topic of 40 messages in segments of 10, message BAD's payload corrupt in
    the first (sealed) segment; yields the topic name."""
    broker = BrokerProcess(zk, tmp_path, 0, log={"segment_bytes": PER_SEGMENT * ENTRY,
                                                 "flush_ms": 20}).start()
    try:
        create_topic(zk, "damaged", 1, [broker])
        produce(zk, "damaged", [value(i) for i in range(40)])
        wait_visible(zk, "damaged", 40 * ENTRY)
        assert broker.stop() == 0
        first = segment(tmp_path, "damaged", 0)
        assert first.stat().st_size == PER_SEGMENT * ENTRY
        data = bytearray(first.read_bytes())
        data[BAD * ENTRY + 12] ^= 0x20
        first.write_bytes(bytes(data))
        broker.start()
        broker.wait_hosting("damaged", 1)
        yield "damaged"
    finally:
        broker.stop()


def poll_counting(consumer, polls):
    """``polls`` calls of poll(): the messages, and the errors raised (at most one a call)."""
    got, errors = [], []
    for _ in range(polls):
        try:
            got.extend(consumer.poll(100))
        except protocol.SluiceError as exc:
            errors.append(exc)
    return got, errors


def test_a_corrupt_message_delivers_the_good_prefix_without_a_reset_loop(zk, damaged, caplog):
    with Consumer([damaged], "g-prefix", zookeeper=zk, **QUICK) as c:
        wait_for(lambda: c.assignment(), 30, what="the partition")
        got, errors = poll_counting(c, 40)
    values = [m.value for m in got]
    assert values[:BAD] == [value(i) for i in range(BAD)], "the good messages before it"
    assert len(values) == len(set(values)), "nothing delivered twice (no reset to start)"
    assert value(BAD) not in values
    for exc in errors:
        assert (exc.topic, exc.partition, exc.offset) == (damaged, 0, BAD * ENTRY)
    assert len(errors) <= 40, "at most one error a poll"
    logged = [r for r in caplog.records
              if r.name == "clients.consumer" and r.levelno >= logging.ERROR]
    assert len(logged) <= 1, "no error line a fetch: at most the one DATA LOSS of a skip"
    assert "resetting" not in caplog.text


def test_on_corrupt_skip_moves_past_the_message_with_one_note(zk, damaged, caplog):
    with Consumer([damaged], "g-skip", zookeeper=zk, **QUICK) as c:
        got = []
        wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 39, 30, what="39 messages")
        assert c.stats["data_loss"] == {"corrupt": {"events": 1, "bytes": ENTRY}}
        c.commit()
    assert [m.value for m in got] == [value(i) for i in range(40) if i != BAD]
    client = zkmod.connect(zk)
    try:
        note = GroupOffsets(zk, "g-skip").data_loss(damaged)[0]
        assert GroupOffsets(zk, "g-skip").fetch(damaged, 0) == 40 * ENTRY
    finally:
        client.stop()
        client.close()
    [event] = note["events"]
    assert (event["kind"], event["offset"], event["resume"], event["bytes"], event["messages"]) \
        == ("corrupt", BAD * ENTRY, (BAD + 1) * ENTRY, ENTRY, 1)
    assert caplog.text.count("DATA LOSS") == 1


def test_on_corrupt_raise_leaves_the_position_for_the_application_to_seek(zk, damaged):
    with Consumer([damaged], "g-raise", zookeeper=zk, on_corrupt="raise", **QUICK) as c:
        got = []
        with pytest.raises(protocol.CorruptMessage) as raised:
            wait_for(lambda: got.extend(c.poll(100)) or False, 30, what="the corrupt message")
        exc = raised.value
        assert (exc.partition, exc.offset, exc.resume_offset) == (0, BAD * ENTRY,
                                                                 (BAD + 1) * ENTRY)
        assert c.position(0) == BAD * ENTRY
        c.seek(0, exc.resume_offset)
        wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 39, 30, what="the rest")
        assert c.stats["data_loss_events"] == 0
    assert [m.value for m in got] == [value(i) for i in range(40) if i != BAD]


def test_simple_consumer_delivers_the_good_prefix_then_a_typed_error(zk, damaged):
    got = []
    with SimpleConsumer(damaged, 0, "earliest", zookeeper=zk, timeout_ms=1000) as consumer:
        try:
            for m in consumer:
                got.append(m.value)
        except protocol.SluiceError as exc:
            assert str(exc).startswith(f"{damaged}/0 at offset {BAD * ENTRY}")
    assert got[:BAD] == [value(i) for i in range(BAD)]
    assert len(got) == len(set(got))


def test_simple_consumer_skips_a_corrupt_message_with_a_warning(zk, damaged, caplog):
    with SimpleConsumer(damaged, 0, "earliest", zookeeper=zk, timeout_ms=1000) as consumer:
        got = [m.value for m in consumer]
        assert consumer.data_loss_events == 1 and consumer.data_loss_bytes == ENTRY
    assert got == [value(i) for i in range(40) if i != BAD]
    assert "skipping the corrupt message" in caplog.text


def test_an_invalid_committed_offset_is_raised_naming_the_partition(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    client = zkmod.connect(zk)
    try:
        create_topic(zk, "misaligned", 2, [broker])
        with Producer(zk, acks=1) as producer:
            for i in range(20):
                producer.send("misaligned", value(i), partition=i % 2)
        OffsetStore(client, "g-mis").commit({("misaligned", 0): 5})
        with Consumer(["misaligned"], "g-mis", zookeeper=zk, **QUICK) as c:
            wait_for(lambda: len(c.assignment()) == 2, 30, what="both partitions")
            got, errors = poll_counting(c, 30)
            assert errors, "the application hears about it"
            assert all(isinstance(e, protocol.InvalidOffset) for e in errors)
            assert {(e.topic, e.partition, e.offset) for e in errors} == {("misaligned", 0, 5)}
            assert sorted(m.value for m in got) == [value(i) for i in range(1, 20, 2)]
            assert c.position(0) == 5, "no silent reset"
            c.seek(0, 0)
            wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 20, 30, what="partition 0")
        assert sorted(m.value for m in got) == [value(i) for i in range(20)]
    finally:
        client.stop()
        client.close()
        broker.stop()


def test_a_committed_offset_past_the_log_end_is_reset_by_start_with_a_note(zk, tmp_path,
                                                                           caplog):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    client = zkmod.connect(zk)
    try:
        create_topic(zk, "wiped", 1, [broker])
        produce(zk, "wiped", [value(i) for i in range(10)])
        with Consumer(["wiped"], "g-wiped", zookeeper=zk, **QUICK) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 10, 30, what="10 messages")
            c.commit()
        assert GroupOffsets(zk, "g-wiped").fetch("wiped", 0) == 10 * ENTRY
        assert broker.stop() == 0
        shutil.rmtree(tmp_path / "broker-0" / "wiped" / "0")   # the disk was replaced
        broker.start()
        broker.wait_hosting("wiped", 1)
        produce(zk, "wiped", [b"n%06d" % i for i in range(3)])
        wait_visible(zk, "wiped", 3 * ENTRY)
        with caplog.at_level(logging.ERROR, logger="clients.consumer"):
            with Consumer(["wiped"], "g-wiped", zookeeper=zk, **QUICK) as c:
                got = []
                wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 3, 30,
                         what="the new messages")
                c.commit()
        assert [m.value for m in got] == [b"n%06d" % i for i in range(3)]
        [event] = GroupOffsets(zk, "g-wiped").data_loss("wiped")[0]["events"]
        assert (event["kind"], event["offset"], event["resume"], event["bytes"]) == \
            ("past_end", 10 * ENTRY, 0, 7 * ENTRY)
        assert GroupOffsets(zk, "g-wiped").fetch("wiped", 0) == 3 * ENTRY
        assert caplog.text.count("DATA LOSS") == 1
    finally:
        client.stop()
        client.close()
        broker.stop()


def test_a_committed_offset_inside_a_recovery_gap_resumes_after_it(zk, tmp_path):
    """Ten messages, the group processed 0..8; message 7 is corrupted and 9 torn, so recovery
    cuts from 7. New messages must go after the gap, and the group resumes there."""
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    client = zkmod.connect(zk)
    try:
        create_topic(zk, "cut", 1, [broker])
        produce(zk, "cut", [value(i) for i in range(10)])
        with Consumer(["cut"], "g-cut", zookeeper=zk, **{**QUICK, "auto_commit_ms": None}) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(100)) or len(got) >= 10, 30, what="10 messages")
            c.commit(got[8])
        assert broker.stop() == 0
        active = segment(tmp_path, "cut", 0)
        data = bytearray(active.read_bytes())
        data[7 * ENTRY + 12] ^= 0x20
        active.write_bytes(bytes(data[:-3]))
        broker.start()
        broker.wait_hosting("cut", 1)
        fresh = [b"n%06d" % i for i in range(5)]
        with SimpleConsumer("cut", 0, zookeeper=zk) as watch:
            before = watch.offset_of("latest")
            produce(zk, "cut", fresh)
            end = wait_for(lambda: (e := watch.offset_of("latest")) >= before + 5 * ENTRY and e,
                           30, what="the new messages to be visible")
        with Consumer(["cut"], "g-cut", zookeeper=zk, **QUICK) as c:
            got = []
            wait_for(lambda: got.extend(c.poll(100)) or c.position(0) == end, 30,
                     what="the consumer to reach the log end")
        assert [m.value for m in got] == fresh, "every new acknowledged message, none skipped"
        [event] = GroupOffsets(zk, "g-cut").data_loss("cut")[0]["events"]
        assert (event["kind"], event["offset"], event["resume"], event["bytes"]) == \
            ("gap", 9 * ENTRY, 10 * ENTRY, ENTRY)
    finally:
        client.stop()
        client.close()
        broker.stop()


def test_simple_consumer_fetch_answers_the_messages_after_a_skipped_one(zk, damaged):
    """fetch() goes on where the data resumes: an empty answer still means nothing is there."""
    with SimpleConsumer(damaged, 0, "earliest", zookeeper=zk, max_wait_ms=0) as consumer:
        assert [m.value for m in consumer.fetch()] == [value(i) for i in range(BAD)]
        after = consumer.fetch()
        assert after[0].value == value(BAD + 1) and consumer.data_loss_events == 1
