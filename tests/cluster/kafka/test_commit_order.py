"""Kafka OffsetCommits of one group and partition land in ZooKeeper in the order they came:
committed never goes backwards because an older commit took longer to resolve.

A commit's offset is resolved to a message boundary first: in the coordinator's own log when
it leads the partition, else by asking the leader (broker/kafka/boundaries.py). When the
leadership moves to the coordinator between two commits, the older one waits on the old
leader while the newer one is resolved at once; it was written at once too, and the older one
overwrote it with a smaller offset once its answer came."""
import json
import os
import signal
import socket
import struct

from kafka.protocol.consumer.group import OffsetCommitRequest, OffsetCommitResponse

from broker import protocol
from clients.producer import Producer
from clients.simple_consumer import SimpleConsumer
from coordinator import offset_store_choice, partition_state, paths, topics
from coordinator import zk as zk_client
from coordinator.group_coordinator_choice import coordinator_of
from tests.helpers import RawClient, wait_for

TOPIC = "ordered"

_Topic = OffsetCommitRequest.OffsetCommitRequestTopic
_Partition = OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition


def commit_frame(group: str, correlation_id: int, offset: int) -> bytes:
    """A standalone (no generation) OffsetCommit v2 of ``offset`` for TOPIC/0, framed."""
    request = OffsetCommitRequest(
        version=2, group_id=group, generation_id_or_member_epoch=-1, member_id="",
        retention_time_ms=-1, topics=[_Topic(name=TOPIC, partitions=[_Partition(
            partition_index=0, committed_offset=offset, committed_metadata="")])])
    request.with_header(correlation_id=correlation_id, client_id="order-test")
    return bytes(request.encode(header=True, framed=True))


def read_exactly(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def commit_answers(sock, count: int) -> list[tuple[int, int]]:
    """``count`` OffsetCommit answers: (correlation id, the partition's error code) each."""
    out = []
    for _ in range(count):
        (size,) = struct.unpack(">i", read_exactly(sock, 4))
        response = OffsetCommitResponse.decode(read_exactly(sock, size), version=2, header=True)
        (topic,) = response.topics
        (part,) = topic.partitions
        out.append((response.header.correlation_id, part.error_code))
    return out


def api_versions_round_trip(endpoint: str) -> None:
    """An ApiVersions v0 request answered on a connection of its own: the broker's loop has
    taken in what was sent to it before."""
    host, port = endpoint.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(struct.pack(">ihhih", 10, 18, 0, 7, 0))
        (size,) = struct.unpack(">i", read_exactly(sock, 4))
        assert struct.unpack_from(">i", read_exactly(sock, size))[0] == 7


def metadata_row(endpoint: str, corr: int) -> dict:
    """The broker's native METADATA row of TOPIC/0 (its role, high watermark, log end)."""
    raw = RawClient(endpoint)
    try:
        reply = raw.request(protocol.encode_metadata(corr))
    finally:
        raw.close()
    rows = json.loads(protocol.decode_metadata_response(reply[0])[1])["partitions"]
    return next(row for row in rows if row["topic"] == TOPIC and row["partition"] == 0)


def test_an_older_commit_resolved_later_does_not_overwrite_a_newer_one(kafka_broker, zk):
    """The older commit is resolved on the leader, which is stopped (SIGSTOP) so it stays
    pending; the leadership moves to the coordinator (a state write, as the controller's),
    which resolves the newer commit in its own log and writes it at once; the old leader,
    resumed, answers the older lookup before it learns it lost the partition."""
    settings = dict(log={"visible_after_flush": False}, session_timeout_ms=20_000,
                    replica_lag_time_max_ms=60_000, replica_fetch_wait_max_ms=200,
                    leader_imbalance_check_ms=600_000)
    procs = [kafka_broker(broker_id=b, **settings) for b in range(2)]
    zkc = zk_client.connect(zk)
    try:
        topics.create(zkc, TOPIC, 1, replication_factor=2, min_insync_replicas=1)
        for proc in procs:
            proc.wait_hosting(TOPIC, 1)
        state = wait_for(lambda: (s := partition_state.read(zkc, TOPIC, 0)[0]) and
                         len(s.isr) == 2 and s, what="two replicas in sync")
        leader, coordinator = procs[state.leader], procs[1 - state.leader]
        group = next(g for g in (f"order-{i}" for i in range(100))
                     if coordinator_of(g, [0, 1]) == coordinator.broker_id)
        # the ZooKeeper store, whose writes follow the remote lookups (a new Kafka group is
        # recorded 'log' since issue 15, whose commits are produced to __consumer_offsets)
        offset_store_choice.flip(zkc, group, offset_store_choice.ZOOKEEPER)
        with Producer(zk, acks="all") as producer:
            for i in range(5):
                producer.send(TOPIC, b"v" * (10 + i), partition=0)
            producer.flush()
        consumer = SimpleConsumer(TOPIC, 0, zookeeper=zk, timeout_ms=10_000)
        got = []
        while len(got) < 5:
            got += consumer.fetch()
        consumer.close()
        end = got[-1].next_offset
        wait_for(lambda: metadata_row(coordinator.endpoint, 1)["high_watermark"] == end,
                 what="the follower to know the high watermark")
        host, port = coordinator.info["kafka_endpoint"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            def committed_first():
                sock.sendall(commit_frame(group, 1, got[1].offset + 1))
                return commit_answers(sock, 1) == [(1, 0)]
            wait_for(committed_first, what="the coordinator to coordinate the group")
            older, newer = got[2].offset + 1, got[3].offset + 1
            os.kill(leader.proc.pid, signal.SIGSTOP)
            try:
                sock.sendall(commit_frame(group, 2, older))     # its lookup waits on the leader
                api_versions_round_trip(coordinator.info["kafka_endpoint"])
                state, version = partition_state.read(zkc, TOPIC, 0)
                partition_state.write(zkc, TOPIC, 0, state.elected(
                    coordinator.broker_id, state.isr, state.controller_epoch), version)
                wait_for(lambda: metadata_row(coordinator.endpoint, 2)["role"] == "leader",
                         what="the coordinator to lead the partition")
                sock.sendall(commit_frame(group, 3, newer))     # resolved in its own log now
                api_versions_round_trip(coordinator.info["kafka_endpoint"])
            finally:
                os.kill(leader.proc.pid, signal.SIGCONT)
            answers = commit_answers(sock, 2)
        assert answers[1] == (3, 0), answers
        stored = int(zkc.get(paths.offset(group, TOPIC, 0))[0])
        assert stored == got[3].next_offset, (
            f"committed went back to {stored} (the older commit, answered {answers[0]}) after "
            f"{got[3].next_offset} (the newer one)")
    finally:
        zkc.stop()
        zkc.close()
