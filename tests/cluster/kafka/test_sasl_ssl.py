"""SASL_SSL on the Kafka listener (issue 14 item 4), judged by real clients against a real
secured broker: kafka-python and confluent-kafka produce and consume with SCRAM-SHA-256 and
PLAIN over TLS; a wrong password is refused with an authentication error (not a timeout) while
the broker keeps serving the good client; a plaintext client on the TLS port and a request
before authentication are refused and counted; the ACLs apply to the SASL user, InitProducerId
included (an idempotent producer needs produce on some topic, as Kafka's Write on any topic)."""
import json
import shutil
import logging
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition as CTopicPartition
from confluent_kafka import OFFSET_BEGINNING, KafkaException
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
import kafka.errors
from kafka.errors import (GroupAuthorizationFailedError, KafkaTimeoutError,
                          TopicAuthorizationFailedError)
from kafka.net.compat import KafkaNetClient
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest
from kafka.protocol.producer import InitProducerIdRequest

from broker import protocol
from clients.brokers import BrokerPool
from cluster.supervision import certificates, security
from coordinator import topics, zk as zkconnect
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.sasl_users import SaslUsers
from coordinator.scram import ScramCredential
from tests.cluster.kafka.raw_frames import frame, read_frame
from tests.helpers import create_topic, wait_for

REPO = Path(__file__).resolve().parents[3]
TOPIC = "clicks"
SECRET_TOPIC = "payroll"
PASSWORD = "alice's long secret"


@pytest.fixture
def sasl_broker(zk, zk_client, tmp_path, kafka_broker):
    """One secured broker whose Kafka listener speaks SASL_SSL with the cluster's own
    certificate; user alice may produce and consume ``clicks`` and consume group ``readers``;
    user reader may only consume ``clicks``; nobody may touch ``payroll``. Yields (bootstrap,
    CA file, admin key file)."""
    configs = security.prepare(tmp_path, zk_client, [0], None)
    tls = certificates.ensure(tmp_path)
    SaslUsers(zk_client).put("alice", ScramCredential.from_password(PASSWORD))
    SaslUsers(zk_client).put("reader", ScramCredential.from_password(PASSWORD))
    AclStore(zk_client).add("alice", [Rule("produce", "topic", TOPIC),
                                      Rule("consume", "topic", TOPIC),
                                      Rule("consume", "group", "readers")])
    AclStore(zk_client).add("reader", [Rule("consume", "topic", TOPIC)])
    proc = kafka_broker(security=vars(configs[0]), kafka_tls=vars(tls), kafka_sasl=True,
                        log={"visible_after_flush": False})
    create_topic(zk, TOPIC, 1, [proc])
    create_topic(zk, SECRET_TOPIC, 1, [proc])
    return proc.info["kafka_endpoint"], tls.ca_certificate, security.admin_credentials(tmp_path)


def kp_settings(bootstrap, ca, mechanism="SCRAM-SHA-256", password=PASSWORD, user="alice"):
    return dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL",
                sasl_mechanism=mechanism, sasl_plain_username=user,
                sasl_plain_password=password, ssl_cafile=ca)


def ck_settings(bootstrap, ca, mechanism="SCRAM-SHA-256", password=PASSWORD, user="alice",
                **more):
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_SSL",
            "ssl.ca.location": ca, "sasl.mechanisms": mechanism, "sasl.username": user,
            "sasl.password": password, **more}


