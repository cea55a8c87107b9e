"""The acks=1 producer sends the sets that waited behind its full window in one
PRODUCE_SETS_ACKED request, against a real broker (issue 16): stopped with SIGSTOP, the broker
holds the window full while sets queue; each set is still acknowledged on its own, in order,
and a request sent again after its answer was lost is stored once."""
from __future__ import annotations

import os
import signal
import threading

from clients import Producer
from tests.clients.test_producer_order import (TOPIC, Deliveries, broker,  # noqa: F401
                                               broker_metadata, stored_values)
from tests.helpers import wait_for

BATCH = 10


def send_sets(producer, first: int, sets: int) -> None:
    for i in range(first * BATCH, (first + sets) * BATCH):
        producer.send(TOPIC, b"%d" % i, partition=0)


def test_sets_waiting_behind_a_full_window_leave_in_one_request(zk, broker):
    deliveries = Deliveries()
    with Producer(zk, acks=1, batch_size=BATCH, linger_ms=5, max_in_flight=8,
                  request_timeout_ms=30_000, on_delivery=deliveries) as producer:
        send_sets(producer, 0, 1)
        producer.flush()                        # connected: one request, one set
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            send_sets(producer, 1, 1)           # fills the window of one request
            send_sets(producer, 2, 3)           # three sets wait behind it
            assert producer.requests == 2
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        producer.flush()
        assert producer.requests == 3, "the three waiting sets left together"
        assert producer.retried == 0
    values = [b"%d" % i for i in range(5 * BATCH)]
    assert stored_values(zk) == values
    assert sorted(deliveries.acked, key=int) == values and deliveries.failed == []
    assert len(deliveries.offsets) == 5, "each set acknowledged on its own"


def test_a_request_of_several_sets_sent_again_after_a_lost_answer_is_stored_once(zk, broker):
    deliveries = Deliveries()
    with Producer(zk, acks=1, batch_size=BATCH, linger_ms=5, max_in_flight=8,
                  request_timeout_ms=1000, retry_backoff_ms=20, retries=100,
                  on_delivery=deliveries) as producer:
        send_sets(producer, 0, 1)
        producer.flush()
        os.kill(broker.proc.pid, signal.SIGSTOP)
        try:
            send_sets(producer, 1, 4)           # one set in flight, three behind it
            flushed = threading.Thread(target=producer.flush)
            flushed.start()
            # twice timed out: the four sets went again as one request, and again
            wait_for(lambda: producer.retried >= 8, timeout=30,
                     what="the stopped broker's request to time out twice")
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        flushed.join(60)
        assert not flushed.is_alive()
        assert producer.requests >= 3
    values = [b"%d" % i for i in range(5 * BATCH)]
    assert stored_values(zk) == values, "every set stored once, in order"
    assert sorted(deliveries.acked, key=int) == values and deliveries.failed == []
    assert broker_metadata(broker)["stats"].get("duplicates", 0) >= 1
