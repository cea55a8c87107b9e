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
    del producer                            # its threads stop before the broker does
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


def test_a_native_consumer_reads_what_kafka_python_wrote(kafka_broker):
    from broker import message, protocol
    from tests.helpers import RawClient
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    producer = KafkaProducer(bootstrap_servers=proc.info["kafka_endpoint"], acks=1)
    producer.send(TOPIC, key=b"k", value=b"from kafka", timestamp_ms=1_650_000_000_000,
                  headers=[("h", b"1")]).get(10)
    producer.close()
    raw = RawClient(proc.endpoint)
    try:
        header, body = raw.request(protocol.encode_fetch(2, TOPIC, 0, 0, 1 << 20, 0, 0))
    finally:
        raw.close()
    (m,) = message.decode_set(body, TOPIC, 0, 0)
    assert (m.key, m.value, m.timestamp, m.headers) == (b"k", b"from kafka",
                                                        1_650_000_000_000, (("h", b"1"),))


def test_the_idempotent_producer_kafka_python_defaults_to_writes_each_record_once(kafka_broker):
    proc = kafka_broker(TOPIC, 2, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    sent = keyed(2000, "idem")
    futures = [producer.send(TOPIC, key=k, value=v) for k, v in sent]
    producer.flush(30)
    producer.close()
    assert all(f.succeeded() for f in futures)
    got = read_partitions_kafka_python(bootstrap, TOPIC, 2, len(sent))
    assert sorted(r.value for rs in got.values() for r in rs) == sorted(v for _, v in sent)


def test_offsets_for_times_finds_the_first_record_at_or_after_a_timestamp(kafka_broker):
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    metas = [producer.send(TOPIC, value=b"at %d" % t, timestamp_ms=t).get(10)
             for t in (1000, 2000, 3000)]
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(TOPIC, 0)
        found = consumer.offsets_for_times({tp: 1500})[tp]
        assert (found.offset, found.timestamp) == (metas[1].offset, 2000)
        assert consumer.offsets_for_times({tp: 5000})[tp] is None
        assert consumer.beginning_offsets([tp])[tp] == 0
        end = consumer.end_offsets([tp])[tp]
        consumer.assign([tp])
        consumer.seek(tp, found.offset)
        batch = consumer.poll(10_000)
        assert [r.value for r in batch[tp]] == [b"at 2000", b"at 3000"]
        assert consumer.position(tp) == end
    finally:
        consumer.close()


def test_a_record_larger_than_fetch_max_bytes_still_comes_whole(kafka_broker):
    from confluent_kafka import Consumer, Producer, TopicPartition as CTP, OFFSET_BEGINNING
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    big = bytes(range(256)) * 1000          # 256,000 bytes
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(TOPIC, value=big)
    producer.produce(TOPIC, value=b"after")
    assert producer.flush(30) == 0
    del producer                            # its threads stop before the broker does
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "fetch.max.bytes": 4096, "max.partition.fetch.bytes": 4096,
                         "message.max.bytes": 4096,
                         "receive.message.max.bytes": 1_000_000, "enable.auto.commit": False})
    try:
        consumer.assign([CTP(TOPIC, 0, OFFSET_BEGINNING)])
        got = []
        while len(got) < 2:
            msg = consumer.poll(20)
            assert msg is not None and msg.error() is None, msg and msg.error()
            got.append(msg.value())
    finally:
        consumer.close()
    assert got == [big, b"after"]


def test_a_fetch_waits_for_min_bytes_until_max_wait_then_answers(kafka_broker):
    proc = kafka_broker(TOPIC, 1, **SETTINGS)
    bootstrap = proc.info["kafka_endpoint"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    producer.send(TOPIC, value=b"small").get(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_min_bytes=1 << 20,
                             fetch_max_wait_ms=300)
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        got = []
        for _ in range(50):
            got += consumer.poll(1000).get(tp, [])
            if got:
                break
        assert [r.value for r in got] == [b"small"]
    finally:
        consumer.close()