def broker_errors(zk, admin) -> dict:
    """The broker's error counts, from its native METADATA answer (CURVE, the admin key)."""
    pool = BrokerPool(zk, credentials=admin)
    try:
        frames = pool.call(TOPIC, 0, protocol.encode_metadata)
        return json.loads(protocol.decode_metadata_response(frames[0].buffer)[1])["errors"]
    finally:
        pool.close()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_kafka_python_produces_and_consumes_over_sasl_ssl(sasl_broker, mechanism):
    bootstrap, ca, _ = sasl_broker
    sent = [f"{mechanism}-{i}".encode() for i in range(50)]
    producer = KafkaProducer(acks="all", **kp_settings(bootstrap, ca, mechanism))
    for value in sent:
        producer.send(TOPIC, value=value, partition=0)
    producer.flush(20)
    producer.close()
    consumer = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=10_000,
                             **kp_settings(bootstrap, ca, mechanism))
    consumer.assign([TopicPartition(TOPIC, 0)])
    got = []
    for record in consumer:
        got.append(record.value)
        if len(got) == len(sent):
            break
    consumer.close()
    assert got == sent


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_confluent_kafka_produces_and_consumes_over_sasl_ssl(sasl_broker, mechanism):
    bootstrap, ca, _ = sasl_broker
    sent = [f"{mechanism}-{i}".encode() for i in range(50)]
    reports = []
    producer = Producer(ck_settings(bootstrap, ca, mechanism, acks="all"))
    for value in sent:
        producer.produce(TOPIC, value=value, partition=0,
                         on_delivery=lambda err, msg: reports.append(err))
    assert producer.flush(20) == 0
    assert reports == [None] * len(sent)
    producer.close()
    consumer = Consumer(ck_settings(bootstrap, ca, mechanism, **{
        "group.id": "readers", "enable.auto.commit": False}))
    consumer.assign([CTopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    got = []
    try:
        def read():
            msg = consumer.poll(1)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append(msg.value())
            return len(got) >= len(sent)
        wait_for(read, 20, interval=0, what="the messages back")
    finally:
        consumer.close()
    assert got == sent


def test_a_wrong_password_is_refused_while_the_good_client_is_served(zk, sasl_broker, caplog):
    """kafka-python retries a failed bootstrap until its own timeout, so its judge is what
    it reports of each attempt: the authentication error, never a lost connection;
    confluent-kafka reports _AUTHENTICATION to its error callback."""
    bootstrap, ca, admin = sasl_broker
    before = broker_errors(zk, admin).get("authentication_failed", 0)
    good = KafkaProducer(acks=1, **kp_settings(bootstrap, ca))
    good.send(TOPIC, value=b"before", partition=0).get(10)
    caplog.set_level(logging.WARNING, logger="kafka.net.manager")
    with pytest.raises(KafkaTimeoutError):
        KafkaProducer(bootstrap_timeout_ms=2000, **kp_settings(bootstrap, ca, password="wrong"))
    attempts = [r.getMessage() for r in caplog.records if r.name == "kafka.net.manager"
                and r.getMessage().startswith("Bootstrap connection")]
    refused = [m for m in attempts if "SaslAuthenticationFailedError" in m and "'alice'" in m]
    assert refused, attempts       # any other attempt was cut short by the client's deadline
    assert all(m in refused or "KafkaTimeoutError" in m for m in attempts), attempts
    assert KafkaError._AUTHENTICATION in confluent_errors(bootstrap, ca, "wrong")
    good.send(TOPIC, value=b"after", partition=0).get(10)
    good.close()
    assert broker_errors(zk, admin)["authentication_failed"] >= before + len(refused) + 1
    consumer = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             **kp_settings(bootstrap, ca))
    consumer.assign([TopicPartition(TOPIC, 0)])
    assert [r.value for r in consumer] == [b"before", b"after"]
    consumer.close()


def confluent_errors(bootstrap, ca, password) -> list:
    """What confluent-kafka's error callback reported once it reported _AUTHENTICATION (the
    producer is gone when this returns, so librdkafka stops reconnecting)."""
    errors = []
    producer = Producer(ck_settings(bootstrap, ca, password=password,
                                    error_cb=lambda err: errors.append(err.code())))
    producer.produce(TOPIC, value=b"never", partition=0)

    def refused():
        producer.poll(0.2)
        return KafkaError._AUTHENTICATION in errors
    wait_for(refused, 20, what="confluent-kafka's authentication error")
    producer.purge()
    producer.flush(1)
    producer.close()
    return errors


def test_a_plaintext_client_on_the_tls_port_is_closed_and_counted(zk, sasl_broker):
    bootstrap, ca, admin = sasl_broker
    before = broker_errors(zk, admin).get("authentication_failed", 0)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(frame(ApiVersionsRequest(version=0), 1))
        received = b""
        try:
            while chunk := sock.recv(4096):     # at most a TLS alert, then the close
                received += chunk
        except ConnectionResetError:            # closed with the request unread
            pass
    assert not received or received[0] == 0x15      # 0x15: a TLS alert record, never an answer
    wait_for(lambda: broker_errors(zk, admin).get("authentication_failed", 0) > before,
             10, what="the refused handshake to be counted")
    producer = KafkaProducer(acks=1, **kp_settings(bootstrap, ca))
    producer.send(TOPIC, value=b"still served", partition=0).get(10)
    producer.close()


def test_before_authentication_only_api_versions_and_sasl_are_served(zk, sasl_broker):
    bootstrap, ca, admin = sasl_broker
    host, port = bootstrap.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(frame(ApiVersionsRequest(version=3, client_software_name="raw",
                                               client_software_version="1"), 1))
        answer = ApiVersionsResponse.decode(read_frame(sock), version=3, header=True)
        versions = {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}
        assert versions[17] == (0, 1) and versions[36][0] == 0
        sock.sendall(frame(MetadataRequest(version=9, topics=None,
                                            allow_auto_topic_creation=False), 2))
        assert read_frame(sock) is None          # no answer to Metadata: the connection closed
    assert broker_errors(zk, admin)["authentication_failed"] >= 1


def test_the_acls_apply_to_the_sasl_user(sasl_broker):
    bootstrap, ca, _ = sasl_broker
    producer = KafkaProducer(acks=1, max_block_ms=10_000, **kp_settings(bootstrap, ca))
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send(SECRET_TOPIC, value=b"no", partition=0).get(10)
    producer.close()
    consumer = KafkaConsumer(TOPIC, group_id="strangers", consumer_timeout_ms=10_000,
                             **kp_settings(bootstrap, ca))
    with pytest.raises(GroupAuthorizationFailedError):
        next(iter(consumer))
    consumer.close()


def init_producer_id_code(bootstrap, ca, user) -> int:
    """The error code of a bare InitProducerId (no transactional id) sent as ``user``."""
    client = KafkaNetClient(request_timeout_ms=10_000, **kp_settings(bootstrap, ca, user=user))
    try:
        client._manager.bootstrap(timeout_ms=10_000)
        return client.send_and_receive(0, InitProducerIdRequest(
            version=1, transactional_id=None, transaction_timeout_ms=60_000)).error_code
    finally:
        client.close()


def test_an_idempotent_producer_needs_produce_on_some_topic(zk, sasl_broker):
    """Kafka (since KIP-679) gives an idempotent producer its id when its principal may
    IdempotentWrite the cluster or Write any topic, else CLUSTER_AUTHORIZATION_FAILED (31). Here:
    alice (produce on clicks) gets one and her idempotent producers deliver; reader (consume
    only) is refused with 31 at InitProducerId, which both clients report as fatal, and nothing
    of hers reaches the log."""
    bootstrap, ca, admin = sasl_broker
    assert init_producer_id_code(bootstrap, ca, "alice") == 0
    assert init_producer_id_code(bootstrap, ca, "reader") == 31
    reports = []
    alice = Producer(ck_settings(bootstrap, ca, acks="all", **{"enable.idempotence": True}))
    for i in range(20):
        alice.produce(TOPIC, value=b"idem-%d" % i, partition=0,
                      on_delivery=lambda err, msg: reports.append(err))
    assert alice.flush(20) == 0
    assert reports == [None] * 20
    alice.close()          # closed, not left to the garbage collector: its threads would
                           # go on reconnecting to this broker after the test
    fatal = []
    reader = Producer(ck_settings(bootstrap, ca, user="reader", acks="all", **{
        "enable.idempotence": True, "error_cb": lambda err: fatal.append(err)}))
    reader.produce(TOPIC, value=b"never", partition=0)

    def refused():
        try:
            reader.poll(0.2)
        except KafkaException as exc:      # confluent-kafka raises a fatal error from poll
            fatal.append(exc.args[0])
        return any(err.fatal() for err in fatal)
    wait_for(refused, 20, what="confluent-kafka's fatal error")
    assert {err.code() for err in fatal if err.fatal()} == {
        KafkaError.CLUSTER_AUTHORIZATION_FAILED}, fatal
    reader.purge()
    reader.close()
    kp = KafkaProducer(enable_idempotence=True, acks="all", max_block_ms=10_000,
                       **kp_settings(bootstrap, ca, user="reader"))
    with pytest.raises(kafka.errors.KafkaError, match="ClusterAuthorizationFailedError"):
        kp.send(TOPIC, value=b"never", partition=0).get(20)     # kafka-python wraps it
    kp.close()
    consumer = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=5000,
                             **kp_settings(bootstrap, ca))
    consumer.assign([TopicPartition(TOPIC, 0)])
    assert [r.value for r in consumer] == [b"idem-%d" % i for i in range(20)]
    consumer.close()


