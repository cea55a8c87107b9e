"""Control calls (offsets for seek and start resolution) never take a parked fetch's reply.

A Consumer keeps one long-poll fetch parked per partition on the broker's socket; a synchronous
call that shared that socket read and dropped the fetch replies queued ahead of its own, and
every other partition stalled until its fetch expired. Counted, not timed: the pool's discarded
replies and the fetcher's expired fetches must stay 0 while every message arrives.
"""
from clients import Consumer, Producer
from clients.simple_consumer import SimpleConsumer
from tests.helpers import create_topic
from tests.helpers import wait_for

ROUNDS = 40


def test_seeks_and_start_resolution_never_drop_a_parked_fetch(zk, quick_broker):
    create_topic(zk, "control", 4, [quick_broker])
    consumer = Consumer(["control"], "gctl", zookeeper=zk, start="latest", max_wait_ms=2000,
                        request_timeout_ms=30_000, rebalance_backoff_ms=200,
                        auto_commit_ms=200)
    producer = Producer(zk, acks=1, batch_size=1, linger_ms=0)
    watch = SimpleConsumer("control", 1, "latest", zookeeper=zk)
    got = []
    try:
        wait_for(lambda: len(consumer.assignment()) == 4, 30, what="the consumer to own 4")
        wait_for(lambda: consumer.poll(50) is not None and consumer._fetcher.in_flight()
                 >= {("control", p) for p in range(4)}, 30, what="4 parked fetches")
        sent = []
        for i in range(ROUNDS):
            end = watch.offset_of("latest")
            for partition in (1, 2, 3):
                value = b"r%03d-p%d" % (i, partition)
                producer.send("control", value, partition=partition)
                sent.append(value)
            producer.flush()
            wait_for(lambda: watch.offset_of("latest") > end, 30, what="the round to be visible")
            consumer.seek(0, "latest" if i % 2 else "earliest")
            got.extend(m.value for m in consumer.poll(0))
        assert consumer.stats["replies_discarded"] == 0, "a control call ate fetch replies"
        wait_for(lambda: got.extend(m.value for m in consumer.poll(200)) or len(got) >= len(sent),
                 60, what="every message")
        assert sorted(got) == sorted(sent)
        assert consumer.stats["fetches_expired"] == 0
        assert consumer.stats["replies_discarded"] == 0
    finally:
        watch.close()
        producer.close()
        consumer.close()
