"""What a Kafka producer is told about its records' offsets (README, "Offsets a producer is
told"): a Produce response carries one base offset per partition and clients count the rest
as base + index, so the first record of a batch is reported at its real byte offset and the
others at base + 1, base + 2, ..., while a consumer sees their real byte offsets."""
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

# an unkeyed magic 2 message without headers: size, magic, CRC, attributes, timestamp, key and
# headers lengths (broker/message.py) before the value
FRAMING = 26

TOPIC = "offsets"
SETTINGS = {"log": {"visible_after_flush": False}}
VALUES = [b"first", b"second", b"third", b"fourth"]


def consumed_offsets(bootstrap, count):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20_000)
    try:
        consumer.assign([TopicPartition(TOPIC, 0)])
        got = []
        for record in consumer:
            got.append((record.value, record.offset))
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


def test_librdkafka_reports_base_plus_index_for_one_batch(kafka_broker):
    from confluent_kafka import Producer
    bootstrap = kafka_broker(TOPIC, 1, **SETTINGS).info["kafka_endpoint"]
    reported = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 1000})
    for value in VALUES:                    # one batch: linger far longer than the loop
        producer.produce(TOPIC, value, partition=0,
                         on_delivery=lambda err, msg: reported.append((err, msg.offset())))
    assert producer.flush(30) == 0
    del producer
    real = consumed_offsets(bootstrap, len(VALUES))
    assert [v for v, _ in real] == VALUES
    assert [err for err, _ in reported] == [None] * len(VALUES)
    base = real[0][1]
    assert [offset for _, offset in reported] == [base + i for i in range(len(VALUES))]
    assert [offset for _, offset in real] == [
        base + sum(len(v) + FRAMING for v in VALUES[:i]) for i in range(len(VALUES))]


def test_kafka_python_reports_base_plus_batch_index(kafka_broker):
    bootstrap = kafka_broker(TOPIC, 1, **SETTINGS).info["kafka_endpoint"]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=1000,
                             enable_idempotence=False)
    try:
        futures = [producer.send(TOPIC, value, partition=0) for value in VALUES]
        producer.flush(30)
        reported = [f.get(10).offset for f in futures]
    finally:
        producer.close(5)
    real = consumed_offsets(bootstrap, len(VALUES))
    base = real[0][1]
    assert reported == [base + i for i in range(len(VALUES))]
    assert [offset for _, offset in real] == [
        base + sum(len(v) + FRAMING for v in VALUES[:i]) for i in range(len(VALUES))]
