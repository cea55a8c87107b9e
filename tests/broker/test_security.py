"""A secured broker (issue 14): CURVE with a ZAP allow list, against a real broker process.

Allowed, unknown-key, keyless and revoked clients; the refused ones reach no log (the log end
does not move), get AUTHENTICATION_FAILED rather than a timeout, and are counted by the broker.
"""
import itertools
import json
import stat
import threading

import pytest
import zmq

from broker import authenticator, protocol
from broker.message import encode_set
from clients.brokers import BrokerPool
from clients.connection import Connection, Handshake
from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from cluster.supervision import security
from coordinator import allow_list, credentials, topics
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.errors import AuthenticationFailed, AuthorizationFailed
from tests.helpers import BrokerProcess, wait_for


@pytest.fixture
def secured(zk, zk_client, tmp_path):
    """One secured broker, a topic of one partition, and an allowed key 'alice' whose rules let
    it produce and consume there (a secured broker denies what no rule allows)."""
    configs = security.prepare(tmp_path, zk_client, [0], None)
    alice = credentials.create("alice")
    path = credentials.save(alice, tmp_path / "alice.key")
    allow_list.allow(zk_client, "alice", alice.public_key)
    AclStore(zk_client).add("alice", [Rule("produce", "topic", "clicks"),
                                      Rule("consume", "topic", "clicks")])
    broker = BrokerProcess(zk, tmp_path, 0, security=vars(configs[0]),
                           log={"flush_messages": 1}).start()
    topics.create(zk_client, "clicks", partitions=1)
    broker.wait_hosting("clicks", 1)
    yield broker, str(path)
    broker.stop()


def log_end(zk, creds):
    pool = BrokerPool(zk, credentials=creds)
    try:
        return pool.offset("clicks", 0, protocol.LATEST)
    finally:
        pool.close()


def broker_errors(zk, creds) -> dict:
    """The broker's error counts, from its METADATA answer."""
    pool = BrokerPool(zk, credentials=creds)
    try:
        frames = pool.call("clicks", 0, protocol.encode_metadata)
        return json.loads(protocol.decode_metadata_response(frames[0].buffer)[1])["errors"]
    finally:
        pool.close()


def test_an_allowed_key_produces_and_consumes(zk, secured):
    _, alice = secured
    with Producer(zk, acks=1, credentials=alice) as producer:
        producer.send("clicks", b"hello", partition=0)
        producer.flush()
    consumer = SimpleConsumer("clicks", 0, zookeeper=zk, credentials=alice, timeout_ms=5000)
    assert [m.value for m in consumer.fetch()] == [b"hello"]
    consumer.close()


def test_unknown_keyless_and_revoked_clients_are_refused_typed_and_reach_no_log(
        zk, zk_client, secured, tmp_path):
    _, alice = secured
    admin = security.admin_credentials(tmp_path)
    pool = BrokerPool(zk, credentials=alice)
    conn = pool.connection("clicks", 0)
    before = log_end(zk, admin)
    assert allow_list.revoke(zk_client, "alice")

    def produce_refused():
        frames = conn.call(lambda corr: protocol.encode_produce(corr, "clicks", 0, 1),
                           encode_set([(None, b"late")]))
        try:
            protocol.decode_response(frames[0].buffer, protocol.PRODUCE_REPLY)
        except AuthenticationFailed:
            return True
        return None
    # revoked while connected: once the broker's watch saw it, the open connection's requests
    # are refused in-band (what got in before that is the watch's latency, counted here)
    wait_for(produce_refused, 10, what="the revoked key to be refused")
    before = log_end(zk, admin)
    assert produce_refused()
    # a new connection with the revoked key is refused at the handshake, typed
    refused = BrokerPool(zk, credentials=alice)
    with pytest.raises(AuthenticationFailed, match="allow list"):
        refused.offset("clicks", 0, protocol.LATEST)
    refused.close()
    pool.close()
    stranger = credentials.save(credentials.create("mallory"), tmp_path / "mallory.key")
    for acks in (1, 0):
        producer = Producer(zk, acks=acks, credentials=str(stranger))
        producer.send("clicks", b"x", partition=0)
        with pytest.raises(AuthenticationFailed, match="allow list"):
            producer.flush()
        producer.close()        # the error was raised once, by flush(); this frees the rest
    keyless = BrokerPool(zk)
    with pytest.raises(AuthenticationFailed, match="no key"):
        keyless.offset("clicks", 0, protocol.LATEST)
    keyless.close()
    assert log_end(zk, admin) == before


def test_the_broker_counts_refusals_and_keeps_secrets_private(zk, secured, tmp_path):
    broker, _ = secured
    context = zmq.Context()
    endpoint = broker.info["endpoint"]
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            Connection(context, endpoint, secured=True, handshake_timeout_ms=5000)
    context.term()
    admin = security.admin_credentials(tmp_path)
    wait_for(lambda: broker_errors(zk, admin).get("authentication_failed", 0) >= 3, 10,
             what="the refusals to be counted")
    root = credentials.security_dir(tmp_path)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for path in root.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    server_secret = credentials.load(root / credentials.SERVER_KEY).secret_key
    assert server_secret not in broker.log_path.read_text()


