"""The audit trail for Kafka clients: a broker with ``kafka_audit`` counts their produces per
topic and window of the records' timestamps (acks=1 and all acknowledged, acks=0 sent without
ack); the supervisor's sampler publishes what each closed window gained to ``__audit``, once."""
import time

from kafka import KafkaProducer

from clients.brokers import BrokerPool
from cluster.observe.audit_trail import read_records, stored_counts
from cluster.observe.audit_verdict import reconcile, sum_records
from cluster.observe.sampler import Sampler
from tests.helpers import wait_for

WINDOW_MS = 1000


def test_kafka_produces_are_counted_and_published_once(kafka_broker, zk):
    proc = kafka_broker("k", 2, kafka_audit=True, audit_window_ms=WINDOW_MS,
                        log={"flush_ms": 20})
    bootstrap = proc.info["kafka_endpoint"]
    sent = {0: 40, 1: 25, "all": 30}
    for acks, count in sent.items():
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks, linger_ms=2,
                                 enable_idempotence=False)
        for i in range(count):
            producer.send("k", f"{acks}-{i}".encode())
        producer.flush(10)
        producer.close(10)
    last_sent = time.time() * 1000
    sampler = Sampler(zk)
    pool = BrokerPool(zk)

    def published():
        sampler.sample_once()
        if time.time() * 1000 < last_sent + WINDOW_MS + 2000:
            return None                         # the last window not closed and settled yet
        records = [r for r in read_records(pool)[0] if r["topic"] == "k"]
        acked = sum(r["acknowledged"] for r in records)
        unacked = sum(r["unacknowledged"] for r in records)
        return records if (acked, unacked) == (55, 40) else None

    try:
        records = wait_for(published, 60, interval=0.3, what="the listener's counts published")
        assert {r["producer_id"] for r in records} == {"kafka-listener-0"}
        for _ in range(3):                      # later looks publish nothing again
            sampler.sample_once()
        again = [r for r in read_records(pool)[0] if r["topic"] == "k"]
        assert sum(r["acknowledged"] for r in again) == 55
        totals = sum_records(again)
        stored = stored_counts(pool, "k", WINDOW_MS)
        verdicts = reconcile(totals, stored, int(time.time() * 1000), 0)
        assert sum(v.stored for v in verdicts) == 95
        assert not any(v.broker_lost or v.unacked_lost for v in verdicts)
    finally:
        sampler.close()
        pool.close()


def test_kafka_batches_across_a_window_edge_are_counted_exactly(kafka_broker, zk):
    """kafka-python batches of chosen CreateTimes, one flush each: within one window, across
    an edge, and falling back within a batch (its header's first and max timestamps are one
    window; its second record is in the window before)."""
    proc = kafka_broker("edge", 1, kafka_audit=True, audit_window_ms=WINDOW_MS,
                        log={"flush_ms": 20})
    base = (int(time.time() * 1000) - 30_000) // WINDOW_MS * WINDOW_MS   # closed windows
    batches = [[base + 100, base + 200, base + 900],
               [base + 998, base + 999, base + 1000, base + 1001],
               [base + 2500, base + 1500]]
    producer = KafkaProducer(bootstrap_servers=proc.info["kafka_endpoint"], acks=1,
                             linger_ms=60_000, batch_size=1 << 20, enable_idempotence=False)
    try:
        for stamps in batches:
            futures = [producer.send("edge", b"v", partition=0, timestamp_ms=ts) for ts in stamps]
            producer.flush(10)
            assert len({f.get(10).offset for f in futures}) == len(stamps)
    finally:
        producer.close(10)
    expected = {base: 5, base + 1000: 3, base + 2000: 1}
    sampler = Sampler(zk)
    pool = BrokerPool(zk)

    def published():
        sampler.sample_once()
        got: dict[int, int] = {}
        for r in read_records(pool)[0]:
            if r["topic"] == "edge":
                got[r["window_start"]] = got.get(r["window_start"], 0) + r["acknowledged"]
        return got if sum(got.values()) == 9 else None

    try:
        assert wait_for(published, 60, interval=0.3, what="the edge batches' counts") == expected
        stored = stored_counts(pool, "edge", WINDOW_MS)
        assert dict(stored) == {("edge", w): n for w, n in expected.items()}
    finally:
        sampler.close()
        pool.close()
