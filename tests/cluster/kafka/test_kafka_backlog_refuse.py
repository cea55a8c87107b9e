"""Backlog protection's ``refuse`` policy seen by a Kafka client: kafka-python's producer gets
error 89 (THROTTLING_QUOTA_EXCEEDED, retriable) while a protected group's oldest unconsumed
message is about to expire; what was acknowledged before stays stored (refuse also holds the
segments past retention); once the group catches up, a producer still retrying gets through."""
from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer
from kafka.errors import ThrottlingQuotaExceededError

from broker import protocol
from clients import SimpleConsumer
from coordinator import backlog_protection, zk as zkmod
from coordinator.backlog_protection import Protection
from coordinator.offsets import OffsetStore
from tests.helpers import RawClient, wait_for

TOPIC, SLOW = "protected", "slow"
VALUE = b"v" * 100                  # 7 messages a 1 KiB segment
COUNT = 30                          # 4 segments: the first ones are past retention in 2 s


def row(raw) -> dict:
    reply = raw.request(protocol.encode_metadata(1))
    document = json.loads(protocol.decode_metadata_response(reply[0])[1])
    return next(r for r in document["partitions"] if r["topic"] == TOPIC)


def refusing(raw) -> bool:
    return any(b["group"] == SLOW and b["refusing"] for b in row(raw)["backlog"])


def retried_refusals(caplog) -> int:
    """kafka-python's sender logs each retry of a batch with the error's class name."""
    return sum("retrying" in r.getMessage() and "ThrottlingQuotaExceededError" in r.getMessage()
               for r in caplog.records)


def test_a_kafka_producer_is_refused_retriably_until_the_group_catches_up(kafka_broker, zk, caplog):
    proc = kafka_broker(TOPIC, 1, cleaner_interval_ms=100, backlog_check_ms=100,
                        log={"segment_bytes": 1024, "retention_ms": 2000, "flush_ms": 20})
    bootstrap = proc.info["kafka_endpoint"]
    client = zkmod.connect(zk)
    raw = RawClient(proc.endpoint)
    producers = []

    def producer(**settings) -> KafkaProducer:
        p = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0,
                          enable_idempotence=False, **settings)
        producers.append(p)
        return p

    def stored(offset="earliest") -> list[bytes]:
        with SimpleConsumer(TOPIC, 0, offset, zk, timeout_ms=1000) as consumer:
            return [m.value for m in consumer]

    try:
        OffsetStore(client, SLOW).commit({(TOPIC, 0): 0})
        backlog_protection.protect(client, SLOW, TOPIC, Protection("refuse", min_seconds=60))
        wait_for(lambda: row(raw)["backlog"], 20, what="the broker to see the protection")
        first = producer(retries=0)
        acked = []
        for i in range(COUNT):          # the refusal may come in the middle: it ends the run
            value = b"%03d" % i + VALUE
            try:
                first.send(TOPIC, value, partition=0).get(10)
            except ThrottlingQuotaExceededError:
                break
            acked.append(value)
        wait_for(lambda: refusing(raw), 20, what="the refusal")
        with pytest.raises(ThrottlingQuotaExceededError) as refused:
            first.send(TOPIC, b"refused", partition=0).get(10)
        assert refused.value.errno == 89 and refused.value.retriable
        assert acked
        wait_for(lambda: row(raw)["retention_held_segments"] > 0, 20,
                 what="retention to pass the acknowledged segments by (held: refuse holds)")
        assert stored() == acked, "every acknowledged message kept, in order; not the refused"

        retrying = producer(retries=1000, retry_backoff_ms=100, request_timeout_ms=5000,
                            delivery_timeout_ms=60_000)
        later = retrying.send(TOPIC, b"after-catch-up", partition=0)
        wait_for(lambda: retried_refusals(caplog) >= 1, 20, what="a retry of the refusal")
        assert not later.is_done
        end = row(raw)["end_offset"]
        OffsetStore(client, SLOW).commit({(TOPIC, 0): end})           # caught up
        assert later.get(30).offset == end
        assert stored(end) == [b"after-catch-up"]
    finally:
        for p in producers:
            p.close(5)
        raw.close()
        client.stop()
        client.close()