def test_cluster_up_secure_serves_sasl_ssl_to_a_user_the_cli_made(cluster_factory):
    """The path a person takes: ``cluster up --secure``, ``sluice users add`` (the password on
    stdin), a rule, then kafka-python with what ``cluster status`` says (bootstrap, SASL_SSL,
    the CA file); ``users remove`` shuts the next login out."""
    cluster = cluster_factory(brokers=1, secure=True)
    status = cluster.status()
    assert status["kafka_security_protocol"] == "SASL_SSL"
    added = sluice(cluster.data_dir, "users", "add", "alice", "--password-stdin",
                   input=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr
    listed = sluice(cluster.data_dir, "users", "list", "--json")
    assert [u["name"] for u in json.loads(listed.stdout)] == ["alice"]
    client = zkconnect.connect(cluster.zookeeper, cluster.data_dir)
    try:
        topics.create(client, TOPIC, partitions=1)
        AclStore(client).add("alice", [Rule("produce", "topic", TOPIC),
                                       Rule("consume", "topic", TOPIC)])
    finally:
        client.stop()
        client.close()
    settings = kp_settings(status["kafka_bootstrap"], status["kafka_ca"])
    producer = KafkaProducer(acks="all", **settings)
    wait_for(lambda: producer.partitions_for(TOPIC), 20, what="the topic's leader")
    producer.send(TOPIC, value=b"through the CLI", partition=0).get(20)
    producer.close()
    consumer = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=5000, **settings)
    consumer.assign([TopicPartition(TOPIC, 0)])
    assert [r.value for r in consumer] == [b"through the CLI"]
    consumer.close()
    removed = sluice(cluster.data_dir, "users", "remove", "alice")
    assert removed.returncode == 0, removed.stderr

    def refused():
        try:
            KafkaProducer(bootstrap_timeout_ms=2000, **settings).close()
        except KafkaTimeoutError:
            return True
        return False
    wait_for(refused, 20, what="the removed user's login to be refused")


def sluice(data_dir, *args, input=None):
    return subprocess.run([sys.executable, "-m", "cluster.cli", "--data-dir", str(data_dir),
                           *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          input=input)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_kcat_produces_and_consumes_over_sasl_ssl(sasl_broker, mechanism):
    """Debian's kcat is built on librdkafka 2.0.2, whose SCRAM client sends its nonce twice
    (librdkafka#4895, fixed in 2.6.1); the broker takes that as Kafka 3.8.1-3.9 do."""
    bootstrap, ca, _ = sasl_broker
    common = ["kcat", "-b", bootstrap, "-X", "security.protocol=SASL_SSL",
              "-X", f"sasl.mechanisms={mechanism}", "-X", "sasl.username=alice",
              "-X", f"sasl.password={PASSWORD}", "-X", f"ssl.ca.location={ca}", "-t", TOPIC]
    lines = [f"kcat-{mechanism}-{i}" for i in range(20)]
    produced = subprocess.run([*common, "-P", "-p", "0"], input="\n".join(lines) + "\n",
                              capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run([*common, "-C", "-o", "beginning", "-e", "-q"],
                              capture_output=True, text=True, timeout=60)
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == lines
