"""Producer and SimpleConsumer against real broker processes found through ZooKeeper."""
import threading

import pytest

from broker import protocol
from clients import Producer, SimpleConsumer
from clients.partitioner import hash_partition
from tests.helpers import BrokerProcess, create_topic, wait_for


@pytest.fixture
def brokers(zk, tmp_path):
    procs = [BrokerProcess(zk, tmp_path, i, log={"segment_bytes": 64 * 1024,
                                                  "flush_messages": 100, "flush_ms": 200}).start()
             for i in range(2)]
    yield procs
    for proc in procs:
        proc.stop()


def read_all(zk, topic, partition, expected):
    got = []
    with SimpleConsumer(topic, partition, "earliest", zookeeper=zk, timeout_ms=3000) as consumer:
        for m in consumer:
            got.append(m)
            if len(got) >= expected:
                break
    return got


def test_keyed_messages_round_trip_in_order_per_partition(zk, brokers):
    create_topic(zk, "clicks", 4, brokers)
    sent = {p: [] for p in range(4)}
    with Producer(zk, batch_size=20, linger_ms=5, acks=1) as producer:
        for i in range(2000):
            key = f"user-{i % 37}".encode()
            value = f"event-{i}".encode()
            producer.send("clicks", value, key=key)
            sent[hash_partition(key, 4)].append((key, value))
        producer.flush()
        assert producer.acked == 2000
    for partition in range(4):
        got = read_all(zk, "clicks", partition, len(sent[partition]))
        assert [(m.key, m.value) for m in got] == sent[partition]
        offsets = [m.offset for m in got]
        assert offsets == sorted(offsets)
        assert all(a.next_offset == b.offset for a, b in zip(got, got[1:]))


def test_acks0_messages_arrive_after_flush(zk, brokers):
    create_topic(zk, "fire", 1, brokers)
    with Producer(zk, batch_size=50, acks=0) as producer:
        for i in range(500):
            producer.send("fire", b"%d" % i)
    got = read_all(zk, "fire", 0, 500)
    assert [m.value for m in got] == [b"%d" % i for i in range(500)]


def test_latest_and_seek(zk, brokers):
    create_topic(zk, "seek", 1, brokers)
    with Producer(zk, acks=1, partitioner=lambda t, k, n: 0) as producer:
        for i in range(10):
            producer.send("seek", b"m%d" % i)
    with SimpleConsumer("seek", 0, "earliest", zookeeper=zk, timeout_ms=300) as consumer:
        wait_for(lambda: consumer.offset_of("latest") == 10 * (9 + 2),
                 what="the flush to make all 10 messages visible")
        consumer.seek("latest")
        assert consumer.position == 10 * (9 + 2)
        assert list(consumer) == []
        consumer.seek(3 * 11)
        assert [m.value for m in consumer.fetch()] == [b"m%d" % i for i in range(3, 10)]
        consumer.seek("earliest")
        assert consumer.position == 0


def test_api_rejects_bad_arguments(zk, brokers):
    create_topic(zk, "args", 2, brokers)
    with pytest.raises(ValueError, match="acks"):
        Producer(zk, acks=2)
    with pytest.raises(ValueError, match="batch_size"):
        Producer(zk, batch_size=0)
    with Producer(zk, acks=1) as producer:
        with pytest.raises(TypeError, match="bytes"):
            producer.send("args", "text")
        with pytest.raises(protocol.UnknownTopicOrPartition, match="unknown topic"):
            producer.send("missing", b"x")
        with pytest.raises(protocol.UnknownTopicOrPartition, match="0..1"):
            producer.send("args", b"x", partition=5)
    with pytest.raises(ValueError, match="offset"):
        SimpleConsumer("args", 0, offset="middle", zookeeper=zk)
    with pytest.raises(protocol.UnknownTopicOrPartition):
        SimpleConsumer("missing", 0, zookeeper=zk)
    with SimpleConsumer("args", 0, offset=1, zookeeper=zk) as consumer:
        with Producer(zk, acks=1, partitioner=lambda t, k, n: 0) as producer:
            producer.send("args", b"hello")
        with pytest.raises(protocol.InvalidOffset):
            consumer.fetch()


def test_acks1_producer_rides_out_a_broker_restart_on_a_new_port(zk, brokers):
    create_topic(zk, "restart", 2, brokers)
    victim = brokers[0]
    old_endpoint = victim.endpoint
    produced = threading.Event()
    errors = []

    def produce():
        try:
            with Producer(zk, batch_size=10, acks=1, request_timeout_ms=1500) as producer:
                for i in range(3000):
                    producer.send("restart", b"%d" % i)
                    if i == 1000:
                        produced.set()
                producer.flush()
                assert producer.acked == 3000
        except Exception as exc:  # reported to the test thread below
            errors.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    produced.wait(30)
    victim.kill()
    victim.start()
    assert victim.endpoint != old_endpoint
    thread.join(120)
    assert not thread.is_alive() and errors == []
    values = set()
    for partition in range(2):
        values |= {m.value for m in read_all(zk, "restart", partition, 10**9)}
    assert values == {b"%d" % i for i in range(3000)}, "every acknowledged message is readable"
