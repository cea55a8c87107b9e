"""Clients follow a partition's leader (issue 12): real ZooKeeper, two real broker processes.

A topic of one partition with R = 2 on both brokers (each opens its log). Leadership is moved
by writing the partition's state node with ``partition_state.write``, as the controller does (the
brokers' own controller elects on its own only when a broker goes; one test relies on that).
The follower copies the leader (broker/replica_fetcher.py); a test that moves leadership first
waits until the follower has every message (its METADATA row's end_offset), and what comes
after the move goes to the new leader only: the consumer can only have it from there, and
content shows that nothing was skipped or repeated.
"""
from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest

from broker import message, protocol
from clients import Consumer, Producer, SimpleConsumer, brokers as brokers_module
from coordinator import partition_state, topics, zk as zkmod
from coordinator.errors import BrokerUnavailable
from coordinator.partition_state import NO_LEADER, PartitionState
from tests.helpers import ROOT, RawClient, wait_for

TOPIC = "moves"


@pytest.fixture
def replicated(zk, brokers):
    """``TOPIC`` with one partition on both brokers; yields (leader, follower) processes."""
    client = zkmod.connect(zk)
    try:
        placement = topics.create(client, TOPIC, 1, replication_factor=2)
    finally:
        client.stop()
        client.close()
    for proc in brokers:
        proc.wait_hosting(TOPIC, 1)
    by_id = {proc.broker_id: proc for proc in brokers}
    first, second = placement.replicas[0]
    return by_id[first], by_id[second]


def move_leader(zk: str, to: int, isr=None) -> PartitionState:
    """Elect ``to`` (NO_LEADER: nobody) for partition 0, one epoch on, as the controller would."""
    client = zkmod.connect(zk)
    try:
        state, version = partition_state.read(client, TOPIC, 0)
        moved = state.elected(to, isr if isr is not None else (to,), state.controller_epoch + 1)
        partition_state.write(client, TOPIC, 0, moved, version)
        return moved
    finally:
        client.stop()
        client.close()


def log_values(proc, expected: int | None = None) -> list[bytes]:
    """The values in partition 0 of the broker's own log (a raw fetch at its endpoint), once
    ``expected`` of them are visible."""
    raw = RawClient(proc.endpoint)

    def fetched():
        frames = raw.request(protocol.encode_fetch(1, TOPIC, 0, 0, 1 << 20))
        protocol.decode_response(frames[0], protocol.FETCH_REPLY)
        values = [m.value for m in message.decode_set(frames[1], TOPIC, 0, 0)]
        return values if expected is None or len(values) >= expected else None
    try:
        return fetched() if expected is None else wait_for(
            fetched, 20, what=f"{expected} messages in broker {proc.broker_id}'s log")
    finally:
        raw.close()


def row(proc) -> dict:
    """Partition 0's METADATA row at the broker."""
    raw = RawClient(proc.endpoint)
    try:
        reply = raw.request(protocol.encode_metadata(1))
        return json.loads(protocol.decode_metadata_response(reply[0])[1])["partitions"][0]
    finally:
        raw.close()


def end_offset(proc) -> int:
    """The end of partition 0 of the broker's own log."""
    return row(proc)["end_offset"]


def wait_leading(proc) -> None:
    """Wait until the broker applied the state that makes it the leader."""
    wait_for(lambda: row(proc)["role"] == "leader", 20,
             what=f"broker {proc.broker_id} to lead")


def wait_copied(leader, follower) -> None:
    """Wait until the follower's log ends where the leader's does."""
    end = end_offset(leader)
    wait_for(lambda: end_offset(follower) == end, 20,
             what=f"broker {follower.broker_id} to copy the leader's log to {end}")


def raw_produce(proc, values: list[bytes]) -> None:
    """One acks=1 set of ``values``, unsequenced, straight to the broker's log."""
    raw = RawClient(proc.endpoint)
    try:
        frames = raw.request(protocol.encode_produce(1, TOPIC, 0, 1),
                             b"".join(message.encode(v) for v in values))
        protocol.decode_response(frames[0], protocol.PRODUCE_REPLY)
    finally:
        raw.close()


def values(n: int, start: int = 0) -> list[bytes]:
    return [b"m%03d" % i for i in range(start, start + n)]


def test_the_producer_follows_the_leader_to_its_new_broker(zk, replicated):
    leader, follower = replicated
    with Producer(zk, acks=1, batch_size=1, linger_ms=0) as producer:
        view = producer._pool.view
        assert view.leader(TOPIC, 0).broker_id == leader.broker_id
        for value in values(5):
            producer.send(TOPIC, value, partition=0)
        producer.flush()
        wait_copied(leader, follower)
        move_leader(zk, follower.broker_id, (follower.broker_id, leader.broker_id))
        wait_for(lambda: view.leader(TOPIC, 0).broker_id == follower.broker_id, 10,
                 what="the producer's view to follow the leader")
        for value in values(5, 5):
            producer.send(TOPIC, value, partition=0)
        producer.flush()
        assert producer.acked == 10
    assert log_values(follower, 10) == values(10)
    wait_copied(follower, leader)


def test_batches_sent_while_the_leader_is_down_go_to_the_leader_the_controller_elects(
        zk, replicated):
    """The brokers' controller elects the follower when the leader stops; batches sent in
    between (refused or timed out at the stopped broker, or held for want of a leader) go to
    it, in order, once the view follows."""
    leader, follower = replicated
    with Producer(zk, acks=1, batch_size=1, linger_ms=0, retries=1000) as producer:
        view = producer._pool.view
        assert view.leader(TOPIC, 0).broker_id == leader.broker_id
        epoch = view.state(TOPIC, 0).leader_epoch
        leader.stop()
        for value in values(3):
            producer.send(TOPIC, value, partition=0)
        producer.flush()
        assert producer.acked == 3
        state = view.state(TOPIC, 0)
        assert state.leader == follower.broker_id and state.leader_epoch > epoch
    assert log_values(follower, 3) == values(3)


