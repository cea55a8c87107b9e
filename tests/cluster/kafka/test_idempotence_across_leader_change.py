"""An idempotent producer's retry that straddles a leader change must not be written twice
(issue 13 item 6: "client retries never duplicate a message"). The batch is kafka-python's
(its record builder and protocol classes): written at the leader with acks=all (so every
replica has it), the leader SIGKILLed, the same batch sent to the new leader as a client
whose answer was lost resends it. Kafka's new leader knows the producer's last sequence from
the replicated batches and answers it as the duplicate it is.

sluice's followers learn the sequenced sets with each replica fetch (frame 3) and keep them
in the same per-log record the leader has (broker/producer_state.py), so a new leader knows
them too. Before that record existed this test failed: the retry was written again.

A retry whose original is written but not yet on every in-sync replica (its acks=all answer
timed out) is a duplicate too, and its answer must wait for the ISR as the original's did:
"written" before that is an acknowledgement a leader's death can take back. Before the
sequence table kept each batch's end offset, the retry was answered at once."""
import os
import signal

from kafka import KafkaConsumer, TopicPartition
from kafka.net.compat import KafkaNetClient
from kafka.protocol.producer import InitProducerIdRequest, ProduceRequest
from kafka.record.default_records import DefaultRecordBatchBuilder

from broker.kafka import errors
from coordinator import partition_state, topics
from coordinator import zk as zk_client
from tests.helpers import BrokerProcess, wait_for

TOPIC = "once"


def batch(producer_id: int, base_sequence: int, values: list[bytes]) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=producer_id, producer_epoch=0,
                                        base_sequence=base_sequence, batch_size=1 << 20)
    for i, value in enumerate(values):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=None, value=value, headers=[])
    return bytes(builder.build())


def produce(client: KafkaNetClient, node: int, records: bytes):
    """One acks=all Produce of ``records`` to partition 0: ``(error_code, base_offset)``."""
    request = ProduceRequest(version=8, transactional_id=None, acks=-1, timeout_ms=10_000,
                             topic_data=[ProduceRequest.TopicProduceData(
                                 name=TOPIC, partition_data=[
                                     ProduceRequest.TopicProduceData.PartitionProduceData(
                                         index=0, records=records)])])
    (topic,) = client.send_and_receive(node, request).responses
    (part,) = topic.partition_responses
    return part.error_code, part.base_offset


def test_a_retry_sent_to_the_new_leader_is_not_written_twice(zk, tmp_path):
    procs = {b: BrokerProcess(zk, tmp_path, b, kafka_port=0, log={"visible_after_flush": False},
                              replica_lag_time_max_ms=1500, replica_fetch_wait_max_ms=200,
                              leader_imbalance_check_ms=600_000).start() for b in range(3)}
    zkc = zk_client.connect(zk)
    clients = []

    def connect(node: int) -> KafkaNetClient:
        client = KafkaNetClient(bootstrap_servers=procs[node].info["kafka_endpoint"],
                                request_timeout_ms=15_000)
        client._manager.bootstrap(timeout_ms=15_000)
        clients.append(client)
        return client
    try:
        topics.create(zkc, TOPIC, 1, replication_factor=3, min_insync_replicas=2)
        for proc in procs.values():
            proc.wait_hosting(TOPIC, 1)
        leader = wait_for(lambda: (s := partition_state.read(zkc, TOPIC, 0)) and
                          len(s[0].isr) == 3 and s[0], what="three replicas in sync").leader
        first = connect(leader)
        init = first.send_and_receive(leader, InitProducerIdRequest(
            version=1, transactional_id=None, transaction_timeout_ms=60_000))
        assert init.error_code == 0
        pid = init.producer_id
        retried = batch(pid, 0, [b"one", b"two", b"three"])
        assert produce(first, leader, retried)[0] == 0
        procs[leader].kill()
        new = wait_for(lambda: (s := partition_state.read(zkc, TOPIC, 0)[0]).leader
                       not in (leader, -1) and s, timeout=60, what="a new leader").leader
        second = connect(new)
        code, _ = produce(second, new, retried)          # the retry whose answer was lost
        assert code == 0
        assert produce(second, new, batch(pid, 3, [b"four"]))[0] == 0
        consumer = KafkaConsumer(bootstrap_servers=procs[new].info["kafka_endpoint"],
                                 enable_auto_commit=False, consumer_timeout_ms=10_000)
        try:
            consumer.assign([TopicPartition(TOPIC, 0)])
            consumer.seek_to_beginning()
            values = []
            for record in consumer:
                values.append(record.value)
                if record.value == b"four":
                    break
        finally:
            consumer.close()
        assert values == [b"one", b"two", b"three", b"four"]
    finally:
        for client in clients:
            client.close()
        for proc in procs.values():
            proc.stop()
        zkc.stop()
        zkc.close()


