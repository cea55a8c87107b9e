"""sluice's own clients and Kafka clients on the same partitions: what a native producer wrote
is read by each Kafka client (the byte offsets the native consumer sees, the keys, the values,
the order), and what each Kafka client wrote is read by a native consumer."""
import pytest

from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from tests.cluster.kafka.kafka_clients import CLIENTS, check_per_partition, sent_rows

TOPIC = "crossing"
PARTITIONS = 3
COUNT = 2000
SETTINGS = {"log": {"visible_after_flush": False}}


def read_native(zk, count):
    """Every message of the topic's partitions with sluice's SimpleConsumer, until ``count``;
    ``[(partition, offset, key, value, timestamp)]``."""
    got = []
    for p in range(PARTITIONS):
        consumer = SimpleConsumer(TOPIC, p, zookeeper=zk, timeout_ms=10_000, max_wait_ms=100)
        try:
            end = consumer.offset_of("latest")
            while consumer.position < end:
                for m in consumer.fetch():
                    got.append((p, m.offset, _text(m.key), _text(m.value), m.timestamp))
        finally:
            consumer.close()
    assert len(got) == count, f"{len(got)} of {count} read by the native consumer"
    return got


def _text(b):
    return None if b is None else bytes(b).decode()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_kafka_client_reads_what_a_native_producer_wrote(kafka_broker, zk, client):
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    rows = sent_rows(COUNT, "native")
    with Producer(zk, acks=1) as producer:
        for k, v in rows:
            producer.send(TOPIC, v.encode(), key=k.encode())
        producer.flush()
    native = read_native(zk, COUNT)
    check_per_partition(rows, native)
    got = client.read(proc.info["kafka_endpoint"], TOPIC, PARTITIONS, COUNT)
    check_per_partition(rows, got)
    # the same messages at the same byte offsets, in the same order per partition
    assert sorted(r[:4] for r in got) == sorted(r[:4] for r in native)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_native_consumer_reads_what_a_kafka_client_wrote(kafka_broker, zk, client):
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    rows = sent_rows(COUNT, client.name)
    client.produce(bootstrap, TOPIC, rows, 1)
    native = read_native(zk, COUNT)
    check_per_partition(rows, native)
    assert all(ts is not None and ts > 0 for *_, ts in native), "a record lost its timestamp"
    got = client.read(bootstrap, TOPIC, PARTITIONS, COUNT)
    assert sorted(got) == sorted(native)
