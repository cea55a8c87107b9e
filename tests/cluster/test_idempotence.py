"""Idempotent producers across a leader change and a broker restart (issue 13 item 6): real
broker processes, a real ZooKeeper, the native Producer, raw sequenced requests and
kafka-python with idempotence on.

A resend whose original the old leader appended and replicated (its answer lost, or refused
with NOT_LEADER while it waited for the ISR) reaches a new leader that holds the set: it must be
answered as a duplicate, never written twice. Counted by the ids in the values.
"""
import os
import signal
from collections import Counter

from kafka import KafkaProducer

from broker import message, protocol
from broker.protocol import ACKS_ALL
from clients import Producer
from coordinator import partition_state
from tests.cluster.test_replication import TOPIC, cluster_of, offsets  # noqa: F401 (fixture)
from tests.helpers import BrokerProcess, RawClient, create_topic, wait_for

PRODUCER = 0x1DE0_0000_0000_0001


def values_in(c, broker: int) -> list[bytes]:
    return [m.value for m in message.decode_set(c.log_bytes(broker), TOPIC, 0, 0)]


def move_leader(c, to: int, isr) -> None:
    state, version = partition_state.read(c.client, TOPIC, 0)
    partition_state.write(c.client, TOPIC, 0,
                          state.elected(to, tuple(isr), state.controller_epoch + 1), version)
    wait_for(lambda: c.row(to)["role"] == "leader", what=f"broker {to} to lead")


def sequenced(c, broker: int, sequence: int, first_unacked: int, value: bytes, acks=ACKS_ALL):
    c.corr += 1
    return c.raw(broker).request(
        protocol.encode_produce(c.corr, TOPIC, 0, acks, PRODUCER, sequence, first_unacked),
        message.encode_set([(None, value)]), timeout=30)


def test_a_resend_whose_answer_was_lost_is_a_duplicate_at_the_new_leader(cluster_of):
    c = cluster_of(lag_ms=60_000)
    old, new, other = c.replicas
    first = offsets(sequenced(c, old, 0, 0, b"id-0"))
    second = offsets(sequenced(c, old, 1, 0, b"id-1"))
    c.wait_copied(old)
    move_leader(c, new, (new, old, other))
    # the answer to sequence 1 was lost: the producer sends it again, to the new leader
    assert offsets(sequenced(c, new, 1, 1, b"id-1")) == second
    assert offsets(sequenced(c, new, 0, 0, b"id-0")) == first
    third = offsets(sequenced(c, new, 2, 2, b"id-2"))
    assert third[0] == second[1]
    c.wait_copied(new)
    assert values_in(c, new) == [b"id-0", b"id-1", b"id-2"]


def test_the_producer_resending_to_the_new_leader_writes_nothing_twice(cluster_of):
    """The acks=all request waits at the leader for a paused ISR member while the other
    follower copies it; the leadership moves to that follower; the old leader answers
    NOT_LEADER and the producer resends to the new one, which holds the set already."""
    c = cluster_of(lag_ms=60_000, session_timeout_ms=30_000)
    old, new, paused = c.replicas
    offsets(c.produce(old, [b"before"]))
    c.wait_copied(old)
    os.kill(c.procs[paused].proc.pid, signal.SIGSTOP)
    with Producer(c.zk, acks="all", idempotent=True, batch_size=1, linger_ms=0, retries=100,
                  retry_backoff_ms=50) as producer:
        end = c.row(old)["end_offset"]
        producer.send(TOPIC, b"id-0", partition=0)
        wait_for(lambda: c.row(new)["end_offset"] > end, what="the follower to copy the set")
        move_leader(c, new, (new, old))
        producer.flush()
        for i in range(1, 4):
            producer.send(TOPIC, b"id-%d" % i, partition=0)
        producer.flush()
        assert producer.acked == 4
    os.kill(c.procs[paused].proc.pid, signal.SIGCONT)
    c.wait_copied(new)
    counts = Counter(values_in(c, new))
    assert counts == {b"before": 1, b"id-0": 1, b"id-1": 1, b"id-2": 1, b"id-3": 1}, counts


