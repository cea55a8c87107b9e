"""acks=1 keeps each partition's order across retries and broker restarts, against a real broker.

A broker is SIGSTOPped with a window of requests in flight, so they time out and are sent
again while the producer has newer batches to send; then it is SIGKILLed and restarted on the
same port, where ZeroMQ delivers what it queued meanwhile. The partition is read back: the
first appearance of every value must follow send order, and every acknowledged value must be
there. A second test loses one acknowledgement inside one broker instance and expects the
broker to recognise the retry as a duplicate and store the batch once.
"""
from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from broker import message, protocol
from clients import Producer, SimpleConsumer
from clients import producer as producer_module
from cluster.supervision.zookeeper import free_ports
from tests.helpers import BrokerProcess, RawClient, create_topic, wait_for

TOPIC = "ordered"
VISIBLE_AT_ONCE = {"visible_after_flush": False}


def stored_values(zookeeper: str, partition: int = 0) -> list[bytes]:
    """Every value of the partition, in log order, up to its end when asked."""
    values = []
    with SimpleConsumer(TOPIC, partition, "earliest", zookeeper=zookeeper,
                        timeout_ms=2000) as consumer:
        end = consumer.offset_of("latest")
        while consumer.position < end:
            values.extend(m.value for m in consumer.fetch())
    return values


def first_appearances(values: list[bytes]) -> list[int]:
    seen, order = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            order.append(int(value))
    return order


class Deliveries:
    """What the producer reported, per value: acknowledged or given up on."""

    def __init__(self):
        self.acked: list[bytes] = []
        self.failed: list[bytes] = []
        self.offsets: list[tuple[int | None, int]] = []
        self._lock = threading.Lock()

    def __call__(self, topic, partition, payload, base_offset, error) -> None:
        values = [m.value for m in message.decode_set(payload, topic, partition, 0)]
        with self._lock:
            (self.failed if error is not None else self.acked).extend(values)
            if error is None:
                self.offsets.append((base_offset, len(payload)))


@pytest.fixture
def broker(zk, tmp_path):
    proc = BrokerProcess(zk, tmp_path, 0, port=free_ports(1)[0], log=VISIBLE_AT_ONCE)
    proc.start()
    create_topic(zk, TOPIC, 1, [proc])
    yield proc
    if proc.alive():
        os.kill(proc.proc.pid, signal.SIGCONT)
    proc.stop()