def test_a_refused_client_hammering_the_broker_reaches_no_log_and_the_allowed_one_completes(
        zk, zk_client, secured, tmp_path):
    """While a revoked key streams produce requests on its open connection (acks=1 and acks=0)
    and keyless and unknown-key clients keep handshaking, an allowed producer's every message
    is acknowledged; the log holds exactly the allowed messages, the broker counted every
    refusal and is still serving. Bounded by counts: how fast is the bench's to say."""
    broker, alice = secured
    admin = security.admin_credentials(tmp_path)
    eve = credentials.save(credentials.create("eve"), tmp_path / "eve.key")
    allow_list.allow(zk_client, "eve", credentials.load(eve).public_key)
    AclStore(zk_client).add("eve", [Rule("produce", "topic", "clicks")])
    pool = BrokerPool(zk, credentials=str(eve))
    conn = pool.connection("clicks", 0)        # handshaken while eve was allowed
    push_endpoint = pool.leader("clicks", 0).produce_endpoint
    pushed = pool.context.socket(zmq.PUSH)
    authenticator.apply(pushed, pool._curve)
    handshake = Handshake(pushed, push_endpoint, has_key=True)
    pushed.connect(push_endpoint)
    handshake.wait(10_000)     # in before the revoke: its sets are refused by the loop, counted
    handshake.close()
    allow_list.revoke(zk_client, "eve")
    refused_set = encode_set([(None, b"refused")])

    def eve_refused():
        frames = conn.call(lambda corr: protocol.encode_produce(corr, "clicks", 0, 1),
                           refused_set)
        try:
            protocol.decode_response(frames[0].buffer, protocol.PRODUCE_REPLY)
        except AuthenticationFailed:
            return True
        except AuthorizationFailed:     # the broker saw neither eve's rule nor her revoke yet
            return None
        return None
    wait_for(eve_refused, 10, what="the broker to see eve revoked")
    before = broker_errors(zk, admin).get("authentication_failed", 0)
    end_before = log_end(zk, admin)
    requests, handshakes, pushes = 3000, 20, 500
    answers = []

    def hammer_requests():
        sent = 0
        while sent < requests:
            for _ in range(min(200, requests - sent)):   # 200 in flight, all answered
                conn.send([protocol.encode_produce(conn.next_id(), "clicks", 0, 1),
                           refused_set])
                if sent < pushes:
                    pushed.send_multipart([protocol.encode_produce(0, "clicks", 0, 0),
                                           refused_set])
                sent += 1
            while len(answers) < sent:
                frames = conn.recv(20_000)
                assert frames is not None, "a refused request went unanswered"
                try:
                    protocol.decode_response(frames[0].buffer, protocol.PRODUCE_REPLY)
                    answers.append("accepted")
                except AuthenticationFailed:
                    answers.append("refused")

    def hammer_handshakes():
        context = zmq.Context()
        stranger = credentials.create("mallory")
        curve = credentials.curve_client_options(stranger, pool._curve[zmq.CURVE_SERVERKEY]
                                                 .decode())
        try:
            for i in range(handshakes):
                with pytest.raises(AuthenticationFailed):
                    Connection(context, broker.info["endpoint"], curve if i % 2 else None,
                               secured=True, handshake_timeout_ms=10_000)
        finally:
            context.term()
    hammers = [threading.Thread(target=hammer_requests),
               threading.Thread(target=hammer_handshakes)]
    for thread in hammers:
        thread.start()
    messages = [b"allowed-%d" % i for i in range(2000)]
    rounds = 10
    with Producer(zk, acks=1, credentials=alice, batch_size=20) as producer:
        for r in range(rounds):    # each round after another 300 refusals: interleaved by count
            wait_for(lambda: len(answers) >= r * requests // rounds, 60,
                     what=f"the hammer's round {r}")
            for value in messages[r * 200:(r + 1) * 200]:
                producer.send("clicks", value, partition=0)
            producer.flush()
        assert (producer.acked, producer.dropped) == (len(messages), 0)
    for thread in hammers:
        thread.join(120)
        assert not thread.is_alive()
    assert answers == ["refused"] * requests
    wait_for(lambda: broker_errors(zk, admin).get("authentication_failed", 0)
             >= before + requests + pushes + handshakes, 20,
             what="every refusal to be counted")
    consumer = SimpleConsumer("clicks", 0, end_before, zookeeper=zk, credentials=alice,
                              timeout_ms=5000)
    assert [m.value for m in itertools.islice(consumer, len(messages))] == messages
    consumer.close()
    assert log_end(zk, admin) == end_before + sum(len(encode_set([(None, v)])) for v in messages)
    assert broker.alive()
    pushed.close(linger=0)
    pool.close()
