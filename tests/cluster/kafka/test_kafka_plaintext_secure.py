"""``cluster up --secure --kafka-plaintext``: the native side is CurveZMQ with ACLs, the Kafka
listener is plaintext without SASL. Its clients are the principal ``ANONYMOUS`` (Kafka's
User:ANONYMOUS): refused until a rule names ANONYMOUS (a ``*`` rule, for every authenticated
principal, does not cover it), then served as far as those rules go."""
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[3]
TOPIC = "clicks"


def sluice(data_dir, *args):
    done = subprocess.run([sys.executable, "-m", "cluster.cli", "--data-dir", str(data_dir),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_a_plaintext_kafka_client_is_anonymous_and_has_only_its_rules(cluster_factory):
    cluster = cluster_factory(brokers=1, secure=True, kafka_plaintext=True)
    status = cluster.status()
    assert status.get("kafka_security_protocol", "PLAINTEXT") == "PLAINTEXT"
    bootstrap = status["kafka_bootstrap"]
    sluice(cluster.data_dir, "topics", "create", TOPIC, "--partitions", "1")
    sluice(cluster.data_dir, "acl", "add", "*", "produce", "consume", "--topic", TOPIC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, max_block_ms=10_000)
    with pytest.raises(TopicAuthorizationFailedError):      # * is for authenticated ones
        producer.send(TOPIC, value=b"refused", partition=0).get(10)

    sluice(cluster.data_dir, "acl", "add", "ANONYMOUS", "produce", "consume", "--topic", TOPIC)

    def sent():
        try:
            producer.send(TOPIC, value=b"anonymous", partition=0).get(10)
            return True
        except TopicAuthorizationFailedError:      # the brokers' watch has not seen it yet
            return False
    wait_for(sent, 20, what="ANONYMOUS's produce rule to apply")
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    consumer.assign([TopicPartition(TOPIC, 0)])
    assert [r.value for r in consumer] == [b"anonymous"]     # the refused one reached no log
    consumer.close()
    sluice(cluster.data_dir, "acl", "remove", "ANONYMOUS", "produce", "--topic", TOPIC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, max_block_ms=10_000)

    def refused():
        try:
            producer.send(TOPIC, value=b"after the removal", partition=0).get(10)
            return False
        except TopicAuthorizationFailedError:
            return True
    wait_for(refused, 20, what="the removed rule to stop ANONYMOUS")
    producer.close()
