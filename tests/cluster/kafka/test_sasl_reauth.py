"""SASL re-authentication (KIP-368) on the Kafka listener, with the broker setting
``connections_max_reauth_ms``: clients are told the session's lifetime in SaslAuthenticate;
confluent-kafka (librdkafka) re-authenticates on its connection and keeps producing across
several lifetimes; a client that does not re-authenticate is closed at the end of its session;
a user removed with ``sluice users remove`` is refused at its next re-authentication.

Judged by the broker's counts (``kafka_sasl_reauthentications``, ``kafka_sessions_expired``,
``authentication_failed``), never by how long anything took."""
import json
import socket
import ssl

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
import kafka.errors
from kafka.protocol.sasl import SaslAuthenticateRequest, SaslAuthenticateResponse
from kafka.protocol.sasl import SaslHandshakeRequest

from broker import protocol
from clients.brokers import BrokerPool
from cluster.supervision import certificates, security
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.sasl_users import SaslUsers
from coordinator.scram import ScramCredential
from tests.cluster.kafka.raw_frames import frame, read_frame
from tests.helpers import create_topic, wait_for

TOPIC = "clicks"
PASSWORD = "alice's long secret"
LIFETIME_MS = 2000


@pytest.fixture
def reauth_broker(zk, zk_client, tmp_path, kafka_broker):
    """A secured broker with SASL_SSL and sessions of LIFETIME_MS; user alice may produce
    and consume ``clicks``. Yields (bootstrap, CA file, stats(): the broker's counts)."""
    configs = security.prepare(tmp_path, zk_client, [0], None)
    tls = certificates.ensure(tmp_path)
    SaslUsers(zk_client).put("alice", ScramCredential.from_password(PASSWORD))
    AclStore(zk_client).add("alice", [Rule("produce", "topic", TOPIC),
                                      Rule("consume", "topic", TOPIC)])
    proc = kafka_broker(security=vars(configs[0]), kafka_tls=vars(tls), kafka_sasl=True,
                        connections_max_reauth_ms=LIFETIME_MS)
    create_topic(zk, TOPIC, 1, [proc])
    pool = BrokerPool(zk, credentials=security.admin_credentials(tmp_path))

    def stats() -> dict:
        frames = pool.call(TOPIC, 0, protocol.encode_metadata)
        document = json.loads(protocol.decode_metadata_response(frames[0].buffer)[1])
        return {**document["stats"], **document["errors"]}
    yield proc.info["kafka_endpoint"], tls.ca_certificate, stats
    pool.close()


def ck_settings(bootstrap, ca, **more):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca, "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": "alice",
            "sasl.password": PASSWORD, **more}


def kp_settings(bootstrap, ca):
    return dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice",
                sasl_plain_password=PASSWORD, ssl_cafile=ca)


def read_back(bootstrap, ca) -> list[bytes]:
    consumer = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             **kp_settings(bootstrap, ca))
    consumer.assign([TopicPartition(TOPIC, 0)])
    try:
        return [record.value for record in consumer]
    finally:
        consumer.close()


def test_confluent_kafka_keeps_producing_across_several_session_lifetimes(reauth_broker):
    """One producer, one connection to its broker: it sends until the broker has counted
    three re-authentications; every message is acknowledged and stored once, in order."""
    bootstrap, ca, stats = reauth_broker
    reports = []
    producer = Producer(ck_settings(bootstrap, ca, acks="all", **{"enable.idempotence": True}))
    sent = []

    def three_reauthentications():
        value = b"m-%d" % len(sent)
        producer.produce(TOPIC, value=value, partition=0,
                         on_delivery=lambda err, msg: reports.append(err))
        sent.append(value)
        producer.flush(10)
        return stats().get("kafka_sasl_reauthentications", 0) >= 3
    wait_for(three_reauthentications, 60, interval=0.2,
             what="three re-authentications of the producer")
    assert producer.flush(20) == 0
    assert reports == [None] * len(sent)
    producer.close()
    assert read_back(bootstrap, ca) == sent


def test_a_client_that_does_not_reauthenticate_is_closed_when_its_session_ends(reauth_broker):
    """A raw SASL PLAIN client is told the lifetime, then sends nothing: the broker closes
    the connection (the read ends) and counts the expired session."""
    bootstrap, ca, stats = reauth_broker
    before = stats().get("kafka_sessions_expired", 0)
    host, port = bootstrap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(frame(SaslHandshakeRequest(version=1, mechanism="PLAIN"), 1))
        assert read_frame(sock) is not None
        sock.sendall(frame(SaslAuthenticateRequest(
            version=1, auth_bytes=b"\x00alice\x00" + PASSWORD.encode()), 2))
        answer = SaslAuthenticateResponse.decode(read_frame(sock), version=1, header=True)
        assert (answer.error_code, answer.session_lifetime_ms) == (0, LIFETIME_MS)
        assert read_frame(sock) is None          # closed by the broker, nothing sent
    assert stats()["kafka_sessions_expired"] == before + 1


def test_a_removed_user_loses_its_open_connection_at_the_next_reauthentication(
        zk_client, reauth_broker):
    """kafka-python re-authenticates too; once alice is removed, her re-authentication is
    refused (counted as authentication_failed) and her open producer can send no more."""
    bootstrap, ca, stats = reauth_broker
    producer = KafkaProducer(acks=1, max_block_ms=5000, request_timeout_ms=5000,
                             delivery_timeout_ms=10_000, retries=0, **kp_settings(bootstrap, ca))
    producer.send(TOPIC, value=b"before", partition=0).get(10)
    wait_for(lambda: stats().get("kafka_sasl_reauthentications", 0) >= 1, 30,
             what="kafka-python's first re-authentication")
    refused_before = stats().get("authentication_failed", 0)
    SaslUsers(zk_client).remove("alice")
    wait_for(lambda: stats().get("authentication_failed", 0) > refused_before, 30,
             what="alice's next re-authentication to be refused")
    with pytest.raises(kafka.errors.KafkaError):
        producer.send(TOPIC, value=b"after", partition=0).get(15)
    producer.close(timeout=5)
