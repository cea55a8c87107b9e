"""A group worker with ``consumer.audit``: what its handler skipped (``on_error="skip"``) is
not counted as consumed; everything else it committed is, in the messages' windows."""
from clients import Consumer, Producer
from clients.brokers import BrokerPool
from clients.config import ConsumerConfig
from cluster.observe.audit_trail import read_records
from cluster.workers import worker
from tests.helpers import BrokerProcess, create_topic, wait_for


def test_a_worker_counts_what_it_committed_but_not_what_it_skipped(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    try:
        create_topic(zk, "t", 2, [broker])
        with Producer(zk, acks=1, audit=True, audit_window_ms=1000) as producer:
            for i in range(60):
                producer.send("t", b"m%02d" % i)
        config = worker.WorkerConfig(
            worker_id=0, zookeeper=zk, topic="t", group="w", data_dir=str(tmp_path),
            on_error="skip", consumer=ConsumerConfig(audit=True, audit_window_ms=1000,
                                                     auto_commit_ms=100))
        consumer = Consumer(["t"], "w", zk, config=config.consumer_config())
        handled = []

        def handler(m):
            if m.value == b"m30":
                raise ValueError("a message the handler cannot take")
            handled.append(m.value)
            if len(handled) == 59:
                consumer.wakeup()

        assert worker._consume(consumer, handler, config) is None
        consumer.close()
        assert len(handled) == 59

        def consumed():
            pool = BrokerPool(zk)
            try:
                records, _ = read_records(pool)
            finally:
                pool.close()
            return sum(r.get("consumed", 0) for r in records if r.get("group") == "w")

        wait_for(lambda: consumed() == 59, what="the worker's 59 consumed (one skipped)")
    finally:
        broker.stop()