def test_kafka_idempotent_retries_to_the_new_leader_write_nothing_twice(cluster_of):
    c = cluster_of(lag_ms=60_000, session_timeout_ms=30_000, kafka_port=0)
    old, new, paused = c.replicas
    offsets(c.produce(old, [b"before"]))
    c.wait_copied(old)
    os.kill(c.procs[paused].proc.pid, signal.SIGSTOP)
    bootstrap = ",".join(c.procs[b].info["kafka_endpoint"] for b in (old, new))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             retries=100, retry_backoff_ms=50, request_timeout_ms=30_000,
                             linger_ms=0)
    try:
        end = c.row(old)["end_offset"]
        future = producer.send(TOPIC, b"id-0", partition=0)
        wait_for(lambda: c.row(new)["end_offset"] > end, what="the follower to copy the batch")
        move_leader(c, new, (new, old))
        future.get(60)
        for i in range(1, 4):
            producer.send(TOPIC, b"id-%d" % i, partition=0).get(60)
    finally:
        producer.close(10)
    os.kill(c.procs[paused].proc.pid, signal.SIGCONT)
    c.wait_copied(new)
    counts = Counter(values_in(c, new))
    assert counts == {b"before": 1, b"id-0": 1, b"id-1": 1, b"id-2": 1, b"id-3": 1}, counts


def _raw_sequenced(raw: RawClient, sequence: int, first_unacked: int, value: bytes,
                   topic: str = "restarts"):
    reply = raw.request(protocol.encode_produce(sequence + 1, topic, 0, 1, PRODUCER, sequence,
                                                first_unacked), message.encode(value))
    return protocol.decode_response(reply[0], protocol.PRODUCE_REPLY)[1]


def _stored(endpoint: str, topic: str = "restarts") -> list[bytes]:
    raw = RawClient(endpoint)
    try:
        header, *rest = raw.request(protocol.encode_fetch(99, topic, 0, 0, 1 << 20))
        protocol.decode_response(header, protocol.FETCH_REPLY)
        return [m.value for m in message.decode_set(rest[0] if rest else b"", topic, 0, 0)]
    finally:
        raw.close()


def test_a_resend_after_a_broker_restart_is_a_duplicate(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"visible_after_flush": False}).start()
    try:
        create_topic(zk, "restarts", 1, [broker])
        raw = RawClient(broker.endpoint)
        try:
            first = _raw_sequenced(raw, 0, 0, b"id-0")
            second = _raw_sequenced(raw, 1, 0, b"id-1")
        finally:
            raw.close()
        assert broker.stop() == 0
        broker.start()
        broker.wait_hosting("restarts", 1)
        raw = RawClient(broker.endpoint)
        try:
            wait_for(lambda: raw.request(protocol.encode_metadata(1)), what="the broker")
            assert _raw_sequenced(raw, 1, 1, b"id-1") == second
            assert _raw_sequenced(raw, 0, 0, b"id-0") == first
            assert _raw_sequenced(raw, 2, 2, b"id-2")[0] == second[1]
        finally:
            raw.close()
        assert _stored(broker.endpoint) == [b"id-0", b"id-1", b"id-2"]
    finally:
        assert broker.stop() == 0, broker.log_text()[-3000:]


def test_a_set_cut_by_leader_epoch_is_forgotten_so_its_resend_is_written(cluster_of):
    """A paused leader appends a sequenced set after a new leader was elected; returning, it
    truncates the set. Leading again later, it must append the resend, not answer it with
    offsets that now hold another message."""
    c = cluster_of(lag_ms=60_000)
    old, new, other = c.replicas
    offsets(c.produce(old, [b"before"]))
    c.wait_copied(old)
    os.kill(c.procs[old].proc.pid, signal.SIGSTOP)
    wait_for(lambda: c.state().leader == new and old not in c.state().isr,
             what="the controller to elect a new leader once the paused one's session ended")
    wait_for(lambda: c.row(new)["role"] == "leader" and c.row(other)["leader"] == new,
             what="the new leader and its follower")
    c.corr += 1
    c.raw(old).socket.send_multipart([     # waits in the paused broker's socket
        protocol.encode_produce(c.corr, TOPIC, 0, ACKS_ALL, PRODUCER, 0, 0),
        message.encode_set([(None, b"id-0 zombie")])])
    os.kill(c.procs[old].proc.pid, signal.SIGCONT)
    assert c.raw(old).reply(timeout=60) is not None
    offsets(c.produce(new, [b"after"]))
    wait_for(lambda: set(c.state().isr) == set(c.replicas), what="the old leader to rejoin")
    c.wait_copied(new)
    assert values_in(c, old) == [b"before", b"after"], "the zombie's set was cut"
    move_leader(c, old, c.replicas)
    end = c.row(old)["end_offset"]
    assert offsets(sequenced(c, old, 0, 0, b"id-0")) == (end, end + len(message.encode_set(
        [(None, b"id-0")]))), "the resend was answered with the offsets of the cut set"
    c.wait_copied(old)
    assert values_in(c, old) == [b"before", b"after", b"id-0"]