def test_order_holds_when_a_stopped_broker_is_killed_and_restarted_on_its_port(zk, broker):
    window = 8
    deliveries = Deliveries()
    producer = Producer(zk, acks=1, batch_size=5, linger_ms=1, max_in_flight=window,
                        request_timeout_ms=1500, retry_backoff_ms=20, retries=1000,
                        on_delivery=deliveries)
    total = 6000
    errors = []
    half_done, stopped = threading.Event(), threading.Event()

    def produce():
        try:
            for i in range(total):
                if i == total // 2:
                    producer.flush()
                    half_done.set()
                    stopped.wait(60)
                producer.send(TOPIC, b"%d" % i, partition=0)
            producer.flush()
        except Exception as exc:  # handed to the test thread below
            errors.append(exc)

    thread = threading.Thread(target=produce)
    try:
        thread.start()
        assert half_done.wait(60), "the first half was not acknowledged"
        os.kill(broker.proc.pid, signal.SIGSTOP)
        stopped.set()                 # the second half goes to the stopped broker
        # Two rounds of timeouts: the window was sent again while batches kept queueing.
        wait_for(lambda: producer.retried >= 2 * window, timeout=60,
                 what="the stopped broker's window to time out twice")
        broker.kill()
        broker.start()
        thread.join(120)
        assert not thread.is_alive(), "the producer did not finish"
        assert errors == []
    finally:
        if broker.alive():
            os.kill(broker.proc.pid, signal.SIGCONT)   # a failed step must not leave it stopped
        producer.close()
    values = stored_values(zk)
    order = first_appearances(values)
    late = [(a, b) for a, b in zip(order, order[1:]) if b < a]
    assert late == [], f"{len(late)} values first stored after a later one, e.g. {late[:5]}"
    missing = set(deliveries.acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged values are not stored"
    assert set(deliveries.acked) == {b"%d" % i for i in range(total)}


def broker_metadata(broker: BrokerProcess) -> dict:
    client = RawClient(broker.endpoint)
    try:
        frames = client.request(protocol.encode_metadata(1))
    finally:
        client.close()
    return json.loads(protocol.decode_metadata_response(frames[0])[1])


def test_a_lost_acknowledgement_is_answered_as_a_duplicate_and_stored_once(zk, broker):
    deliveries = Deliveries()
    with Producer(zk, acks=1, batch_size=100, linger_ms=0, request_timeout_ms=1000,
                  retry_backoff_ms=20, retries=100, on_delivery=deliveries) as producer:
        producer.send(TOPIC, b"0", partition=0)
        producer.flush()                       # connected, and the broker knows the producer
        os.kill(broker.proc.pid, signal.SIGSTOP)
        for i in range(1, 11):
            producer.send(TOPIC, b"%d" % i, partition=0)
        flushed = threading.Thread(target=producer.flush)
        flushed.start()                        # the set waits in the stopped broker's socket
        wait_for(lambda: producer.retried >= 1, what="the request to time out and go again")
        os.kill(broker.proc.pid, signal.SIGCONT)
        flushed.join(60)
        assert not flushed.is_alive()
    assert stored_values(zk) == [b"%d" % i for i in range(11)], "the batch is stored once"
    assert sorted(deliveries.acked, key=int) == [b"%d" % i for i in range(11)]
    assert broker_metadata(broker)["stats"].get("duplicates") == 1


def test_a_batch_given_up_on_is_skipped_and_the_ones_after_it_keep_their_order(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path / "small", 0,
                           log={**VISIBLE_AT_ONCE, "max_message_bytes": 1000}).start()
    try:
        create_topic(zk, TOPIC, 1, [broker])
        deliveries = Deliveries()
        producer = Producer(zk, acks=1, batch_size=1, max_in_flight=16, retry_backoff_ms=0,
                            on_delivery=deliveries)
        raised = []
        try:
            for i in range(100):
                value = b"%d" % i + (b" " * 2000 if i == 50 else b"")
                try:
                    producer.send(TOPIC, value, partition=0)
                except protocol.MessageTooLarge as exc:   # 50's error, raised by a later send
                    raised.append(exc)
                    producer.send(TOPIC, value, partition=0)
            try:
                producer.flush()
            except protocol.MessageTooLarge as exc:
                raised.append(exc)
        finally:
            producer.close()
        assert len(raised) == 1
        assert deliveries.failed == [b"50" + b" " * 2000]
        assert [int(v) for v in stored_values(zk)] == [i for i in range(100) if i != 50]
        assert broker_metadata(broker)["errors"]["message_too_large"] == 1
    finally:
        broker.stop()


def test_a_partition_that_used_up_its_sequences_goes_on_under_a_new_producer_id(
        zk, broker, monkeypatch):
    monkeypatch.setattr(producer_module, "SEQUENCE_LIMIT", 3)
    with Producer(zk, acks=1, batch_size=1, linger_ms=0) as producer:
        for i in range(20):
            producer.send(TOPIC, b"%d" % i, partition=0)
        producer.flush()
        ids = {producer._partitions[(TOPIC, 0)].producer_id, producer.producer_id}
        assert len(ids) == 2
        assert producer.acked == 20
    assert stored_values(zk) == [b"%d" % i for i in range(20)]
    assert "duplicates" not in broker_metadata(broker)["stats"]


def test_a_window_sent_again_to_a_paused_broker_is_stored_once_in_order(zk, broker):
    """Stale requests on the old connection and their resends on the new one reach the broker
    interleaved; each value is stored once, in send order."""
    window = 8
    deliveries = Deliveries()
    with Producer(zk, acks=1, batch_size=1, max_in_flight=window, request_timeout_ms=1000,
                  retry_backoff_ms=20, retries=100, on_delivery=deliveries) as producer:
        producer.send(TOPIC, b"0", partition=0)
        producer.flush()
        os.kill(broker.proc.pid, signal.SIGSTOP)
        sending = threading.Thread(target=lambda: [
            producer.send(TOPIC, b"%d" % i, partition=0) for i in range(1, 41)])
        sending.start()
        wait_for(lambda: producer.retried >= window, what="the window to be sent again")
        os.kill(broker.proc.pid, signal.SIGCONT)
        sending.join(60)
        assert not sending.is_alive()
        producer.flush()
    assert stored_values(zk) == [b"%d" % i for i in range(41)]
    assert sorted(deliveries.acked, key=int) == [b"%d" % i for i in range(41)]
    assert broker_metadata(broker)["stats"]["duplicates"] >= 1
