"""Kafka clients find a sluice broker: ApiVersions and Metadata through kafka-python's admin
client and consumer, librdkafka's (confluent-kafka) metadata, and the protocol's error for an
API this broker does not serve."""
import socket
import struct

from kafka import KafkaAdminClient, KafkaConsumer

TOPIC = "clicks"


def test_kafka_python_admin_and_consumer_see_the_topic_and_its_leader(kafka_broker):
    proc = kafka_broker(TOPIC, 3)
    bootstrap = proc.info["kafka_endpoint"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        assert TOPIC in admin.list_topics()
        (described,) = admin.describe_topics([TOPIC])
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
        assert {p["leader_id"] for p in described["partitions"]} == {0}
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        assert consumer.partitions_for_topic(TOPIC) == {0, 1, 2}
        assert not consumer.partitions_for_topic("absent")
    finally:
        consumer.close()


def test_confluent_kafka_metadata_names_the_brokers_kafka_endpoint(kafka_broker):
    from confluent_kafka.admin import AdminClient
    proc = kafka_broker(TOPIC, 2)
    bootstrap = proc.info["kafka_endpoint"]
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    assert {b.id: f"{b.host}:{b.port}" for b in metadata.brokers.values()} == {0: bootstrap}
    assert sorted(metadata.topics[TOPIC].partitions) == [0, 1]
    assert metadata.topics[TOPIC].partitions[1].leader == 0


def test_an_unserved_api_gets_unsupported_version_and_the_connection_stays(kafka_broker):
    proc = kafka_broker()
    host, port = proc.info["kafka_endpoint"].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        # api key 1000 (none), version 0, correlation id 7, client id "t"
        body = struct.pack(">hhih", 1000, 0, 7, 1) + b"t"
        sock.sendall(struct.pack(">i", len(body)) + body)
        size, corr, code = struct.unpack(">iih", _read(sock, 10))
        assert (size, corr, code) == (6, 7, 35)
        # then ApiVersions v0 on the same connection still answers
        body = struct.pack(">hhih", 18, 0, 8, 1) + b"t"
        sock.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _read(sock, 4))
        corr, code = struct.unpack(">ih", _read(sock, size)[:6])
        assert (corr, code) == (8, 0)


def _read(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data
