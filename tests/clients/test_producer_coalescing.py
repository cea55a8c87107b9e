"""The batch-1 acks=0 producer's sender (clients/coalescer.py) against a real broker: a lone
message leaves by itself, messages that wait while the sender is busy leave in one request,
every message arrives once and in order, and what cannot be queued is counted as dropped."""
import random

import pytest

from broker import message, protocol
from clients import Producer
from clients import coalescer as coalescers
from clients import partitioner as partitioners
from tests.helpers import BrokerProcess, RawClient, create_topic, wait_for

TOPIC = "lone"


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, log={"visible_after_flush": False}).start()
    create_topic(zk, TOPIC, 2, [proc])
    yield proc
    assert proc.stop() == 0


@pytest.fixture
def raw(broker):
    client = RawClient(broker.endpoint)
    yield client
    client.close()


def values(raw, partition=0):
    """Every value stored in the partition, in log order."""
    data = b""
    while True:
        header, *rest = raw.request(protocol.encode_fetch(2, TOPIC, partition, len(data), 1 << 20))
        protocol.decode_response(header, protocol.FETCH_REPLY)
        if not rest or not rest[0]:
            return [m.value for m in message.decode_set(data, TOPIC, partition, 0)]
        data += rest[0]


def test_a_lone_send_reaches_the_broker_without_flush_or_other_sends(zk, raw):
    producer = Producer(zk, batch_size=1, acks=0)
    try:
        producer.send(TOPIC, b"alone", partition=0)
        wait_for(lambda: values(raw) == [b"alone"], what="the lone message in the log")
        assert (producer.sent, producer.dropped, producer._coalescer.requests) == (1, 0, 1)
    finally:
        producer.close()


def test_many_sends_arrive_complete_and_in_order(zk, raw):
    with Producer(zk, batch_size=1, acks=0) as producer:
        for i in range(3000):
            producer.send(TOPIC, b"%d" % i, partition=i % 2)
    assert producer.dropped == 0
    for partition in (0, 1):
        expected = [b"%d" % i for i in range(partition, 3000, 2)]
        wait_for(lambda: len(values(raw, partition)) == 1500, what="every message")
        assert values(raw, partition) == expected


def test_messages_that_wait_while_the_sender_is_busy_leave_in_one_request(zk, raw):
    with Producer(zk, batch_size=1, acks=0) as producer:
        producer.send(TOPIC, b"first", partition=0)
        wait_for(lambda: values(raw) == [b"first"], what="the first message")
        with producer._coalescer._sending:       # the sender is busy with an earlier request
            for i in range(100):
                producer.send(TOPIC, b"%d" % i, partition=0)
        wait_for(lambda: len(values(raw)) == 101, what="the waiting messages")
        assert producer._coalescer.requests == 2
    assert values(raw) == [b"first"] + [b"%d" % i for i in range(100)]


def test_a_message_that_finds_its_queue_full_for_the_request_timeout_is_dropped(zk, raw):
    with Producer(zk, batch_size=1, acks=0, request_timeout_ms=200) as producer:
        producer.send(TOPIC, b"opens the queue", partition=1)
        wait_for(lambda: values(raw, 1) == [b"opens the queue"], what="the first message")
        with producer._coalescer._sending:
            for i in range(coalescers.QUEUE_BOUND + 1):
                producer.send(TOPIC, b"%d" % i, partition=1)
            assert producer.dropped == 1
    assert (producer.sent, producer.dropped) == (coalescers.QUEUE_BOUND + 2, 1)
    wait_for(lambda: len(values(raw, 1)) == coalescers.QUEUE_BOUND + 1, what="the queued ones")
    assert values(raw, 1)[1:] == [b"%d" % i for i in range(coalescers.QUEUE_BOUND)]


def test_unkeyed_sends_stick_to_a_partition_until_the_sender_takes_its_queue(zk, tmp_path):
    """Sticky per coalesced frame (KIP-480's sticky partitioner, the batch being what the
    sender takes): messages that pile up while the sender is busy go to one partition and
    leave as one PRODUCE_SETS request, and the next pile goes to a partition picked anew."""
    partitions, rounds, per_round = 16, 6, 100
    proc = BrokerProcess(zk, tmp_path, 0, log={"visible_after_flush": False}).start()
    raw = RawClient(proc.endpoint)
    try:
        create_topic(zk, TOPIC, partitions, [proc])
        with Producer(zk, batch_size=1, acks=0,
                      partitioner=partitioners.RandomPartitioner(random.Random(16))) as producer:
            for p in range(partitions):       # opens every queue: put() opens one under the lock
                producer.send(TOPIC, b"open", partition=p)
            wait_for(lambda: producer._coalescer.sent == partitions, what="the opening sends")
            opening = producer._coalescer.requests
            for r in range(rounds):
                with producer._coalescer._sending:      # the sender is busy: messages pile up
                    for i in range(per_round):
                        producer.send(TOPIC, b"%d.%d" % (r, i))
                done = partitions + (r + 1) * per_round
                wait_for(lambda: producer._coalescer.sent == done, what="the round taken")
            assert producer._coalescer.requests - opening == rounds     # one frame per pile
        assert producer.dropped == 0
        total = partitions + rounds * per_round
        wait_for(lambda: sum(len(values(raw, p)) for p in range(partitions)) == total,
                 what="every message in the logs")
        piles = {}
        for p in range(partitions):
            stored = values(raw, p)[1:]
            for r in {v.split(b".")[0] for v in stored}:
                piles.setdefault(r, []).append(p)
            assert stored == sorted(stored, key=lambda v: tuple(map(int, v.split(b"."))))
        assert all(len(ps) == 1 for ps in piles.values()) and len(piles) == rounds
        assert len({ps[0] for ps in piles.values()}) > 1            # spread over the frames
    finally:
        raw.close()
        assert proc.stop() == 0