def test_no_leader_is_a_line_naming_the_in_sync_replicas(zk, replicated):
    leader, follower = replicated
    move_leader(zk, NO_LEADER, (leader.broker_id,))
    with SimpleConsumer(TOPIC, 0, offset=0, zookeeper=zk) as consumer:
        with pytest.raises(BrokerUnavailable) as refused:
            consumer._pool.leader(TOPIC, 0)
        assert str(refused.value) == (f"no leader for {TOPIC}/0: its in-sync replicas "
                                      f"[{leader.broker_id}] are down")
        assert consumer._pool.available_partitions(TOPIC) == ()


def test_a_simple_consumer_continues_at_its_offset_on_the_new_leader(zk, replicated):
    leader, follower = replicated
    raw_produce(leader, values(10))
    wait_copied(leader, follower)
    log_values(leader, 10)      # below the high watermark and flushed: consumers see them
    with SimpleConsumer(TOPIC, 0, offset="earliest", zookeeper=zk, max_wait_ms=100) as consumer:
        got = consumer.fetch()
        assert [m.value for m in got] == values(10)
        position = consumer.position
        move_leader(zk, follower.broker_id)
        wait_for(lambda: consumer._pool.leader(TOPIC, 0).broker_id == follower.broker_id, 10,
                 what="the consumer's view to follow the leader")
        wait_leading(follower)
        raw_produce(follower, values(10, 10))
        log_values(follower, 20)
        more = wait_for(consumer.fetch, 20, what="the messages after the move")
        assert more[0].offset == position
        assert [m.value for m in more] == values(10, 10)


def test_a_group_consumer_continues_at_its_position_on_the_new_leader(zk, replicated):
    leader, follower = replicated
    raw_produce(leader, values(20))
    wait_copied(leader, follower)
    log_values(leader, 20)
    # A fetch parks at the old leader for up to max_wait_ms, which the broker bounds by its
    # max_wait_ms_limit (30 s, more than the 20 s waited for the tail below): the tail arrives
    # in time only because the move sends the parked fetch to the new leader at once.
    consumer = Consumer([TOPIC], "followers", zk, max_wait_ms=60_000, auto_commit_ms=None)
    try:
        seen = []
        wait_for(lambda: seen.extend(consumer.poll(200)) or len(seen) >= 20, 30,
                 what="the first 20 messages")
        assert consumer._pool.leader(TOPIC, 0).broker_id == leader.broker_id
        assert consumer.poll(200) == [] and consumer._fetcher.in_flight() == {(TOPIC, 0)}
        move_leader(zk, follower.broker_id)
        wait_for(lambda: consumer._pool.leader(TOPIC, 0).broker_id == follower.broker_id, 10,
                 what="the consumer's view to follow the leader")
        wait_leading(follower)
        raw_produce(follower, values(20, 20))
        wait_for(lambda: seen.extend(consumer.poll(200)) or len(seen) >= 40, 20,
                 what="the 20 messages produced to the new leader")
        assert [m.value for m in seen] == values(40)
        offsets = [m.offset for m in seen]
        assert all(a.next_offset == b.offset for a, b in zip(seen, seen[1:])), offsets
    finally:
        consumer.close()


def sluice(*args, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_sluice_produce_acks_all_round_trip(zk, quick_broker):
    client = zkmod.connect(zk)
    try:
        topics.create(client, "single", 1)
    finally:
        client.stop()
        client.close()
    quick_broker.wait_hosting("single", 1)
    out = sluice("produce", "single", "--acks", "all", "--json", "--zookeeper", zk,
                 stdin="one\ntwo\nthree\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"topic": "single", "messages": 3, "acks": "all",
                                      "acked": 3, "dropped": 0, "skipped": 0,
                                      "skipped_lines": []}
    out = sluice("consume", "single", "--partition", "0", "--offset", "earliest",
                 "--timeout-ms", "2000", "--zookeeper", zk)
    assert out.returncode == 0 and out.stdout.split() == ["one", "two", "three"], out
    refused = sluice("produce", "single", "--acks", "2", "--zookeeper", zk)
    assert refused.returncode == 2 and "expected 0, 1 or all" in refused.stderr


def test_the_pool_module_examples_hold():
    assert doctest.testmod(brokers_module).failed == 0


@pytest.mark.parametrize("acks", ["all", -1])
def test_acks_all_goes_on_the_wire_as_acks_all_and_is_answered(zk, quick_broker, acks):
    client = zkmod.connect(zk)
    try:
        topics.create(client, "single", 1)
    finally:
        client.stop()
        client.close()
    quick_broker.wait_hosting("single", 1)
    with Producer(zk, acks=acks, batch_size=2, linger_ms=0) as producer:
        for value in values(4):
            producer.send("single", value, partition=0)
        producer.flush()
        assert (producer.acks, producer.acked) == ("all", 4)
        _, fields = producer._request_routes[("single", 0)]
        header = (protocol.API.pack(protocol.Api.PRODUCE, 1) + fields
                  + protocol.SEQUENCE_FIELDS.pack(producer.producer_id, 0, 0))
        assert protocol.decode_request(header).acks == protocol.ACKS_ALL
