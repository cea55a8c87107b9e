"""The audit trail's totals for /metrics: the sampler's tail of ``__audit`` against a real
broker (records published by an audited producer and an auditing group), and their exposition
as ``_total`` counters."""
from clients import Consumer, Producer
from clients.brokers import BrokerPool
from cluster.observe import metrics
from cluster.observe.audit_counts import AuditTail, AuditTotals
from tests.cluster.observe.snapshots import samples
from tests.helpers import BrokerProcess, create_topic, wait_for


def test_totals_sum_records_and_metrics_export_them_as_counters():
    totals = AuditTotals()
    for record in ({"source": "producer", "topic": "t", "acknowledged": 5, "unacknowledged": 0},
                   {"source": "producer", "topic": "t", "acknowledged": 0, "unacknowledged": 2},
                   {"source": "consumer", "group": "g", "topic": "t", "consumed": 4}):
        totals.add(record)
    text = metrics.render(lambda: {"audit": totals.as_dict()}).decode()
    got = samples(text)
    assert got[("sluice_audit_acknowledged_total", (("topic", "t"),))] == 5
    assert got[("sluice_audit_unacknowledged_total", (("topic", "t"),))] == 2
    assert got[("sluice_audit_consumed_total", (("group", "g"), ("topic", "t")))] == 4
    assert "# TYPE sluice_audit_consumed_total counter" in text
    assert "sluice_audit" not in metrics.render(lambda: {"audit": None}).decode()


def test_the_tail_follows_new_records(zk, tmp_path):
    broker = BrokerProcess(zk, tmp_path, 0, log={"flush_ms": 20}).start()
    pool = BrokerPool(zk)
    tail = AuditTail()
    try:
        create_topic(zk, "t", 1, [broker])
        assert tail.sample(pool)["records"] == 0          # no __audit yet: nothing, no error
        with Producer(zk, acks=1, audit=True, audit_window_ms=1000) as producer:
            for i in range(30):
                producer.send("t", b"%d" % i)
        wait_for(lambda: tail.sample(pool)["produced"] == [
            {"topic": "t", "acknowledged": 30, "unacknowledged": 0}], what="the producer's")
        with Consumer(["t"], "g", zk, audit=True, audit_window_ms=1000) as consumer:
            for n, _ in enumerate(consumer, 1):
                if n == 30:
                    break
            consumer.commit()
        wait_for(lambda: tail.sample(pool)["consumed"] == [
            {"group": "g", "topic": "t", "consumed": 30}], what="the group's records")
        assert tail.totals.produced == {"t": [30, 0]}     # read once, not again per tick
    finally:
        tail.close()
        pool.close()
        broker.stop()
