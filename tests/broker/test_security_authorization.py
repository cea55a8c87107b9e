"""Authorization on the wire, against a real secured broker process: a principal that got in
(its key is on the allow list) but has no rule is refused each request type with
AUTHORIZATION_FAILED naming the operation and resource (never a timeout); the refused sets
reach no log; a rule change applies without a restart; METADATA shows only what it may
describe; the clients raise the typed error. With security off everything is allowed."""
from __future__ import annotations

import json

import pytest

from broker import protocol
from broker.message import encode_set
from cluster.supervision import security
from coordinator import allow_list, credentials, topics
from coordinator.acl_store import AclStore
from coordinator.authorizer import Rule
from coordinator.errors import AuthorizationFailed, ErrorCode
from tests.helpers import BrokerProcess, RawClient, create_topic, push, wait_for

TOPIC = "orders"


@pytest.fixture
def secured(zk, zk_client, tmp_path):
    """A secured broker hosting orders/0; bob's key is allowed and has no rule. Yields the
    broker, bob's key file, bob's CURVE options and the operator's key file."""
    configs = security.prepare(tmp_path, zk_client, [0], None)
    bob = credentials.create("bob")
    path = credentials.save(bob, tmp_path / "bob.key")
    allow_list.allow(zk_client, "bob", bob.public_key)
    broker = BrokerProcess(zk, tmp_path, 0, security=vars(configs[0]),
                           log={"flush_messages": 1}).start()
    topics.create(zk_client, TOPIC, partitions=1)
    broker.wait_hosting(TOPIC, 1)
    curve = credentials.curve_client_options(bob, allow_list.server_key(zk_client))
    yield broker, str(path), curve, security.admin_credentials(tmp_path)
    broker.stop()


def refused(frames, fields=None) -> AuthorizationFailed:
    assert frames is not None, "no answer: a refusal must be an answer, not a timeout"
    with pytest.raises(AuthorizationFailed) as exc:
        protocol.decode_response(frames[0], fields)
    assert exc.value.code is ErrorCode.AUTHORIZATION_FAILED
    return exc.value


def admin_view(zk, admin) -> tuple[int, dict]:
    """orders/0's log end and the broker's error counts, asked as the operator."""
    from clients.brokers import BrokerPool
    pool = BrokerPool(zk, credentials=admin)
    try:
        end = pool.offset(TOPIC, 0, protocol.LATEST)
        frames = pool.call(TOPIC, 0, protocol.encode_metadata)
        return end, json.loads(protocol.decode_metadata_response(frames[0].buffer)[1])["errors"]
    finally:
        pool.close()


def test_every_request_type_is_refused_and_nothing_reaches_the_log(zk, secured):
    """On the wire, then through the Producer (acks=1) and the SimpleConsumer, which raise
    AuthorizationFailed at once."""
    from clients import Producer
    from clients.simple_consumer import SimpleConsumer
    broker, bob, curve, admin = secured
    raw = RawClient(broker.endpoint, curve)
    try:
        data = encode_set([(None, b"x" * 10)])
        for acks in (1, protocol.ACKS_ALL):
            error = refused(raw.request(protocol.encode_produce(1, TOPIC, 0, acks), data),
                            protocol.PRODUCE_REPLY)
            assert "principal 'bob' may not produce on topic 'orders'" in str(error)
        error = refused(raw.request(protocol.encode_fetch(2, TOPIC, 0, 0, 1 << 20)),
                        protocol.FETCH_REPLY)
        assert "consume on topic 'orders'" in str(error)
        error = refused(raw.request(protocol.encode_offsets(3, TOPIC, 0, protocol.LATEST)),
                        protocol.OFFSETS_REPLY)
        assert "describe on topic 'orders'" in str(error)
        error = refused(raw.request(protocol.encode_fetch(4, TOPIC, 0, 0, 1 << 20,
                                                          replica_id=7, leader_epoch=0)),
                        protocol.FETCH_REPLY)
        assert "only brokers replicate" in str(error)
        refused(raw.request(protocol.encode_offset_for_epoch(5, TOPIC, 0, 0)),
                protocol.EPOCH_ENTRY)
        _, before = admin_view(zk, admin)
        for _ in range(3):
            push(broker.produce_endpoint, protocol.encode_produce(0, TOPIC, 0, 0), data,
                 curve=curve)
        wait_for(lambda: admin_view(zk, admin)[1].get("authorization_failed", 0)
                 >= before.get("authorization_failed", 0) + 3,
                 what="the 3 acks=0 refusals to be counted")
    finally:
        raw.close()
    producer = Producer(zk, acks=1, credentials=bob)
    try:
        with pytest.raises(AuthorizationFailed, match="produce on topic 'orders'"):
            producer.send(TOPIC, b"v", partition=0)
            producer.flush(timeout_s=30)
    finally:
        producer.close()
    consumer = SimpleConsumer(TOPIC, 0, 0, zookeeper=zk, credentials=bob)
    try:
        with pytest.raises(AuthorizationFailed, match="consume on topic 'orders'"):
            next(iter(consumer))
    finally:
        consumer.close()
    assert admin_view(zk, admin)[0] == 0
    assert broker.alive()


