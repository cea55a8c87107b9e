"""SimpleConsumer iteration keeps one fetch in flight ahead; a seek makes it drop that one."""
from clients import Producer, SimpleConsumer
from tests.helpers import create_topic

ENTRY = 9 + 6  # header + b"m%05d"


def test_iteration_reads_ahead_and_a_seek_discards_the_read_ahead(zk, quick_broker):
    create_topic(zk, "ahead", 1, [quick_broker])
    with Producer(zk, acks=1, partitioner=lambda t, k, n: 0) as producer:
        for i in range(40):
            producer.send("ahead", b"m%05d" % i)
    with SimpleConsumer("ahead", 0, "earliest", zookeeper=zk, max_bytes=5 * ENTRY,
                        timeout_ms=500) as consumer:
        seen = []
        for m in consumer:
            seen.append(m.value)
            if len(seen) == 3:
                consumer.seek(30 * ENTRY)
            if len(seen) == 5 + 10:
                break
    first_fetch = [b"m%05d" % i for i in range(5)]
    assert seen == first_fetch + [b"m%05d" % i for i in range(30, 40)]


def test_iteration_reads_everything_once_in_order(zk, quick_broker):
    create_topic(zk, "ahead2", 1, [quick_broker])
    with Producer(zk, acks=1, batch_size=33, partitioner=lambda t, k, n: 0) as producer:
        for i in range(1000):
            producer.send("ahead2", b"m%05d" % i)
    with SimpleConsumer("ahead2", 0, "earliest", zookeeper=zk, max_bytes=7 * ENTRY + 3,
                        timeout_ms=500) as consumer:
        got = list(consumer)
    assert [m.value for m in got] == [b"m%05d" % i for i in range(1000)]
    assert [m.offset for m in got] == [i * ENTRY for i in range(1000)]
