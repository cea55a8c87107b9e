"""The producer's byte cap on a request (issue 10, hole 9): a set never goes over the producer's
``max_request_bytes``, a message bigger than that goes alone, one bigger than
``max_message_bytes`` is refused at send(), and MESSAGE_TOO_LARGE from a broker is not retried.

Sizes are judged on what the broker says it stored: its acknowledged base offsets and its log
end (METADATA) cut the partition into the sets it appended.
"""
from __future__ import annotations

import pytest

from broker import message, protocol
from clients import Producer
from clients.producer import split_set
from coordinator import topics, zk as zkmod
from tests.clients.test_producer_order import broker_metadata
from tests.helpers import BrokerProcess

TOPIC = "big"
MIB = 1 << 20


def start_broker(zookeeper, tmp_path, **log) -> BrokerProcess:
    broker = BrokerProcess(zookeeper, tmp_path, 0,
                           log={"visible_after_flush": False, **log}).start()
    client = zkmod.connect(zookeeper)
    try:
        topics.create(client, TOPIC, 1)
    finally:
        client.stop()
        client.close()
    broker.wait_hosting(TOPIC, 1)
    return broker


@pytest.fixture
def broker(zk, tmp_path):
    proc = start_broker(zk, tmp_path)
    yield proc
    proc.stop()


def stored_sets(broker: BrokerProcess, bases: list[int]) -> list[int]:
    """The byte size of each set the broker appended, from its acknowledged base offsets and
    its log end; they must tile the partition."""
    end = broker_metadata(broker)["partitions"][0]["end_offset"]
    cuts = sorted(bases) + [end]
    assert cuts[0] == 0
    return [b - a for a, b in zip(cuts, cuts[1:])]


def test_no_set_goes_over_max_request_bytes(zk, broker):
    bases, sizes = [], []

    def delivered(topic, partition, payload, base_offset, error):
        assert error is None
        bases.append(base_offset)
        sizes.append(len(payload))

    value = bytes(100_000)
    with Producer(zk, acks=1, batch_size=50, linger_ms=0, on_delivery=delivered) as producer:
        for _ in range(120):
            producer.send(TOPIC, value, partition=0)
    stored = stored_sets(broker, bases)
    assert sorted(stored) == sorted(sizes)
    assert max(stored) <= MIB, f"a set of {max(stored)} bytes went out"
    assert sum(stored) == 120 * (len(value) + message.HEADER_SIZE)
    # The cap (1 MiB by default), not batch_size, closed the batches: ten 100 kB messages.
    assert len(stored) == 12
    assert producer.max_request_bytes == MIB


def test_a_message_over_max_request_bytes_goes_alone(zk, broker):
    bases, counts = [], []

    def delivered(topic, partition, payload, base_offset, error):
        assert error is None
        bases.append(base_offset)
        counts.append([len(m.value) for m in message.decode_set(payload, topic, partition, 0)])

    big = bytes(MIB)                      # within max_message_bytes, over max_request_bytes
    with Producer(zk, acks=1, batch_size=50, linger_ms=0, on_delivery=delivered) as producer:
        for value in (b"a", big, b"b", b"c"):
            producer.send(TOPIC, value, partition=0)
    assert counts == [[1], [MIB], [1, 1]]
    assert max(stored_sets(broker, bases)) == MIB + message.HEADER_SIZE


def test_a_message_over_max_message_bytes_is_refused_at_send(zk, broker):
    with Producer(zk, acks=1, max_message_bytes=1000, linger_ms=0) as producer:
        with pytest.raises(protocol.MessageTooLarge, match="max_message_bytes=1000"):
            producer.send(TOPIC, bytes(1001), partition=0)
        with pytest.raises(protocol.MessageTooLarge):
            producer.send(TOPIC, bytes(600), key=bytes(401), partition=0)
        assert producer.sent == 0
        producer.send(TOPIC, bytes(1000), partition=0)
    assert producer.acked == 1


def test_message_too_large_from_a_broker_is_not_retried(zk, tmp_path):
    broker = start_broker(zk, tmp_path, max_message_bytes=1000)
    failures = []
    try:
        producer = Producer(zk, acks=1, linger_ms=0, retry_backoff_ms=0,
                            on_delivery=lambda *args: failures.append(args[4]))
        try:
            producer.send(TOPIC, bytes(5000), partition=0)
            with pytest.raises(protocol.MessageTooLarge):
                producer.flush()
            producer.send(TOPIC, b"small", partition=0)
            producer.flush()
        finally:
            producer.close()
        assert producer.retried == 0
        assert [type(e) for e in failures] == [protocol.MessageTooLarge, type(None)]
        assert broker_metadata(broker)["errors"] == {"message_too_large": 1}
    finally:
        broker.stop()


def test_max_request_bytes_is_checked(zk):
    for bad in (0, -1, 2.5, "1"):
        with pytest.raises(ValueError, match="max_request_bytes"):
            Producer(zk, max_request_bytes=bad)


def test_split_set_cuts_in_order_and_never_over_the_cap():
    messages = [message.encode(b"x" * n) for n in (1, 30, 2, 2, 80, 5, 5, 5)]
    runs = split_set(messages, 40)
    assert [len(run) for run, _ in runs] == [10, 39, 11 + 11, 89, 14 + 14, 14]
    assert [count for _, count in runs] == [1, 1, 2, 1, 2, 1]
    assert b"".join(run for run, _ in runs) == b"".join(messages)
    assert split_set([], 40) == []