def test_rule_changes_apply_without_a_restart_and_metadata_shows_what_may_be_described(
        zk, zk_client, secured):
    broker, _, curve, _ = secured
    store = AclStore(zk_client)
    raw = RawClient(broker.endpoint, curve)
    data = encode_set([(None, b"y")])

    def shown():
        _, text = protocol.decode_metadata_response(raw.request(protocol.encode_metadata(1))[0])
        return sorted(row["topic"] for row in json.loads(text)["partitions"])

    def produce():
        frames = raw.request(protocol.encode_produce(1, TOPIC, 0, 1), data)
        try:
            return protocol.decode_response(frames[0], protocol.PRODUCE_REPLY)
        except AuthorizationFailed:
            return None
    try:
        assert produce() is None and shown() == []
        store.add("bob", [Rule("produce", "topic-prefix", "ord")])
        assert wait_for(produce, what="the rule to reach the broker")[1] == (0, len(data))
        assert shown() == [TOPIC]          # produce implies describe
        store.remove("bob", [Rule("produce", "topic-prefix", "ord")])
        wait_for(lambda: produce() is None, what="the removal to reach the broker")
        assert shown() == []
    finally:
        raw.close()


def test_security_off_allows_everything_as_before(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0).start()
    try:
        create_topic(zk, TOPIC, 1)
        broker.wait_hosting(TOPIC, 1)
        raw = RawClient(broker.endpoint)
        try:
            data = encode_set([(None, b"z" * 5)])
            reply = wait_for(lambda: _produced(raw, data), what="the produce to succeed")
            assert reply == (0, len(data))
            text = protocol.decode_metadata_response(raw.request(protocol.encode_metadata(9))[0])
            assert [row["topic"] for row in json.loads(text[1])["partitions"]] == [TOPIC]
        finally:
            raw.close()
    finally:
        broker.stop()


def _produced(raw, data):
    try:
        return protocol.decode_response(raw.request(protocol.encode_produce(1, TOPIC, 0, 1),
                                                    data)[0], protocol.PRODUCE_REPLY)[1]
    except protocol.SluiceError as exc:
        if exc.retriable:
            return None
        raise


def test_coalesced_acks0_sets_go_over_curve_and_a_refused_principals_reach_no_log(zk, secured):
    """A batch-1 acks=0 producer's PRODUCE_SETS request on the secured produce socket: the
    operator's sets are stored; bob's (no rule) are refused, one count per request, none
    stored."""
    from broker.message import HEADER_SIZE
    from clients import Producer
    broker, bob, _, admin = secured
    end, before = admin_view(zk, admin)
    for key in (bob, admin):
        with Producer(zk, batch_size=1, acks=0, credentials=key) as producer:
            producer.send(TOPIC, b"alone", partition=0)
            wait_for(lambda: producer._coalescer.requests == 1, what="the lone message sent")
            with producer._coalescer._sending:      # the sender is busy: these wait together
                for i in range(50):
                    producer.send(TOPIC, b"%02d" % i, partition=0)
        assert producer._coalescer.requests == 2 and producer.dropped == 0
    stored = end + 5 + HEADER_SIZE + 50 * (2 + HEADER_SIZE)
    wait_for(lambda: admin_view(zk, admin)[0] == stored, what="the operator's 51 messages")
    errors = wait_for(lambda: (e := admin_view(zk, admin)[1]).get("authorization_failed", 0)
                      == before.get("authorization_failed", 0) + 2 and e,
                      what="bob's 2 requests to be refused")
    assert admin_view(zk, admin)[0] == stored and "corrupt_message" not in errors
