"""A compacted topic refuses messages without a key (Kafka's INVALID_RECORD): on the native
produce path with acks 1 and 0, and on the Kafka listener to kafka-python and confluent-kafka.
The set is refused whole, the keyed sets beside it are written, and a topic that does not
compact still takes unkeyed messages."""
from __future__ import annotations

import json

import pytest

from broker import message, protocol
from clients import Producer, SimpleConsumer
from coordinator import topics, zk as zkmod
from coordinator.errors import InvalidRecord
from tests.helpers import BrokerProcess, RawClient, push, wait_for

kafka = pytest.importorskip("kafka")
confluent_kafka = pytest.importorskip("confluent_kafka")

TOPIC = "accounts"
PLAIN = "events"


@pytest.fixture
def proc(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, kafka_port=0,
                           log={"visible_after_flush": False}).start()
    client = zkmod.connect(zk)
    try:
        topics.create(client, TOPIC, 1, config={"cleanup.policy": "compact"})
        topics.create(client, PLAIN, 1)
    finally:
        client.stop()
        client.close()
    broker.wait_hosting(TOPIC, 1)
    broker.wait_hosting(PLAIN, 1)
    yield broker
    assert broker.stop() == 0, broker.log_text()[-3000:]


def metadata(proc: BrokerProcess) -> dict:
    raw = RawClient(proc.endpoint)
    try:
        return json.loads(protocol.decode_metadata_response(
            raw.request(protocol.encode_metadata(1))[0])[1])
    finally:
        raw.close()


def stored(zk: str, topic: str = TOPIC) -> list:
    got = []
    with SimpleConsumer(topic, 0, "earliest", zookeeper=zk, timeout_ms=3000) as consumer:
        end = consumer.offset_of("latest")
        if consumer.position >= end:
            return got
        for m in consumer:
            got.append((m.key, m.value))
            if m.next_offset >= end:
                return got


def test_a_native_producer_gets_invalid_record_for_a_message_without_a_key(zk, proc):
    with Producer(zk, acks=1, linger_ms=0) as producer:
        producer.send(TOPIC, b"keyed", key=b"k1", partition=0)
        producer.flush(10)
        producer.send(TOPIC, b"no key", partition=0)
        with pytest.raises(InvalidRecord, match="needs a key") as refused:
            producer.flush(10)
        assert not refused.value.retriable
        producer.send(TOPIC, b"keyed again", key=b"k2", partition=0)
        producer.send(PLAIN, b"no key is fine here", partition=0)
        producer.flush(10)
    assert stored(zk) == [(b"k1", b"keyed"), (b"k2", b"keyed again")]
    assert stored(zk, PLAIN) == [(None, b"no key is fine here")]
    assert metadata(proc)["errors"] == {"invalid_record": 1}


def test_an_acks0_set_without_a_key_is_dropped_and_counted_and_its_neighbours_written(zk, proc):
    header = protocol.encode_produce(0, TOPIC, 0, 0)
    unkeyed_record = message.encode_record(b"null key", None, 1)
    push(proc.produce_endpoint,
         header, message.encode(b"first", b"a"))
    push(proc.produce_endpoint,
         header, message.encode(b"mixed", b"b") + unkeyed_record)
    push(proc.produce_endpoint,
         header, message.encode(b"last", b"c"))
    wait_for(lambda: len(stored(zk)) == 2, what="the two keyed sets")
    assert stored(zk) == [(b"a", b"first"), (b"c", b"last")]
    assert metadata(proc)["errors"] == {"invalid_record": 1}


def test_kafka_clients_get_invalid_record_and_do_not_retry(zk, proc):
    bootstrap = proc.info["kafka_endpoint"]
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks=1, retries=5,
                                   retry_backoff_ms=10)
    try:
        producer.send(TOPIC, key=b"k1", value=b"from kafka-python", partition=0).get(10)
        with pytest.raises(kafka.errors.InvalidRecordError):
            producer.send(TOPIC, value=b"no key", partition=0).get(10)
    finally:
        producer.close()
    reports = []
    other = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": 1,
                                      "linger.ms": 0, "log.connection.close": False})
    for key, value in ((None, b"no key"), (b"k2", b"from librdkafka")):   # a batch each
        other.produce(TOPIC, key=key, value=value, partition=0,
                      on_delivery=lambda err, msg: reports.append(err and err.code()))
        assert other.flush(10) == 0
    del other
    assert reports == [confluent_kafka.KafkaError.INVALID_RECORD, None]
    assert stored(zk) == [(b"k1", b"from kafka-python"), (b"k2", b"from librdkafka")]
    errors = metadata(proc)["errors"]
    assert errors == {"invalid_record": 2}, errors


def test_a_produce_sets_request_refuses_its_unkeyed_set_alone(zk, proc):
    """A batch-1 producer's PRODUCE_SETS request (several one-message sets in one frame) to a
    compacted topic: the unkeyed set among them is refused and counted, its keyed neighbours
    are written, as if each had come alone."""
    sets = [message.encode(b"first", b"a"), message.encode(b"no key"),
            message.encode(b"last", b"c")]
    push(proc.produce_endpoint, protocol.encode_produce_sets(0, TOPIC, 0),
         protocol.encode_set_sizes([len(s) for s in sets]), b"".join(sets))
    wait_for(lambda: metadata(proc)["errors"].get("invalid_record"), what="the refusal counted")
    assert stored(zk) == [(b"a", b"first"), (b"c", b"last")]
    assert metadata(proc)["errors"] == {"invalid_record": 1}