def test_a_retry_of_a_write_not_yet_on_every_isr_member_waits_for_them(zk, tmp_path):
    """The follower is stopped (SIGSTOP) but stays in the ISR (replica_lag_time_max_ms of a
    minute): the batch is written at the leader and its answer times out (ack_timeout_ms);
    the client's retry of it must time out as well, not be told it is written; once the
    follower runs again the retry is answered with the original's offset, written once."""
    procs = {b: BrokerProcess(zk, tmp_path, b, kafka_port=0, log={"visible_after_flush": False},
                              replica_lag_time_max_ms=60_000, replica_fetch_wait_max_ms=200,
                              session_timeout_ms=20_000, ack_timeout_ms=300,
                              leader_imbalance_check_ms=600_000).start() for b in range(2)}
    zkc = zk_client.connect(zk)
    client = None
    stopped = None
    try:
        topics.create(zkc, TOPIC, 1, replication_factor=2, min_insync_replicas=2)
        for proc in procs.values():
            proc.wait_hosting(TOPIC, 1)
        state = wait_for(lambda: (s := partition_state.read(zkc, TOPIC, 0)[0]) and
                         len(s.isr) == 2 and s, what="two replicas in sync")
        leader = state.leader
        stopped = procs[1 - leader]
        client = KafkaNetClient(bootstrap_servers=procs[leader].info["kafka_endpoint"],
                                request_timeout_ms=15_000)
        client._manager.bootstrap(timeout_ms=15_000)
        init = client.send_and_receive(leader, InitProducerIdRequest(
            version=1, transactional_id=None, transaction_timeout_ms=60_000))
        assert init.error_code == 0
        pid = init.producer_id
        assert produce(client, leader, batch(pid, 0, [b"one"])) == (0, 0)
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        retried = batch(pid, 1, [b"two", b"three"])
        assert produce(client, leader, retried)[0] == errors.REQUEST_TIMED_OUT
        code, _ = produce(client, leader, retried)
        assert code == errors.REQUEST_TIMED_OUT, \
            "a retry was acknowledged before every in-sync replica had its original"
        os.kill(stopped.proc.pid, signal.SIGCONT)
        code, base = wait_for(lambda: (r := produce(client, leader, retried))[0] == 0 and r,
                              what="the retry's answer once the follower has the batch")
        assert partition_state.read(zkc, TOPIC, 0)[0].isr == state.isr
        assert produce(client, leader, batch(pid, 3, [b"four"]))[0] == 0
        consumer = KafkaConsumer(bootstrap_servers=procs[leader].info["kafka_endpoint"],
                                 enable_auto_commit=False, consumer_timeout_ms=10_000)
        try:
            consumer.assign([TopicPartition(TOPIC, 0)])
            consumer.seek_to_beginning()
            seen = []
            for record in consumer:
                seen.append((record.offset, record.value))
                if record.value == b"four":
                    break
        finally:
            consumer.close()
        assert [value for _, value in seen] == [b"one", b"two", b"three", b"four"]
        assert base == seen[1][0], "the retry is answered with its original's offset"
    finally:
        if stopped is not None and stopped.alive():
            os.kill(stopped.proc.pid, signal.SIGCONT)
        if client is not None:
            client.close()
        for proc in procs.values():
            proc.stop()
        zkc.stop()
        zkc.close()
