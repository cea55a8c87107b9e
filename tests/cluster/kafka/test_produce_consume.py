"""Real Kafka clients produce to and consume from a real sluice broker over its Kafka listener:
keyed messages with acks 0, 1 and all, read back by partition from earliest, none lost, none
changed, order kept per partition; null values, headers and timestamps kept."""
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

TOPIC = "orders"
PARTITIONS = 3
SETTINGS = {"log": {"visible_after_flush": False}}


def keyed(n, tag):
    return [(f"k{i % 17}".encode(), f"{tag}-{i}".encode()) for i in range(n)]


def read_partitions_kafka_python(bootstrap, topic, partitions, expected):
    """Every message of the partitions from earliest, by partition, until ``expected`` came."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20_000)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        got = {p: [] for p in range(partitions)}
        total = 0
        for record in consumer:
            got[record.partition].append(record)
            total += 1
            if total >= expected:
                break
        return got
    finally:
        consumer.close()


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_kafka_python_produces_and_reads_back_by_partition(kafka_broker, acks):
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    sent = keyed(3000, f"acks{acks}")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=5,
                             enable_idempotence=False)
    futures = [producer.send(TOPIC, key=k, value=v) for k, v in sent]
    producer.flush(30)
    producer.close()
    if acks != 0:
        assert all(f.succeeded() for f in futures)
    got = read_partitions_kafka_python(bootstrap, TOPIC, PARTITIONS, len(sent))
    assert sum(len(v) for v in got.values()) == len(sent)
    by_key = {}
    for key, value in sent:
        by_key.setdefault(key, []).append(value)
    for records in got.values():
        offsets = [r.offset for r in records]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    # one key goes to one partition, in the order it was sent
    seen = {}
    for p, records in got.items():
        for r in records:
            seen.setdefault(r.key, set()).add(p)
    assert all(len(parts) == 1 for parts in seen.values())
    for key, values in by_key.items():
        (p,) = seen[key]
        assert [r.value for r in got[p] if r.key == key] == values


def test_confluent_kafka_produces_and_reads_back_by_partition(kafka_broker):
    from confluent_kafka import Consumer, Producer, TopicPartition as CTP, OFFSET_BEGINNING
    proc = kafka_broker(TOPIC, PARTITIONS, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    sent = keyed(3000, "rdkafka")
    failures = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for key, value in sent:
        producer.produce(TOPIC, key=key, value=value,
                         on_delivery=lambda err, msg: err and failures.append(err))
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    try:
        consumer.assign([CTP(TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got = {p: [] for p in range(PARTITIONS)}
        total = 0
        while total < len(sent):
            msg = consumer.poll(20)
            assert msg is not None, f"no message after {total} of {len(sent)}"
            assert msg.error() is None, msg.error()
            got[msg.partition()].append((msg.key(), msg.value(), msg.offset()))
            total += 1
    finally:
        consumer.close()
    by_key = {}
    for key, value in sent:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        mine = [(p, v) for p, rows in got.items() for k, v, _ in rows if k == key]
        assert len({p for p, _ in mine}) == 1
        assert [v for _, v in mine] == values


def test_null_values_headers_and_timestamps_are_kept(kafka_broker):
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    producer.send(TOPIC, key=None, value=b"no key", timestamp_ms=1_600_000_000_000,
                  headers=[("h1", b"v1"), ("h2", b"")]).get(10)
    producer.send(TOPIC, key=b"", value=None, timestamp_ms=1_600_000_000_001).get(10)
    producer.close()
    (records,) = read_partitions_kafka_python(bootstrap, TOPIC, 1, 2).values()
    assert [(r.key, r.value, r.timestamp, list(r.headers)) for r in records] == [
        (None, b"no key", 1_600_000_000_000, [("h1", b"v1"), ("h2", b"")]),
        (b"", None, 1_600_000_000_001, [])]
